"""Word (.docx) text with python-docx, after the zip directory has been checked.

A .docx is a zip archive. Before any member is inflated, its central directory must
show a plausible document: few enough members, a total unpacked size under a limit,
and no member that claims to grow by more than a set ratio. Declared sizes can lie:
``zipfile`` stops a member at its declared size, but a one-call ``read()`` (what
python-docx does) first inflates the whole stream, up to 1 GiB, then cuts it. So the
members are copied, in small blocks, into an uncompressed archive that python-docx
reads instead: memory stays within the declared sizes the check allowed. python-docx
parses XML with entity resolution off, so entity expansion is no way round either.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.attachments.errors import AttachmentError, RefusalReason
from app.attachments.failures import log_parser_failure

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """What a .docx's zip directory may declare before it is refused as a zip bomb."""

    max_members: int = 1000
    max_uncompressed_bytes: int = 128 * _MIB
    #: Highest unpacked/packed size ratio, for the archive and for each member over
    #: ``ratio_floor_bytes`` (small members of text compress well and are harmless).
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * _MIB


def check_zip(shown: str, data: bytes, limits: ZipLimits) -> None:
    """Refuse ``data`` unless its zip directory is a readable, plausible document."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        log_parser_failure("DOCX zip", exc, expected=True)
        raise _damaged(shown) from exc
    unpacked = sum(member.file_size for member in members)
    packed = sum(member.compress_size for member in members)
    suspicious = ""
    if len(members) > limits.max_members:
        suspicious = f"it holds {len(members):,} files, over the limit of {limits.max_members:,}"
    elif unpacked > limits.max_uncompressed_bytes:
        suspicious = (
            f"it would unpack to {unpacked / _MIB:,.0f} MB, over the "
            f"{limits.max_uncompressed_bytes / _MIB:,.0f} MB limit"
        )
    else:
        for member in members:
            if member.file_size > limits.ratio_floor_bytes and member.file_size > (
                limits.max_ratio * max(member.compress_size, 1)
            ):
                suspicious = (
                    f"one part would grow {member.file_size / max(member.compress_size, 1):,.0f} "
                    "times when unpacked"
                )
                break
        else:
            if unpacked > limits.ratio_floor_bytes and unpacked > limits.max_ratio * max(packed, 1):
                suspicious = f"it would grow {unpacked / max(packed, 1):,.0f} times when unpacked"
    if suspicious:
        raise AttachmentError(
            f"{shown} was not opened: {suspicious}, which is what a zip bomb looks like, "
            "not a document. If it is a real document, open it in Word or LibreOffice, save "
            "a new copy (or export it as PDF) and attach that.",
            reason=RefusalReason.ZIP_BOMB,
        )


def docx_text(shown: str, data: bytes, limits: ZipLimits) -> str:
    """The text of the Word document ``data``: paragraphs and tables in document order,
    table cells separated by tabs, rows by newlines.

    Raises ``AttachmentError``: zip bomb (see ``check_zip``), damaged (not a readable
    .docx), or no text (the document has none).
    """
    check_zip(shown, data, limits)
    stored = _stored_copy(shown, data)
    import docx
    from docx.opc.exceptions import OpcError

    try:
        document = docx.Document(stored)
        text = "\n".join(_blocks(document.iter_inner_content())).strip()
    except (OpcError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError) as exc:
        # A missing part, a wrong content type ("not a Word file"), malformed XML
        # (lxml's XMLSyntaxError is a SyntaxError).
        log_parser_failure("DOCX", exc, expected=True)
        raise _damaged(shown) from exc
    except Exception as exc:  # any error of the parser on untrusted bytes: logged
        log_parser_failure("DOCX", exc, expected=False)
        raise _damaged(shown) from exc
    if not text:
        raise AttachmentError(
            f"{shown} has no text to read (an empty document, or only pictures). Attach "
            "pictures as image files instead.",
            reason=RefusalReason.NO_TEXT,
        )
    return text


# Inflating this much output at a time bounds the memory of one read.
_READ_BLOCK = 64 * 1024


def _stored_copy(shown: str, data: bytes) -> io.BytesIO:
    """The archive re-written with its members stored uncompressed, each inflated in
    ``_READ_BLOCK`` pieces and cut at its declared size (see the module's docstring)."""
    copy = io.BytesIO()
    try:
        with (
            zipfile.ZipFile(io.BytesIO(data)) as source,
            zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as target,
        ):
            for info in source.infolist():
                if info.is_dir():
                    continue
                with source.open(info) as member, target.open(info.filename, "w") as out:
                    while block := member.read(_READ_BLOCK):
                        out.write(block)
    except (
        zipfile.BadZipFile,  # a CRC that does not match, a damaged header
        zlib.error,  # a damaged deflate stream
        NotImplementedError,  # a compression method zipfile lacks
        RuntimeError,  # an encrypted member
        EOFError,
        OSError,
        ValueError,
    ) as exc:
        log_parser_failure("DOCX zip", exc, expected=True)
        raise _damaged(shown) from exc
    copy.seek(0)
    return copy


def _blocks(blocks: Iterable[Paragraph | Table]) -> Iterable[str]:
    from docx.text.paragraph import Paragraph

    for block in blocks:
        if isinstance(block, Paragraph):
            yield block.text
        else:
            yield from _table_rows(block)


def _table_rows(table: Table) -> Iterable[str]:
    # A merged cell comes back for each grid position it covers. The set holds the
    # elements themselves: lxml may reuse the id() of a proxy no longer referenced.
    seen: set[object] = set()
    for row in table.rows:
        cells = []
        for cell in row.cells:
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            cells.append(" ".join("\n".join(_blocks(cell.iter_inner_content())).split()))
        yield "\t".join(cells)


def _damaged(shown: str) -> AttachmentError:
    return AttachmentError(
        f"{shown} is a damaged Word document (or not one) that Hushchat cannot read. Open "
        "it in Word or LibreOffice, save a new copy as .docx (or export it as PDF) and "
        "attach that.",
        reason=RefusalReason.DAMAGED,
    )

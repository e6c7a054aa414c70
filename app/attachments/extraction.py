"""From a file's bytes to its text: ``extract`` and what it returns.

``extract`` checks the size, finds the kind (``detection``), and reads the text:
decoded text and code, Markdown as written, HTML as its visible text, PDF page by page,
Word paragraphs and tables. Images carry no text, only their media type and size. Each
piece of text is a ``Part`` with the label an answer cites ("report.pdf, p. 3").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.attachments.detection import Detection, ImageSize, Kind, detect, display_name
from app.attachments.errors import AttachmentError, RefusalReason
from app.attachments.pdf import pdf_pages
from app.attachments.text import decode_stream, decode_text, html_to_text
from app.attachments.word import ZipLimits, docx_text

_MIB = 1024 * 1024
# Text files over this size are decoded while they are read (see ``extract_file``).
_STREAM_BLOCK = _MIB
#: The default largest attachment, in bytes (the setting's default).
DEFAULT_MAX_BYTES = 50 * _MIB


@dataclass(frozen=True, slots=True)
class Limits:
    """How large a file may be, and what a .docx's zip directory may declare."""

    max_bytes: int = DEFAULT_MAX_BYTES
    zip: ZipLimits = field(default_factory=ZipLimits)


@dataclass(frozen=True, slots=True)
class Part:
    """A run of an attachment's text and the label that cites it.

    ``page`` is the PDF page number (from 1), ``None`` for other kinds.
    """

    text: str
    label: str
    page: int | None = None


@dataclass(frozen=True, slots=True)
class Extracted:
    """What an attachment holds: its kind, media type and text parts in order.

    An image has no parts and has ``image`` set; ``encoding`` is set for the text kinds;
    ``page_count`` for PDFs (pages without text have no part).
    """

    name: str
    kind: Kind
    media_type: str
    size: int
    parts: tuple[Part, ...] = ()
    image: ImageSize | None = None
    encoding: str | None = None
    page_count: int | None = None

    @property
    def text_length(self) -> int:
        """``len(self.text)``, without joining the parts."""
        joins = 2 * max(len(self.parts) - 1, 0)
        headers = sum(len(f"[p. {part.page}]\n") for part in self.parts)
        return (
            sum(len(part.text) for part in self.parts)
            + joins
            + (headers if self.kind is Kind.PDF else 0)
        )

    @property
    def text(self) -> str:
        """All the text, PDF pages each headed by a ``[p. N]`` line."""
        if self.kind is Kind.PDF:
            return "\n\n".join(f"[p. {part.page}]\n{part.text}" for part in self.parts)
        return "\n\n".join(part.text for part in self.parts)


def page_label(name: str, page: int) -> str:
    """The label of one PDF page: ``report.pdf, p. 3``."""
    return f"{name}, p. {page}"


def extract_file(path: Path, limits: Limits | None = None) -> Extracted:
    """``extract`` the file at ``path``; an oversized file is refused before it is read.

    A plain text or Markdown file in UTF-8 (or with a byte-order mark) is decoded while it
    is read, so its bytes and its text are never in memory at once (its text comes in
    parts of about a megabyte, cut after a line break).
    """
    limits = limits or Limits()
    try:
        size = path.stat().st_size
        _check_size(path.name, size, limits)
        with path.open("rb") as stream:
            head = stream.read(_STREAM_BLOCK)
            shown = display_name(path.name)
            detection = detect(shown, head)
            if len(head) == _STREAM_BLOCK and detection.kind in (Kind.TEXT, Kind.MARKDOWN):
                stream.seek(0)
                decoded = decode_stream(shown, stream, block=_STREAM_BLOCK)
                if decoded is not None:
                    return _text_parts(shown, size, detection, *decoded)
            del head
            stream.seek(0)
            data = stream.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AttachmentError(
            f"{path} cannot be read ({reason}). Check the path, that it is a file and "
            "that you may read it.",
            reason=RefusalReason.UNREADABLE,
        ) from exc
    return extract(path.name, data, limits)


def extract(name: str, data: bytes, limits: Limits | None = None) -> Extracted:
    """The kind and text of the file named ``name`` whose content is ``data``.

    Raises ``AttachmentError`` when the file cannot be attached: empty, over
    ``limits.max_bytes``, of no supported type, damaged, password-protected, a zip
    bomb, or (PDF, Word) without any text.
    """
    limits = limits or Limits()
    shown = display_name(name)
    _check_size(shown, len(data), limits)
    detection = detect(shown, data)
    if detection.kind is Kind.IMAGE:
        return _extracted(shown, data, detection, image=detection.image)
    if detection.kind is Kind.PDF:
        pages, count = pdf_pages(shown, data)
        parts = tuple(
            Part(page.text, page_label(shown, page.number), page.number) for page in pages
        )
        return _extracted(shown, data, detection, parts=parts, page_count=count)
    if detection.kind is Kind.DOCX:
        text = docx_text(shown, data, limits.zip)
        return _extracted(shown, data, detection, parts=(Part(text, shown),))
    text, encoding = decode_text(shown, data)
    if detection.kind is Kind.HTML:
        text = html_to_text(text)
    return _text_parts(shown, len(data), detection, [text], encoding)


def _text_parts(
    shown: str, size: int, detection: Detection, texts: list[str], encoding: str
) -> Extracted:
    if not any(text.strip() for text in texts):
        raise AttachmentError(
            f"{shown} has no text to read (it is blank), so there is nothing to attach.",
            reason=RefusalReason.NO_TEXT,
        )
    parts = tuple(Part(text, shown) for text in texts)
    return Extracted(shown, detection.kind, detection.media_type, size, parts, encoding=encoding)


def _extracted(
    shown: str,
    data: bytes,
    detection: Detection,
    *,
    parts: tuple[Part, ...] = (),
    image: ImageSize | None = None,
    encoding: str | None = None,
    page_count: int | None = None,
) -> Extracted:
    return Extracted(
        name=shown,
        kind=detection.kind,
        media_type=detection.media_type,
        size=len(data),
        parts=parts,
        image=image,
        encoding=encoding,
        page_count=page_count,
    )


def _check_size(shown: str, size: int, limits: Limits) -> None:
    if size == 0:
        raise AttachmentError(
            f"{shown} is empty (0 bytes), so there is nothing to attach. Check that you "
            "picked the right file, or that it finished saving.",
            reason=RefusalReason.EMPTY,
        )
    if size > limits.max_bytes:
        raise AttachmentError(
            f"{shown} is {_size(size)}, over the {_size(limits.max_bytes)} "
            "limit for attachments. Attach a smaller file (for example only the pages you "
            "need) or raise the maximum attachment size in the settings.",
            reason=RefusalReason.TOO_LARGE,
        )


def _size(size: int) -> str:
    """``50 MB``, ``60.5 MB``, ``12 KB``, ``900 bytes``."""
    if size >= _MIB:
        value = size / _MIB
        return f"{value:,.0f} MB" if value.is_integer() else f"{value:,.1f} MB"
    if size >= 1024:
        return f"{size / 1024:,.0f} KB"
    return f"{size:,} bytes"

"""PDF text, page by page, with pypdf.

pypdf is pure Python and caps what a stream may inflate to; here the caps are
tighter than its defaults (``_PYPDF_LIMITS``, for this thread's reading only), since a
page's text never needs 75 MB of content stream, and no external decoder is run. Its
log records can quote bytes of the file, so they never reach the app's handlers:
``_PypdfRecords`` replaces each with a line naming only where in pypdf it came from.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from app.attachments.errors import AttachmentError, RefusalReason
from app.attachments.failures import log_parser_failure

logger = logging.getLogger(__name__)


_MB = 1_000_000
# Caps for one stream (a page's content, a form, a font's character map): a dense page
# of text takes well under 1 MB; pypdf's defaults are 75 MB.
_PYPDF_LIMITS: dict[str, Any] = {
    "maximum_declared_stream_length": 16 * _MB,
    "zlib_maximum_output_length": 16 * _MB,
    "lzw_maximum_output_length": 16 * _MB,
    "run_length_maximum_output_length": 16 * _MB,
    "brotli_maximum_output_length": 16 * _MB,
    "array_based_stream_maximum_output_length": 16 * _MB,
    "jbig2_maximum_output_length": 16 * _MB,
    "jbig2dec_binary": None,  # never run a program found on PATH
}


@dataclass(frozen=True, slots=True)
class PdfPage:
    """The text of one page; ``number`` counts from 1 in file order."""

    number: int
    text: str


class _PypdfRecords(logging.Handler):
    """Turns pypdf's records into content-free debug lines of ours."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug(
            "pypdf %s at %s:%d (message withheld: it may quote the file)",
            record.levelname,
            record.name,
            record.lineno,
        )


def _quiet_pypdf() -> None:
    pypdf_logger = logging.getLogger("pypdf")
    if not any(isinstance(handler, _PypdfRecords) for handler in pypdf_logger.handlers):
        pypdf_logger.addHandler(_PypdfRecords())
    pypdf_logger.propagate = False


_quiet_pypdf()


def pdf_pages(shown: str, data: bytes) -> tuple[list[PdfPage], int]:
    """The pages of the PDF ``data`` that have text, and the number of pages in all.

    Raises ``AttachmentError``: damaged (pypdf cannot read it), encrypted (a password
    is needed to open it), or no text (no page has a text layer, as in a scan).
    """
    from pypdf import PasswordType, PdfReader, apply_configuration
    from pypdf.errors import PyPdfError

    with apply_configuration(**_PYPDF_LIMITS):
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise AttachmentError(
                    f"{shown} is protected by a password, so Hushchat cannot read it. Open it "
                    "in a PDF viewer, save or print a copy without the password and attach "
                    "that.",
                    reason=RefusalReason.ENCRYPTED,
                )
            count = len(reader.pages)
            pages = []
            for number, page in enumerate(reader.pages, start=1):
                text = page.extract_text().strip()
                if text:
                    pages.append(PdfPage(number, text))
        except AttachmentError:
            raise
        except PyPdfError as exc:
            log_parser_failure("PDF", exc, expected=True)
            raise _damaged(shown) from exc
        except Exception as exc:  # any error of the parser on untrusted bytes: logged
            log_parser_failure("PDF", exc, expected=False)
            raise _damaged(shown) from exc
    if not pages:
        raise AttachmentError(
            f"{shown} has no text layer on any of its {count} page(s): it looks like a "
            "scanned PDF, so there is no text to read. Run it through text recognition "
            "(OCR) first and attach the result, or attach the pages as images.",
            reason=RefusalReason.NO_TEXT,
        )
    return pages, count


def _damaged(shown: str) -> AttachmentError:
    return AttachmentError(
        f"{shown} is a damaged PDF that Hushchat cannot read. Open it in a PDF viewer, "
        "save or print a new copy as PDF and attach that.",
        reason=RefusalReason.DAMAGED,
    )

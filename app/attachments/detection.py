"""What kind of file an attachment is, from its first bytes and its name.

The content decides wherever it has a signature (PDF, zip, PNG, JPEG, GIF, WebP, old
Office files, executables); the name only chooses between the text kinds (Markdown,
HTML, plain text and code) and catches a file whose name promises a type its bytes do
not have (a ``.pdf`` that is not a PDF is damaged, not text). Image width and height
come from the header, without decoding the picture.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath, PurePosixPath, PureWindowsPath

from app.attachments.errors import AttachmentError, RefusalReason

#: The sentence every "unsupported type" refusal ends with.
SUPPORTED_TYPES = (
    "Hushchat can attach text and code files, Markdown, HTML, PDF, Word (.docx) "
    "and PNG, JPEG, WebP or GIF images"
)


class Kind(StrEnum):
    """The kinds of attachment Hushchat reads."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    IMAGE = "image"

    @property
    def is_text(self) -> bool:
        """True for the kinds read by decoding the bytes as text."""
        return self in (Kind.TEXT, Kind.MARKDOWN, Kind.HTML)


@dataclass(frozen=True, slots=True)
class ImageSize:
    """An image's width and height in pixels, read from its header."""

    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Detection:
    """The kind and media type of a file; ``image`` is set for images only."""

    kind: Kind
    media_type: str
    image: ImageSize | None = None


DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn"})
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif"})
# Names that promise a binary kind: their bytes must carry its signature.
_SIGNED_SUFFIXES = {".pdf": "PDF", ".docx": "Word document"} | dict.fromkeys(
    _IMAGE_SUFFIXES, "image"
)

_PNG = b"\x89PNG\r\n\x1a\n"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Signatures of common binary files that are not text, with a hint for the person.
_OTHER_BINARIES: tuple[tuple[bytes, str], ...] = (
    (_OLE, "an old Office file (.doc, .xls, .ppt); save it as .docx or PDF and attach that"),
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a program"),
    (b"\x1f\x8b", "a gzip archive; unpack it and attach the files inside"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; unpack it and attach the files inside"),
    (b"Rar!", "a RAR archive; unpack it and attach the files inside"),
    (b"SQLite format 3\x00", "a database"),
)
# A PDF's header may follow a little junk (the specification allows 1024 bytes).
_PDF_HEADER_WINDOW = 1024


def display_name(name: str) -> str:
    """The file's own name without its folders (Windows or POSIX separators)."""
    base = PureWindowsPath(name).name if "\\" in name else PurePosixPath(name).name
    return base or "attachment"


def detect(name: str, data: bytes) -> Detection:
    """The kind of the file named ``name`` with content ``data``.

    Raises ``AttachmentError`` for a file of no supported kind and for one whose
    name promises a PDF, DOCX or image that its bytes are not. A text kind is only
    a candidate here: decoding (``extraction``) refuses bytes that are not text.
    """
    shown = display_name(name)
    suffix = PurePath(shown).suffix.lower()
    head = data[:_PDF_HEADER_WINDOW]
    if data.startswith(b"%PDF-") or (suffix == ".pdf" and b"%PDF-" in head):
        return Detection(Kind.PDF, "application/pdf")
    image = _image(shown, data)
    if image is not None:
        return image
    if data.startswith(_ZIP):
        if suffix == ".docx" or b"word/document.xml" in data[:65536]:
            return Detection(Kind.DOCX, DOCX_MEDIA_TYPE)
        raise AttachmentError(
            f"{shown} is a zip archive but not a Word document. Unpack it and attach the "
            f"files inside. {SUPPORTED_TYPES}.",
            reason=RefusalReason.UNSUPPORTED_TYPE,
        )
    for signature, what in _OTHER_BINARIES:
        if data.startswith(signature):
            raise AttachmentError(
                f"{shown} is {what}. {SUPPORTED_TYPES}.",
                reason=RefusalReason.UNSUPPORTED_TYPE,
            )
    if suffix in _SIGNED_SUFFIXES:
        raise AttachmentError(
            f"{shown} is named like a {_SIGNED_SUFFIXES[suffix]} but its content is not "
            "one: the file is damaged or misnamed. Open it in the program that made it, "
            "save a new copy and attach that.",
            reason=RefusalReason.DAMAGED,
        )
    if suffix in _MARKDOWN_SUFFIXES:
        return Detection(Kind.MARKDOWN, "text/markdown")
    if suffix in _HTML_SUFFIXES or _looks_like_html(head):
        return Detection(Kind.HTML, "text/html")
    return Detection(Kind.TEXT, "text/plain")


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _image(shown: str, data: bytes) -> Detection | None:
    """The image detection of ``data`` if it starts like PNG, JPEG, GIF or WebP."""
    if data.startswith(_PNG):
        media_type, size = "image/png", _png_size(data)
    elif data.startswith(b"\xff\xd8\xff"):
        media_type, size = "image/jpeg", _jpeg_size(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        media_type, size = "image/gif", _gif_size(data)
    elif data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        media_type, size = "image/webp", _webp_size(data)
    else:
        return None
    if size is None or size.width <= 0 or size.height <= 0:
        raise AttachmentError(
            f"{shown} is a damaged {media_type.removeprefix('image/').upper()} image (its "
            "header has no valid size). Open it in an image viewer, save a new copy and "
            "attach that.",
            reason=RefusalReason.DAMAGED,
        )
    return Detection(Kind.IMAGE, media_type, size)


def _png_size(data: bytes) -> ImageSize | None:
    # Signature, then the IHDR chunk: length (4), type (4), width (4), height (4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return ImageSize(width, height)


def _gif_size(data: bytes) -> ImageSize | None:
    # "GIF89a", then the logical screen width and height, little-endian.
    if len(data) < 10:
        return None
    width, height = struct.unpack("<HH", data[6:10])
    return ImageSize(width, height)


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0-7 (SOI and EOI do not occur mid-scan here).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(data: bytes) -> ImageSize | None:
    """Walk the marker segments after SOI up to the first start-of-frame."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in _JPEG_STANDALONE:
            offset += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan began without a frame
            return None
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if offset + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return ImageSize(width, height)
        offset += 2 + length
    return None


def _webp_size(data: bytes) -> ImageSize | None:
    """The canvas size from the first chunk: VP8X (extended), VP8 (lossy) or VP8L."""
    chunk, body = data[12:16], data[20:]
    if chunk == b"VP8X" and len(body) >= 10:
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return ImageSize(width, height)
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return ImageSize(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return ImageSize((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    return None

"""Attachment files made by the tests: PDFs and Word documents (``app.attachments.samples``,
which the self-test uses too), hostile PDFs, images as minimal valid headers, zip bombs
streamed through zipfile."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence

from app.attachments.samples import docx_bytes as docx_bytes  # the tests' one place
from app.attachments.samples import pdf_bytes, pdf_from_streams


def flate_bomb_pdf(inflated_bytes: int) -> bytes:
    """A one-page PDF whose content stream (a line of text, then spaces) inflates to
    ``inflated_bytes``, compressed a piece at a time."""
    compressor = zlib.compressobj(9)
    pieces = [compressor.compress(b"BT /F1 11 Tf 72 700 Td (Bomb) Tj ET\n")]
    block = b" " * (1024 * 1024)
    for _ in range(inflated_bytes // len(block)):
        pieces.append(compressor.compress(block))
    pieces.append(compressor.flush())
    return pdf_from_streams([(b"".join(pieces), b" /Filter /FlateDecode")])


def encrypted_pdf_bytes(pages: Sequence[Sequence[str] | None], password: str) -> bytes:
    """``pdf_bytes(pages)`` encrypted with AES-128 under a user password."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def zip_with_zeros(member_bytes: int, *, name: str = "word/document.xml") -> bytes:
    """A zip whose one member inflates to ``member_bytes`` zero bytes, written in
    1 MiB pieces so the whole never sits in memory."""
    buffer = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open(name, "w", force_zip64=True) as member,
    ):
        left = member_bytes
        while left > 0:
            member.write(block[: min(left, len(block))])
            left -= len(block)
    return buffer.getvalue()


def png_bytes(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG: SOI, a JFIF APP0 segment, a fill byte, SOF0."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0
        + b"\xff"  # a fill byte before the next marker
        + b"\xff\xc0" + struct.pack(">H", len(sof0) + 2) + sof0
        + b"\xff\xd9"
    )  # fmt: skip


def gif_header(width: int, height: int) -> bytes:
    """A GIF89a header with its logical screen size, then the trailer."""
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def webp_header(width: int, height: int, chunk: str = "VP8X") -> bytes:
    """A RIFF/WEBP file whose first chunk (VP8X, VP8L or "VP8 ") gives the size."""
    if chunk == "VP8X":
        body = (
            b"\x00\x00\x00\x00"
            + (width - 1).to_bytes(3, "little")
            + (height - 1).to_bytes(3, "little")
        )
    elif chunk == "VP8L":
        bits = (width - 1) | ((height - 1) << 14)
        body = b"\x2f" + bits.to_bytes(4, "little")
    else:
        body = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    data = b"WEBP" + chunk.encode("ascii") + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(data)) + data


def lying_zip(name: str, real_bytes: int, declared_bytes: int) -> bytes:
    """A zip of one deflated member of ``real_bytes`` zeros whose headers declare it
    ``declared_bytes`` long, with the CRC of that many zeros: the declared sizes pass
    any directory check, the stream does not."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    pieces = []
    left = real_bytes
    while left > 0:
        pieces.append(compressor.compress(block[: min(left, len(block))]))
        left -= len(block)
    pieces.append(compressor.flush())
    packed = b"".join(pieces)
    crc = zlib.crc32(bytes(declared_bytes))
    encoded = name.encode("ascii")
    sizes = struct.pack("<III", crc, len(packed), declared_bytes)
    local = struct.pack("<IHHHHH", 0x04034B50, 20, 0, 8, 0, 0) + sizes
    local += struct.pack("<HH", len(encoded), 0) + encoded
    central = struct.pack("<IHHHHHH", 0x02014B50, 20, 20, 0, 8, 0, 0) + sizes
    central += struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, 0) + encoded
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(packed), 0
    )
    return local + packed + central + end

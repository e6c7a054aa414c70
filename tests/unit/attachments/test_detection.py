"""Kind detection from content and name, and image sizes read from headers."""

from __future__ import annotations

import pytest

from app.attachments import AttachmentError, Kind, RefusalReason, detect
from app.attachments.detection import display_name
from tests.attachment_files import (
    docx_bytes,
    gif_header,
    jpeg_header,
    pdf_bytes,
    png_bytes,
    webp_header,
)


@pytest.mark.parametrize(
    ("data", "media_type", "size"),
    [
        (png_bytes(3, 2), "image/png", (3, 2)),
        (jpeg_header(640, 480), "image/jpeg", (640, 480)),
        (gif_header(17, 9), "image/gif", (17, 9)),
        (webp_header(1920, 1080, "VP8X"), "image/webp", (1920, 1080)),
        (webp_header(300, 200, "VP8L"), "image/webp", (300, 200)),
        (webp_header(50, 40, "VP8 "), "image/webp", (50, 40)),
    ],
    ids=["png", "jpeg", "gif", "webp-vp8x", "webp-vp8l", "webp-vp8"],
)
def test_images_are_recognised_with_their_size_from_the_header(
    data: bytes, media_type: str, size: tuple[int, int]
) -> None:
    # The name says nothing: content decides.
    found = detect("picture.bin", data)
    assert found.kind is Kind.IMAGE
    assert found.media_type == media_type
    assert found.image is not None
    assert (found.image.width, found.image.height) == size


@pytest.mark.parametrize(
    "data",
    [
        png_bytes(3, 2)[:20],
        jpeg_header(640, 480)[:12],
        gif_header(1, 1)[:8],
        b"RIFF\0\0\0\0WEBPVP8X",
    ],
    ids=["png", "jpeg", "gif", "webp"],
)
def test_a_truncated_image_header_is_damaged(data: bytes) -> None:
    with pytest.raises(AttachmentError) as caught:
        detect("photo.img", data)
    assert caught.value.reason is RefusalReason.DAMAGED
    assert "save a new copy" in str(caught.value)


def test_documents_are_recognised_by_content() -> None:
    assert detect("anything", pdf_bytes([["x"]])).kind is Kind.PDF
    assert detect("anything", docx_bytes(["x"])).media_type.endswith("wordprocessingml.document")


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("notes.md", b"# Title\n", Kind.MARKDOWN),
        ("page.HTM", b"<p>hi</p>", Kind.HTML),
        ("saved", b"\xef\xbb\xbf<!DOCTYPE html><html></html>", Kind.HTML),
        ("script.py", b"print('%PDF-1.4 is only mentioned here')\n", Kind.TEXT),
        ("README", b"plain", Kind.TEXT),
    ],
)
def test_text_kinds_follow_the_name(name: str, data: bytes, kind: Kind) -> None:
    assert detect(name, data).kind is kind


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "save it as .docx"),
        (b"MZ\x90\x00" + bytes(100), "Windows program"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "unpack it"),
    ],
)
def test_known_binaries_are_refused_with_the_supported_types(data: bytes, hint: str) -> None:
    with pytest.raises(AttachmentError) as caught:
        detect("file.bin", data)
    assert caught.value.reason is RefusalReason.UNSUPPORTED_TYPE
    assert hint in str(caught.value)
    assert "PDF, Word (.docx)" in str(caught.value)


def test_a_zip_that_is_not_a_word_document_is_refused() -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", "a,b\n")
    with pytest.raises(AttachmentError) as caught:
        detect("archive.zip", buffer.getvalue())
    assert caught.value.reason is RefusalReason.UNSUPPORTED_TYPE
    assert "archive.zip is a zip archive but not a Word document" in str(caught.value)


@pytest.mark.parametrize("name", ["report.pdf", "letter.docx", "photo.png", "photo.JPG"])
def test_a_name_promising_a_binary_type_its_bytes_lack_is_damaged(name: str) -> None:
    with pytest.raises(AttachmentError) as caught:
        detect(name, b"just some words, not the promised format")
    assert caught.value.reason is RefusalReason.DAMAGED
    assert str(caught.value).startswith(f"{name} is named like a")


def test_display_name_drops_folders() -> None:
    assert display_name("/home/me/report.pdf") == "report.pdf"
    assert display_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert display_name("") == "attachment"

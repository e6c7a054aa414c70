"""Fuzzing attachment extraction (``app.attachments.extract``) and chunking.

Whatever the bytes and the name, ``extract`` returns an ``Extracted`` or raises
``AttachmentError``; never another exception. What it returns is consistent (PDF parts
labelled with their page, images with a positive size, text parts not blank), and its
parts chunk into pieces that cover their text. Mutations start from a valid PDF, Word
document, PNG, JPEG and WebP, so the parsers run past their first check.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.attachments import AttachmentError, Kind, chunk_parts, extract
from tests.attachment_files import docx_bytes, jpeg_header, pdf_bytes, png_bytes, webp_header
from tests.fuzz._profiles import FUZZ
from tests.fuzz._stats import tried
from tests.fuzz._strategies import mutated_bytes

pytestmark = pytest.mark.fuzz

NAMES = st.sampled_from(
    ["a.txt", "a.md", "a.html", "a.pdf", "a.docx", "a.png", "a.jpg", "a.webp", "a.gif", "a"]
)
PDF = pdf_bytes([["First page (with) \\ escapes", "second line"], None, ["Third page."]])
DOCX = docx_bytes(["A paragraph."], tables=[[["a", "b"], ["c", "d"]]])
IMAGES = [png_bytes(3, 2), jpeg_header(64, 48), webp_header(10, 20, "VP8L")]


def _check(name: str, data: bytes) -> None:
    try:
        found = extract(name, data)
    except AttachmentError as error:
        assert str(error)
        return
    if found.kind is Kind.IMAGE:
        assert found.image is not None and found.image.width > 0 and found.image.height > 0
        assert not found.parts
        return
    assert found.parts and all(part.text.strip() for part in found.parts)
    if found.kind is Kind.PDF:
        assert all(part.label == f"a.pdf, p. {part.page}" for part in found.parts if part.page)
    chunks = chunk_parts(found.parts, size=200, overlap=20)
    for index, part in enumerate(found.parts):
        own = [chunk for chunk in chunks if chunk.part_index == index]
        assert own[0].start == 0 and own[-1].end == len(part.text)


@FUZZ
@given(NAMES, st.binary(max_size=4096))
def test_any_bytes_extract_or_are_refused(name: str, data: bytes) -> None:
    tried("attachments: any bytes")
    _check(name, data)


@FUZZ
@given(mutated_bytes(PDF, max_mutations=6))
def test_mutated_pdfs_extract_or_are_refused(data: bytes) -> None:
    tried("attachments: mutated PDF")
    _check("a.pdf", data)


@FUZZ
@given(mutated_bytes(DOCX))
def test_mutated_word_documents_extract_or_are_refused(data: bytes) -> None:
    tried("attachments: mutated DOCX")
    _check("a.docx", data)


@FUZZ
@given(st.sampled_from(IMAGES).flatmap(mutated_bytes), NAMES)
def test_mutated_images_extract_or_are_refused(data: bytes, name: str) -> None:
    tried("attachments: mutated image")
    _check(name, data)

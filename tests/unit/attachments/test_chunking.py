"""Chunks for retrieval cover all the text, overlap a little, cut at boundaries and keep
their part's label; the inline-vs-retrieval decision and the fenced inline form."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.attachments import (
    Chunk,
    Extracted,
    ImageSize,
    Kind,
    Part,
    Placement,
    chunk_parts,
    extract,
    placement,
    render_inline,
)
from tests.attachment_files import pdf_bytes

PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Words, spaces, sentence ends and line breaks, in any mix (and runs with none of them).
TEXTS = st.text(
    alphabet=st.sampled_from(list("abcdefghij  .!?\n\n\t\u00e9\u2026\u201d")), max_size=3000
)


def assert_chunks_tile(text: str, chunks: list[Chunk], size: int, overlap: int) -> None:
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert 0 < len(chunk.text) <= size
    for before, after in pairwise(chunks):
        assert before.start < after.start <= before.end  # no gap, always progress
        assert before.end - after.start <= overlap
        assert before.end < after.end


@PROPERTIES
@given(text=TEXTS, size=st.integers(2, 400), overlap_share=st.floats(0, 0.49))
def test_chunks_cover_every_character_in_order(text: str, size: int, overlap_share: float) -> None:
    overlap = min(int(size * overlap_share), size // 2 - 1) if size >= 4 else 0
    chunks = chunk_parts([Part(text, "f.txt")], size=size, overlap=overlap)
    if not text.strip():
        assert chunks == []
        return
    assert_chunks_tile(text, chunks, size, overlap)
    assert {chunk.label for chunk in chunks} == {"f.txt"}


SENTENCES = " ".join(f"Sentence number {n} says something short." for n in range(200))


def test_chunks_end_at_sentence_ends_and_overlap_at_word_starts() -> None:
    chunks = chunk_parts([Part(SENTENCES, "s.txt")], size=300, overlap=60)
    assert len(chunks) > 10
    assert_chunks_tile(SENTENCES, chunks, 300, 60)
    for before, after in pairwise(chunks):
        assert before.text.endswith(". ")
        assert 0 < before.end - after.start <= 60  # they do overlap
        assert SENTENCES[after.start - 1] == " "  # and the overlap starts a word


def test_paragraph_breaks_win_over_sentence_ends() -> None:
    paragraphs = "\n\n".join("A paragraph. " * 6 + f"It is paragraph {n}." for n in range(30))
    chunks = chunk_parts([Part(paragraphs, "p.md")], size=250, overlap=0)
    assert_chunks_tile(paragraphs, chunks, 250, 0)
    assert all(chunk.text.endswith("\n\n") for chunk in chunks[:-1])


def test_text_without_boundaries_is_cut_at_the_size() -> None:
    text = "x" * 1000
    chunks = chunk_parts([Part(text, "x.txt")], size=300, overlap=20)
    assert [len(chunk.text) for chunk in chunks[:-1]] == [300] * (len(chunks) - 1)
    assert_chunks_tile(text, chunks, 300, 20)


def test_chunks_never_cross_pdf_pages_and_keep_their_page_label() -> None:
    pages = [
        [f"Page {page} line {line} has a few words." for line in range(30)] for page in range(1, 4)
    ]
    found = extract("report.pdf", pdf_bytes([pages[0], None, pages[1], pages[2]]))
    chunks = chunk_parts(found.parts, size=400, overlap=50)
    labels = {chunk.label for chunk in chunks}
    assert labels == {"report.pdf, p. 1", "report.pdf, p. 3", "report.pdf, p. 4"}
    for index, part in enumerate(found.parts):
        own = [chunk for chunk in chunks if chunk.part_index == index]
        assert {chunk.label for chunk in own} == {part.label}
        assert_chunks_tile(part.text, own, 400, 50)


def test_blank_parts_give_no_chunks() -> None:
    assert chunk_parts([Part("  \n", "a"), Part("word", "b")], size=10, overlap=0) == [
        Chunk("word", "b", 1, 0, 4)
    ]


@pytest.mark.parametrize(("size", "overlap"), [(1, 0), (100, 50), (100, -1)])
def test_impossible_chunk_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        chunk_parts([Part("text", "t")], size=size, overlap=overlap)


def _text(text: str, name: str = "notes.txt") -> Extracted:
    return Extracted(name, Kind.TEXT, "text/plain", len(text), (Part(text, name),))


def test_placement_inline_up_to_the_threshold_then_retrieval() -> None:
    assert placement(_text("x" * 100), inline_threshold=100) is Placement.INLINE
    assert placement(_text("x" * 101), inline_threshold=100) is Placement.RETRIEVAL
    image = Extracted("a.png", Kind.IMAGE, "image/png", 10, image=ImageSize(1, 1))
    assert placement(image, inline_threshold=100) is Placement.IMAGE


def test_inline_form_is_fenced_with_the_file_name() -> None:
    assert render_inline(_text("hello\nworld")) == "```notes.txt\nhello\nworld\n```"


def test_inline_fence_outlasts_backticks_in_the_text() -> None:
    text = "Example:\n````python\nprint(1)\n````\nand `code`"
    rendered = render_inline(_text(text, name="read`me\n.md"))
    assert rendered.startswith("`````read me .md\n")
    assert rendered.endswith("\n`````")
    assert rendered[len("`````read me .md\n") : -len("\n`````")] == text


def test_inline_pdf_text_marks_its_pages() -> None:
    found = extract("r.pdf", pdf_bytes([["One"], ["Two"]]))
    assert render_inline(found) == "```r.pdf\n[p. 1]\nOne\n\n[p. 2]\nTwo\n```"

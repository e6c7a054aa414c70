"""The incremental sentence splitter: examples of where sentences end, and properties
(hypothesis) that hold for any text and any way of cutting it into deltas."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.speech.sentences import SentenceSplitter, split_sentences


def fed(deltas: list[str]) -> list[str]:
    splitter = SentenceSplitter()
    pieces: list[str] = []
    for delta in deltas:
        pieces += splitter.feed(delta)
    return pieces + splitter.flush()


def stripped(text: str) -> list[str]:
    return [piece.strip() for piece in split_sentences(text)]


def test_sentences_end_at_their_marks() -> None:
    assert stripped("Hello there. How are you? Fine! Good.") == [
        "Hello there.",
        "How are you?",
        "Fine!",
        "Good.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Ask Dr. Smith about it.",
        "Some languages, e.g. Python, are easy.",
        "That is, i.e. Ruby, fine.",
        "Pi is 3.14 roughly.",
        "It is approx. 5 km away.",
        "Wait... what was that?",
        "Written by J. R. R. Tolkien long ago.",
        "Visit example.com/a.b today.",
    ],
)
def test_full_stops_that_do_not_end_a_sentence(text: str) -> None:
    assert stripped(text) == [text]


def test_an_ellipsis_before_a_capital_ends_the_sentence() -> None:
    assert stripped("Well... Then we left.") == ["Well...", "Then we left."]


def test_closing_quotes_and_emphasis_stay_with_their_sentence() -> None:
    assert stripped('He said "stop." Then **it ended.** Next (maybe.) Last') == [
        'He said "stop."',
        "Then **it ended.**",
        "Next (maybe.)",
        "Last",
    ]


def test_list_items_headings_and_paragraphs_are_pieces_of_their_own() -> None:
    text = "# Plan\nFirst this\n- one\n- two\n1. uno\n2. dos\n\nA paragraph\nwrapped here"
    assert stripped(text) == [
        "# Plan",
        "First this",
        "- one",
        "- two",
        "1. uno",
        "2. dos",
        "A paragraph\nwrapped here",
    ]


def test_a_code_block_is_one_piece_whatever_its_full_stops() -> None:
    text = "Run this:\n```python\nprint('Hi. There.')\n\nx = 1. \n```\nThat printed it."
    assert stripped(text) == [
        "Run this:",
        "```python\nprint('Hi. There.')\n\nx = 1. \n```",
        "That printed it.",
    ]


def test_a_table_is_one_piece() -> None:
    assert stripped("| a | b |\n|---|---|\n| 1 | 2 |\nAfter it.") == [
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "After it.",
    ]


def test_a_sentence_is_given_as_soon_as_the_next_one_starts() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("The first sentence") == []
    assert splitter.feed(". ") == []  # the next word may start lowercase (e.g. "a.m. on")
    assert splitter.feed("T") == ["The first sentence. "]
    assert splitter.feed("he second!") == []
    assert splitter.flush() == ["The second!"]


def test_a_fence_split_across_deltas_is_still_one_block() -> None:
    deltas = ["Code:\n`", "`", "`py\nprint(1.", " Two)\n`", "``", "\nAfter. Yes"]
    assert [p.strip() for p in fed(deltas)] == [
        "Code:",
        "```py\nprint(1. Two)\n```",
        "After.",
        "Yes",
    ]


def test_an_unclosed_fence_is_flushed_at_the_end() -> None:
    assert fed(["```sh\nls -l. Then\n", "more"]) == ["```sh\nls -l. Then\nmore"]


def test_flush_empties_the_splitter_for_the_next_answer() -> None:
    splitter = SentenceSplitter()
    splitter.feed("One. Tw")
    assert splitter.flush() == ["Tw"]
    assert splitter.feed("New. Answer") == ["New. "]


# Fragments that exercise every rule: marks, abbreviations, decimals, ellipses, lists,
# headings, quotes, fences (split markers included), tables, wide punctuation, spaces.
FRAGMENTS = [
    "Hello", "world", "dr", "Dr.", "e.g.", "i.e.", "3.14", "...", ".", "!", "?", "?!", ",",
    " ", "  ", "\n", "\n\n", "\t", "- ", "* ", "1. ", "12) ", "# ", "## ", "> ", "| a | b |",
    "|---|", "```", "``", "`", "~~~", "py", "\"", ")", "**", "_", "J.", "x", "A", "a", "5",
    "\u3002", "\uff01", "\u2026", "\u201d", "#", "|",
]  # fmt: skip
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@st.composite
def text_and_cuts(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(st.one_of(texts, st.text(max_size=60)))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text) + 1)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(text_and_cuts())
def test_any_split_into_deltas_gives_the_same_sentences(case: tuple[str, list[str]]) -> None:
    text, deltas = case
    assert fed(deltas) == split_sentences(text)


@settings(max_examples=200, deadline=None)
@given(text_and_cuts())
def test_no_text_is_lost_or_duplicated(case: tuple[str, list[str]]) -> None:
    text, deltas = case
    pieces = fed(deltas)
    assert "".join(pieces) == text
    assert all(pieces)

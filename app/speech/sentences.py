"""Splitting a streamed answer into sentences as soon as each one ends.

``SentenceSplitter`` takes the answer's Markdown in deltas of any size and returns
each complete piece as soon as the text seen so far proves that it ended; ``flush``
returns the rest when the answer is over. The pieces are exact slices of the input:
joined they give it back, and any split of the input into deltas gives the same
pieces as feeding it whole (a boundary is only declared once the characters that
decide it have arrived; tests/unit/speech/test_sentences.py checks both with
hypothesis). Each piece carries the whitespace after it; pass it through
``app.speech.text.prepare_for_speech`` before speaking.

Where a piece ends:

* after ``.``, ``!``, ``?`` or ``…`` (with any closing quotes, brackets or emphasis
  marks) followed by whitespace, except where a full stop is not the end of a
  sentence: the next word starts with a lowercase letter or a digit ("e.g. this",
  "approx. 5 km", "Wait... what"), the word is a known abbreviation ("Dr. Smith",
  "e.g. Python") or an initial ("J. Smith"), or it follows a list number ("1. ");
  decimals ("3.14") have no whitespace after the point and never end a sentence;
* after the ideographic full stop and the fullwidth ! and ? (no space needed);
* at a blank line, after a heading line, and before a line that starts a block
  (a list item, heading, quote, table row or code fence), so each list item is a
  piece even without a full stop;
* a fenced code block (even one whose deltas split its fence markers) is one piece,
  from its opening fence to its closing one; a table is one piece, all its rows.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SentenceSplitter", "split_sentences"]

#: Words that end with a full stop without ending the sentence (lowercase, no final dot).
ABBREVIATIONS: Final = frozenset(
    {
        "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "cf", "approx",
        "inc", "ltd", "mt", "gen", "col", "lt", "capt", "rev", "hon", "sgt", "fig", "vol",
        "ca", "al", "resp",
    }
)  # fmt: skip
_ENDS: Final = ".!?\u2026"
_WIDE_ENDS: Final = "\u3002\uff01\uff1f"
_CLOSERS: Final = "\"')]}*_\u201d\u2019\u00bb`"
# A line that starts a Markdown block; matched against at most one line of 12 characters.
_BLOCK_START: Final = re.compile(
    r"(?:#{1,6}(?:[ \t\n]|\Z)|[-*+][ \t\n]|\d{1,9}[.)][ \t\n]|>|\||```|~~~)"
)
_HEADING: Final = re.compile(r"[ \t]{0,3}#{1,6}(?:[ \t]|\Z)")
_WINDOW: Final = 12


class SentenceSplitter:
    """Feed an answer's deltas; get its sentences (and blocks) as soon as they end."""

    def __init__(self) -> None:
        self._buffer = ""
        self._resume = 0  # candidates before this position in the buffer are decided: no end

    def feed(self, delta: str) -> list[str]:
        """The pieces that ``delta`` completes (often none)."""
        self._buffer += delta
        return self._pieces(final=False)

    def flush(self) -> list[str]:
        """The rest of the text, as pieces, once the answer is over; the splitter is then
        empty and can take a new answer."""
        pieces = self._pieces(final=True)
        if self._buffer:
            pieces.append(self._buffer)
        self._buffer, self._resume = "", 0
        return pieces

    def _pieces(self, *, final: bool) -> list[str]:
        pieces: list[str] = []
        while self._buffer:
            cut, self._resume = _next_cut(self._buffer, self._resume, final=final)
            if cut is None or cut == 0:
                break
            pieces.append(self._buffer[:cut])
            self._buffer, self._resume = self._buffer[cut:], 0
        return pieces


def split_sentences(text: str) -> list[str]:
    """``text`` split as ``SentenceSplitter`` splits it when fed whole."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()


def _skip_space(text: str, position: int, *, final: bool) -> int | None:
    """The first non-whitespace position from ``position``; None when the whitespace runs
    to the end of what has arrived (more may follow), the end of the text if ``final``."""
    end = len(text)
    while position < end and text[position].isspace():
        position += 1
    if position == end and not final:
        return None
    return position


def _next_cut(text: str, resume: int, *, final: bool) -> tuple[int | None, int]:
    """Where the first piece of ``text`` ends (None: not known yet), and where to resume
    scanning next time."""
    start = _skip_space(text, 0, final=final)
    if start is None:
        return None, 0
    if start == len(text):
        return start, 0
    head = text[start : start + 3]
    if head[0] in "`~":
        fence_char = head[0]
        if len(head) < 3 and head == fence_char * len(head) and not final:
            return None, 0  # a fence marker may be arriving
        if head == fence_char * 3:
            return _fence_end(text, start, resume, final=final)
    if head[0] == "|":
        return _table_end(text, start, resume, final=final)
    return _prose_end(text, max(resume, start), start, final=final)


def _fence_end(text: str, start: int, resume: int, *, final: bool) -> tuple[int | None, int]:
    """A fenced code block ends after its closing fence line (and the whitespace after)."""
    fence_char = text[start]
    run = start
    while run < len(text) and text[run] == fence_char:
        run += 1
    if run == len(text) and not final:
        return None, 0  # the opening marker may grow
    width = run - start
    line_end = text.find("\n", start)
    position = max(resume, line_end + 1) if line_end >= 0 else len(text)
    while position < len(text):
        newline = text.find("\n", position)
        if newline < 0 and not final:
            return None, position  # this line is not complete yet
        line = text[position : newline if newline >= 0 else len(text)]
        stripped = line.strip()
        if (
            len(line) - len(line.lstrip(" ")) <= 3
            and len(stripped) >= width
            and stripped == fence_char * len(stripped)
        ):
            after = newline + 1 if newline >= 0 else len(text)
            cut = _skip_space(text, after, final=final)
            return cut, position if cut is None else 0
        position = newline + 1 if newline >= 0 else len(text)
    return (len(text), 0) if final else (None, position)


def _table_end(text: str, start: int, resume: int, *, final: bool) -> tuple[int | None, int]:
    """A table ends before the first line that is not a table row."""
    position = max(resume, start)
    while True:
        newline = text.find("\n", position)
        if newline < 0:
            return (len(text), 0) if final else (None, position)
        following = _skip_space(text, newline, final=final)
        if following is None:
            return None, position
        if following == len(text):
            return following, 0
        if text[following] != "|" or text.count("\n", newline, following) > 1:
            return following, 0
        position = following


def _prose_end(text: str, position: int, start: int, *, final: bool) -> tuple[int | None, int]:
    """The end of the first sentence (or line block) of prose from ``start``."""
    end = len(text)
    while position < end:
        char = text[position]
        if char in _ENDS or char in _WIDE_ENDS:
            verdict = _sentence_end(text, position, start, final=final)
            if verdict is None:
                return None, position
            if verdict:
                return verdict, 0
        elif char == "\n":
            verdict = _line_end(text, position, start, final=final)
            if verdict is None:
                return None, position
            if verdict:
                return verdict, 0
        position += 1
    return (len(text), 0) if final else (None, position)


def _sentence_end(text: str, position: int, start: int, *, final: bool) -> int | None:
    """Where the piece ends if the mark at ``position`` ends a sentence, 0 if it does not,
    None if the text that would tell has not arrived."""
    end = len(text)
    mark = text[position]
    after = position + 1
    while after < end and text[after] in _ENDS:
        after += 1
    marks = text[position:after]
    while after < end and text[after] in _CLOSERS:
        after += 1
    if after == end:
        return end if final else None
    if mark in _WIDE_ENDS:
        return _skip_space(text, after, final=final)
    if not text[after].isspace():
        return 0  # 3.14, example.com, "?!x"
    cut = _skip_space(text, after, final=final)
    if cut is None or cut == end:
        return cut
    if marks.strip(".") == "" and not _full_stop_ends(text, position, start, text[cut]):
        return 0
    return cut


def _full_stop_ends(text: str, position: int, start: int, following: str) -> bool:
    """Whether the full stop at ``position`` ends a sentence, given the next character."""
    if following.islower() or following.isdigit():
        return False
    word_start = position
    while word_start > start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:position].lstrip("\"'([{*_\u201c\u2018\u00ab").lower()
    if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return False
    line_start = text.rfind("\n", start, position) + 1
    line_start = max(line_start, start)
    return not text[line_start:position].strip().isdigit()  # "1. " starts a list item


def _line_end(text: str, newline: int, start: int, *, final: bool) -> int | None:
    """Where the piece ends if the line break at ``newline`` ends it, 0 if it does not,
    None if the text that would tell has not arrived."""
    cut = _skip_space(text, newline, final=final)
    if cut is None or cut == len(text):
        return cut
    if text.count("\n", newline, cut) > 1:
        return cut  # a blank line
    line_start = max(text.rfind("\n", start, newline) + 1, start)
    if _HEADING.match(text, line_start, newline):
        return cut
    window = text[cut : cut + _WINDOW]
    line_break = window.find("\n")
    if line_break >= 0:
        window = window[: line_break + 1]
    elif len(window) < _WINDOW and not final:
        return None
    return cut if _BLOCK_START.match(window) else 0

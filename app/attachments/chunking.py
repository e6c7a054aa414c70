"""An attachment's text in the chat: inline when short, else chunks for retrieval.

``placement`` decides; ``render_inline`` writes the fenced form a short attachment
takes in the prompt; ``chunk_parts`` cuts long text into overlapping chunks of about
a given size, at paragraph, sentence or word boundaries. A chunk never crosses
from one part into the next, so each keeps exactly one label ("report.pdf, p. 3").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.attachments.detection import Kind
from app.attachments.extraction import Extracted, Part

#: Default largest attachment text sent inline, in characters (the setting's default).
DEFAULT_INLINE_THRESHOLD = 8000
#: Default chunk size and overlap, in characters.
DEFAULT_CHUNK_SIZE = 1200
DEFAULT_CHUNK_OVERLAP = 150


class Placement(StrEnum):
    """Where an attachment goes in the request."""

    INLINE = "inline"  # its text, fenced, in the message
    RETRIEVAL = "retrieval"  # chunked and indexed; the relevant chunks are sent
    IMAGE = "image"  # an image block, for a vision model


def placement(extracted: Extracted, inline_threshold: int = DEFAULT_INLINE_THRESHOLD) -> Placement:
    """Inline if the attachment's text has at most ``inline_threshold`` characters."""
    if extracted.kind is Kind.IMAGE:
        return Placement.IMAGE
    if extracted.text_length <= inline_threshold:
        return Placement.INLINE
    return Placement.RETRIEVAL


def render_inline(extracted: Extracted) -> str:
    """The attachment as a fenced block whose info string is its file name.

    The fence is longer than any run of backticks in the text, so the text cannot
    close it early.
    """
    text = extracted.text
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    # An info string may not hold backticks or line breaks.
    info = re.sub(r"[`\s]+", " ", extracted.name).strip()
    return f"{fence}{info}\n{text}\n{fence}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one part's text: ``text == parts[part_index].text[start:end]``."""

    text: str
    label: str
    part_index: int
    start: int
    end: int


# Boundaries to cut after, best first: a blank line, a sentence's end, a line break,
# a space. The sentence end may be followed by closing quotes or brackets.
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"[.!?\u2026][\"'\u2019\u201d)\]]*\s+")
_LINE = re.compile(r"\n")
_SPACE = re.compile(r"\s+")
_BOUNDARIES = (_PARAGRAPH, _SENTENCE, _LINE, _SPACE)


def chunk_parts(
    parts: Sequence[Part],
    *,
    size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """Each part's text cut into chunks of at most ``size`` characters.

    A chunk ends at the best boundary in the second half of its window (see
    ``_BOUNDARIES``), or at ``size`` characters when there is none; the next one
    starts up to ``overlap`` characters earlier, at a word start. Together the chunks
    of a part cover every character of it. Blank parts give no chunks.
    """
    if size < 2:
        raise ValueError(f"chunk size must be at least 2 characters, not {size}")
    if not 0 <= overlap < size // 2:
        raise ValueError(f"chunk overlap must be from 0 to under half the size, not {overlap}")
    chunks: list[Chunk] = []
    for index, part in enumerate(parts):
        text = part.text
        if not text.strip():
            continue
        start = 0
        while True:
            end = len(text) if len(text) - start <= size else _cut(text, start, size)
            chunks.append(Chunk(text[start:end], part.label, index, start, end))
            if end >= len(text):
                break
            start = _next_start(text, end, overlap)
    return chunks


def _cut(text: str, start: int, size: int) -> int:
    """Where the chunk beginning at ``start`` ends: after the best boundary that leaves
    it more than half of ``size`` long, else at ``start + size``."""
    low, high = start + size // 2, start + size
    window = text[low:high]
    for boundary in _BOUNDARIES:
        matches = list(boundary.finditer(window))
        if matches:
            return low + matches[-1].end()
    return high


def _next_start(text: str, end: int, overlap: int) -> int:
    """The next chunk's start: ``overlap`` characters before ``end``, moved forward
    to the start of a word so the overlap does not begin mid-word."""
    if overlap == 0:
        return end
    start = end - overlap
    space = _SPACE.search(text, start, end)
    if space is not None and start > 0 and not text[start - 1].isspace():
        return space.end()
    return start

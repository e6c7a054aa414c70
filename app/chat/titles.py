"""Chat titles as plain text: a model's title answer tidied, or the first words of the
user's first message, with Markdown removed (a title is shown as text, so "**summary**"
must read "summary").

Markdown is read with markdown-it (the parser ``app.ui.markdown`` renders messages
with), taking the text of the first block that has any: emphasis, code spans, links
and headings keep their words and lose their marks; images keep their alt text.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Final

from app.store.models import DEFAULT_TITLE

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = ["TITLE_CHARS", "TITLE_WORDS", "clean_title", "heuristic_title", "plain_text"]

TITLE_WORDS: Final = 6
TITLE_CHARS: Final = 60


@functools.cache
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt  # on the first title, not when the service loads

    return MarkdownIt("commonmark", {"html": False})


def plain_text(markdown: str) -> str:
    """The first line of words of ``markdown``: the first line of its first block that has
    any text, marks removed ("" when there is none, e.g. only a code block)."""
    for token in _parser().parse(markdown):
        if token.type != "inline" or token.children is None:
            continue
        pieces: list[str] = []
        for child in token.children:
            if child.type in ("softbreak", "hardbreak"):
                if "".join(pieces).strip():
                    break
                continue
            pieces.append(_text(child))
        text = " ".join("".join(pieces).split())
        if text:
            return text
    return ""


def _text(token: Token) -> str:
    if token.type in ("text", "code_inline", "html_inline"):
        return token.content
    if token.type == "image":
        return "".join(_text(child) for child in token.children or [])
    return ""  # em/strong/link open and close marks


def clean_title(raw: str) -> str | None:
    """A model's title answer tidied up, or None if nothing usable is left."""
    line = plain_text(raw)
    line = re.sub(r"^(title|titel)\s*[:\-]\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \"'`*#.\u201c\u201d\u2018\u2019")
    words = line.split()
    if not words or not any(ch.isalpha() for ch in line):
        return None
    title = " ".join(words[:TITLE_WORDS])
    return title[:TITLE_CHARS].rstrip()


def heuristic_title(first_message: str) -> str:
    """A title from the first words of the user's first message (Markdown removed)."""
    line = plain_text(first_message)
    if not line:  # e.g. only a code block: its first line of code
        lines = (ln.strip() for ln in first_message.splitlines())
        line = next((ln for ln in lines if ln and not ln.startswith(("```", "~~~"))), "")
    words = re.sub(r"\s+", " ", line).strip().split(" ")
    title = " ".join(words[:TITLE_WORDS]).strip(" .,:;!?")
    if not title:
        return DEFAULT_TITLE
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    return title[0].upper() + title[1:]

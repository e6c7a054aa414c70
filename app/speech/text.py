"""Markdown of an answer turned into the plain text a voice reads.

The Markdown is parsed with markdown-it-py (the parser the window renders with, see
``app/ui/markdown.py``), never taken apart with regular expressions, and its tokens
are read as a person would read the rendered answer aloud:

* paragraphs, headings, list items and quotes: their text, without the Markdown
  marks; a heading or list item gets a full stop when it has none, so the voice
  pauses after it;
* code blocks are announced, not read: "Code block in Python, 12 lines.";
* inline code is read as its text (it is usually a name: ``pip``, ``None``);
* links are read as their text; a bare URL (an autolink, or a link whose text is
  its address) as "a link to example.com";
* images as their alt text ("Image: a cat on a sofa."), or "An image." without one;
* tables are read row by row: "Table, 3 rows." then one sentence per body row that
  pairs each cell with its column's header ("Name: Ada; Year: 1843."). Reading every
  cell keeps the answer whole; pairing with the header keeps a row understandable
  without seeing the table;
* thematic breaks and raw HTML (tags and HTML blocks) are dropped, not read out.

Numbers, units and abbreviations are left to the engine. Blocks are separated by
newlines. This module imports no Qt.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["code_block_announcement", "prepare_for_speech"]

#: Characters after which a voice pauses anyway; other blocks get a full stop.
_CLOSING = (".", "!", "?", ":", ";", "\u2026", "\u3002", "\uff01", "\uff1f")


@functools.cache
def _parser() -> MarkdownIt:
    # html=True only to recognise raw HTML and drop it (it is never rendered here).
    md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    return md


def prepare_for_speech(markdown: str) -> str:
    """The text a voice should read for the Markdown ``markdown`` ("" if nothing)."""
    tokens = _parser().parse(markdown)
    blocks: list[str] = []
    open_blocks: list[str] = []  # the types of the block tokens open around the current one
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type in ("fence", "code_block"):
            blocks.append(code_block_announcement(token.content, _language(token.info)))
        elif token.type == "table_open":
            start, index = index, _matching_close(tokens, index)
            blocks.extend(_table(tokens[start : index + 1]))
        elif token.type == "inline":
            text = _inline_text(token)
            parent = open_blocks[-1] if open_blocks else ""
            item = len(open_blocks) >= 2 and open_blocks[-2] == "list_item_open"
            blocks.append(_sentence(text) if parent == "heading_open" or item else text)
        elif token.nesting == 1:
            open_blocks.append(token.type)
        elif token.nesting == -1 and open_blocks:
            open_blocks.pop()
        index += 1
    return "\n".join(block for block in (b.strip() for b in blocks) if block)


def code_block_announcement(code: str, language: str = "") -> str:
    """What is said instead of a code block: "Code block in Python, 12 lines."."""
    lines = len(code.rstrip("\n").splitlines())
    if lines == 0:
        return f"Empty code block{' in ' + language if language else ''}."
    count = "1 line" if lines == 1 else f"{lines} lines"
    return f"Code block{' in ' + language if language else ''}, {count}."


def _language(info: str) -> str:
    """The human name of a fence's language ("py" -> "Python"), "" for none."""
    name = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    if not name:
        return ""
    from pygments.lexers import get_lexer_by_name  # type: ignore[import-untyped]
    from pygments.util import ClassNotFound  # type: ignore[import-untyped]

    try:
        return str(get_lexer_by_name(name).name)
    except ClassNotFound:
        return name


def _matching_close(tokens: Sequence[Token], index: int) -> int:
    depth = 0
    for position in range(index, len(tokens)):
        depth += tokens[position].nesting
        if depth == 0:
            return position
    return len(tokens) - 1


def _inline_text(token: Token) -> str:
    """The text of an inline token as read: marks dropped, links as their text, images as
    their alt text, bare URLs as "a link to HOST"."""
    parts: list[str] = []
    children = token.children or []
    index = 0
    while index < len(children):
        child = children[index]
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            alt = "".join(grandchild.content for grandchild in child.children or []).strip()
            parts.append(f"Image: {alt}." if alt else "An image.")
        elif child.type == "link_open":
            close = _matching_close(children, index)
            inner = Token("inline", "", 0, children=list(children[index + 1 : close]))
            text = _inline_text(inner)
            href = str(child.attrGet("href") or "")
            parts.append(_link_words(href) if _is_address(text, href) else text)
            index = close
        index += 1
    return " ".join("".join(parts).split())


def _is_address(text: str, href: str) -> bool:
    plain = text.strip().removeprefix("mailto:")
    return bool(plain) and (plain == href or plain == href.removeprefix("mailto:"))


def _link_words(href: str) -> str:
    if href.startswith("mailto:"):
        return f"an email address, {href.removeprefix('mailto:')}"
    host = urlsplit(href).hostname or ""
    return f"a link to {host.removeprefix('www.')}" if host else "a link"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith(_CLOSING) else f"{text}."


def _table(tokens: Sequence[Token]) -> list[str]:
    """Table tokens read row by row, each cell with its column's header."""
    rows: list[list[str]] = []
    header: list[str] = []
    current: list[str] | None = None
    in_head = False
    for token in tokens:
        if token.type == "thead_open":
            in_head = True
        elif token.type == "thead_close":
            in_head = False
        elif token.type == "tr_open":
            current = []
        elif token.type == "inline" and current is not None:
            current.append(_inline_text(token))
        elif token.type == "tr_close" and current is not None:
            if in_head:
                header = current
            else:
                rows.append(current)
            current = None
    count = "1 row" if len(rows) == 1 else f"{len(rows)} rows"
    spoken = [f"Table, {count}."]
    for row in rows:
        cells = []
        for column, cell in enumerate(row):
            name = header[column] if column < len(header) else ""
            if cell and name:
                cells.append(f"{name}: {cell}")
            elif cell:
                cells.append(cell)
        if cells:
            spoken.append(_sentence("; ".join(cells)))
    return spoken

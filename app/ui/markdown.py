"""Markdown of chat messages to the HTML subset ``QTextDocument`` understands.

Model output is untrusted: raw HTML is escaped (markdown-it ``html=False``),
images are never loaded (shown as their alt text), and links keep only
``http``, ``https`` and ``mailto`` targets. The documents that show this HTML
also refuse every resource (``ChatDocument`` in ``chat_view``), so nothing is
fetched even if an ``<img>`` slipped through.

Code blocks are highlighted with pygments as inline styles (QTextDocument has
no style sheet classes worth relying on) and carry a "Copy" link whose target,
``copy:N``, names the block in ``Rendered.code_blocks``.

Long messages are split by ``split_blocks`` into chunks at block boundaries so
a streaming answer re-renders only its growing tail, never the whole text.
This module imports no Qt.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin
from pygments import highlight  # type: ignore[import-untyped]
from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
from pygments.lexer import Lexer  # type: ignore[import-untyped]
from pygments.lexers import get_lexer_by_name  # type: ignore[import-untyped]
from pygments.util import ClassNotFound  # type: ignore[import-untyped]

__all__ = [
    "Chunk",
    "Rendered",
    "math_html",
    "render_markdown",
    "snippet_html",
    "split_blocks",
]

SAFE_SCHEMES = ("http://", "https://", "mailto:")
# A code block longer than this is shown unhighlighted: pygments is too slow for it
# to stay within a frame, and colour matters little in so much code.
HIGHLIGHT_LIMIT = 20_000


@dataclass(frozen=True, slots=True)
class Palette:
    """Colours of the rendered HTML for a light or dark window."""

    code_background: str
    code_border: str
    code_header: str
    quote: str
    quote_bar: str
    table_border: str
    link: str
    pygments_style: str


LIGHT = Palette(
    "#f4f5f7", "#dfe1e5", "#6a6f76", "#5f6670", "#b8bcc3", "#c9ccd1", "#1a5fb4", "default"
)
DARK = Palette(
    "#24272b", "#3a3e44", "#9aa0a6", "#a3a9b1", "#5a6068", "#4a4f56", "#78aeed", "monokai"
)


@dataclass(slots=True)
class Rendered:
    """HTML for one chunk, and the raw text of its code blocks (for "Copy")."""

    html: str
    code_blocks: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of whole Markdown blocks of a message.

    ``opens_in_fence`` is true when the chunk continues a code block that the
    previous chunk started (the chunk then begins with a repeated fence line).
    """

    text: str
    opens_in_fence: bool = False
    #: Where the chunk's own lines begin in the split text, and (when it opens in a
    #: code block) that block's fence marker and opening line: enough to resume there.
    start: int = 0
    fence: str = ""
    fence_line: str = ""


# --- rendering -----------------------------------------------------------------------------


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    # Math: $…$ and $$…$$ (not "$5 and $10": no digit or space right inside the
    # dollars), \(…\) and \[…\].
    md.use(dollarmath_plugin, allow_digits=False, allow_space=False, allow_labels=False)
    md.use(texmath_plugin, delimiters="brackets")
    for name, rule in (
        ("fence", _render_fence),
        ("code_block", _render_fence),
        ("image", _render_image),
        ("link_open", _render_link_open),
        ("link_close", _render_link_close),
        ("table_open", _render_table_open),
        ("blockquote_open", _render_blockquote_open),
        ("blockquote_close", _render_blockquote_close),
        ("code_inline", _render_code_inline),
        ("math_inline", _render_math_inline),
        ("math_inline_double", _render_math_block),
        ("math_block", _render_math_block),
        ("math_block_eqno", _render_math_block),
    ):
        md.add_render_rule(name, rule)
    return md


def _env_palette(env: dict[str, Any]) -> Palette:
    palette: Palette = env["palette"]
    return palette


def _render_fence(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    token = tokens[idx]
    palette = _env_palette(env)
    code = token.content
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    continued = env.pop("continued", False) and not env["code_blocks"]
    env["code_blocks"].append(code)
    number = len(env["code_blocks"]) - 1
    if env.get("highlight", True):
        body = _highlighted(code.rstrip("\n"), language, palette.pygments_style)
    else:
        body = html.escape(code.rstrip("\n"))
    header = ""
    if not continued:
        label = html.escape(language) if language else "code"
        header = (
            f'<tr><td style="color:{palette.code_header};">'
            f'<span style="font-size:small;">{label}</span>&nbsp;&nbsp;'
            f'<a href="copy:{number}" style="color:{palette.link};font-size:small;">Copy</a>'
            "</td></tr>"
        )
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" border="0" '
        f'bgcolor="{palette.code_background}" style="margin-top:4px;margin-bottom:4px;'
        f'border-color:{palette.code_border};">'
        f'{header}<tr><td><pre style="margin:0;">{body}</pre></td></tr></table>\n'
    )


def _render_code_inline(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    palette = _env_palette(env)
    return (
        f'<code style="background-color:{palette.code_background};">'
        f"{html.escape(tokens[idx].content)}</code>"
    )


def _render_image(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    # Never load images from model output: show what the picture was said to be.
    token = tokens[idx]
    alt = "".join(child.content for child in token.children or [])
    return f"<i>[image: {html.escape(alt or 'no description')}]</i>"


def _render_link_open(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    href = str(tokens[idx].attrGet("href") or "")
    safe = href.lower().startswith(SAFE_SCHEMES)
    env.setdefault("links", []).append(safe)
    if not safe:
        return ""
    palette = _env_palette(env)
    return f'<a href="{html.escape(href, quote=True)}" style="color:{palette.link};">'


def _render_link_close(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    links: list[bool] = env.get("links", [])
    return "</a>" if links and links.pop() else ""


def _render_table_open(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    palette = _env_palette(env)
    return (
        f'<table border="1" cellspacing="0" cellpadding="4" '
        f'style="border-color:{palette.table_border};border-style:solid;">\n'
    )


def _render_blockquote_open(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    # QTextDocument draws no CSS borders: the bar is a narrow coloured table cell.
    palette = _env_palette(env)
    return (
        '<table cellspacing="0" cellpadding="0" border="0" style="margin-top:4px;'
        f'margin-bottom:4px;"><tr><td width="3" bgcolor="{palette.quote_bar}"></td>'
        f'<td style="padding-left:10px;color:{palette.quote};">\n'
    )


def _render_blockquote_close(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    return "</td></tr></table>\n"


def _render_math_inline(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    return f'<span style="font-family:serif;">{math_html(tokens[idx].content)}</span>'


def _render_math_block(
    _renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    return (
        f'<p align="center" style="font-family:serif;">'
        f"{math_html(tokens[idx].content.strip())}</p>\n"
    )


# --- math -----------------------------------------------------------------------------------

# Markers for super- and subscripts in pylatexenc's text, made tags after escaping.
_SUP_OPEN, _SUB_OPEN, _SUP_CLOSE, _SUB_CLOSE = "\x01", "\x02", "\x03", "\x04"
_MACRO = re.compile(r"\\[A-Za-z]+")


def _scripts_as_macros(tex: str) -> str:
    """``x^{2}``, ``x^2``, ``x_\\alpha`` → ``x\\hcsup{2}``… so that the converter keeps
    what is raised or lowered (it prints ``^`` and ``_`` as they are)."""
    out: list[str] = []
    i = 0
    while i < len(tex):
        char = tex[i]
        if char not in "^_" or i + 1 >= len(tex):
            out.append(char)
            i += 1
            continue
        start = i + 1
        if tex[start] == "{":
            depth, end = 0, start
            while end < len(tex):
                depth += {"{": 1, "}": -1}.get(tex[end], 0)
                if depth == 0:
                    break
                end += 1
            argument, i = tex[start + 1 : end], end + 1
        elif match := _MACRO.match(tex, start):
            argument, i = match.group(0), match.end()
        else:
            argument, i = tex[start], start + 1
        macro = "hcsup" if char == "^" else "hcsub"
        out.append(f"\\{macro}{{{_scripts_as_macros(argument)}}}")
    return "".join(out)


@functools.lru_cache(maxsize=1)
def _latex() -> tuple[Any, Any]:
    from pylatexenc import latex2text, latexwalker, macrospec  # type: ignore[import-untyped]

    walker_db = latexwalker.get_default_latex_context_db()
    walker_db.add_context_category(
        "hushchat",
        macros=[macrospec.MacroSpec("hcsup", "{"), macrospec.MacroSpec("hcsub", "{")],
        prepend=True,
    )
    text_db = latex2text.get_default_latex_context_db()
    text_db.add_context_category(
        "hushchat",
        macros=[
            latex2text.MacroTextSpec("hcsup", simplify_repl=f"{_SUP_OPEN}%s{_SUP_CLOSE}"),
            latex2text.MacroTextSpec("hcsub", simplify_repl=f"{_SUB_OPEN}%s{_SUB_CLOSE}"),
        ],
        prepend=True,
    )
    return walker_db, latex2text.LatexNodes2Text(latex_context=text_db, math_mode="text")


@functools.lru_cache(maxsize=256)
def math_html(tex: str) -> str:
    """LaTeX math as HTML text: symbols as Unicode (pylatexenc), scripts as
    ``<sup>``/``<sub>``; what cannot be parsed is shown as typed."""
    from pylatexenc import latexwalker

    walker_db, converter = _latex()
    try:
        nodes, _, _ = latexwalker.LatexWalker(
            _scripts_as_macros(tex), latex_context=walker_db, tolerant_parsing=True
        ).get_latex_nodes()
        text = str(converter.nodelist_to_text(nodes)).strip()
    except (latexwalker.LatexWalkerError, RecursionError, ValueError):
        return html.escape(tex)
    text = html.escape(text)
    for marker, tag in (
        (_SUP_OPEN, "<sup>"),
        (_SUP_CLOSE, "</sup>"),
        (_SUB_OPEN, "<sub>"),
        (_SUB_CLOSE, "</sub>"),
    ):
        text = text.replace(marker, tag)
    return text


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Lexer | None:
    if not language:
        return None
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


@functools.lru_cache(maxsize=4)
def _formatter(style: str) -> HtmlFormatter[str]:
    return HtmlFormatter(style=style, noclasses=True, nowrap=True)


def _highlighted(code: str, language: str, style: str) -> str:
    lexer = _lexer(language.lower())
    if lexer is None or len(code) > HIGHLIGHT_LIMIT:
        return html.escape(code)
    result: str = highlight(code, lexer, _formatter(style))
    return result.rstrip("\n")


_MD = _parser()


def render_markdown(
    text: str, *, dark: bool = False, opens_in_fence: bool = False, highlight: bool = True
) -> Rendered:
    """HTML for ``text``; ``opens_in_fence`` drops the header of its first code block,
    ``highlight`` False leaves code uncoloured (cheaper, for text still streaming)."""
    env: dict[str, Any] = {
        "palette": DARK if dark else LIGHT,
        "highlight": highlight,
        "code_blocks": [],
        "continued": opens_in_fence,
    }
    body = _MD.render(text, env)
    return Rendered(body, env["code_blocks"])


def snippet_html(snippet: str) -> str:
    """A search snippet (matches between ``[`` and ``]``) as escaped HTML with bold matches."""
    escaped = html.escape(snippet)
    return re.sub(r"\[([^\[\]]*)\]", r"<b>\1</b>", escaped)


# --- chunking ------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def split_blocks(
    text: str,
    *,
    soft_limit: int = 600,
    hard_limit: int = 3000,
    resume: Chunk | None = None,
) -> list[Chunk]:
    """Split ``text`` into chunks of whole blocks for rendering piece by piece.

    A chunk ends before a line that starts at column 0 after a blank line (a new
    top-level block) once it holds ``soft_limit`` characters, or at any line once
    it holds ``hard_limit`` (inside a code block the fence is closed and reopened).
    Lines longer than ``hard_limit`` are cut at a space. Every decision depends
    only on the text before the cut, so earlier chunks of a growing (streaming)
    text never change and their renderings can be cached; ``resume`` (the last
    chunk of an earlier split of a prefix of ``text``) splits only from there on.
    """
    chunks: list[Chunk] = []
    current: list[str] = []
    size = 0
    fence: str | None = None  # the opening fence marker while inside a code block
    fence_line = ""
    opens_in_fence = False
    previous_blank = False
    chunk_start = 0
    offset = 0
    if resume is not None:
        offset = chunk_start = resume.start
        if resume.opens_in_fence:
            fence, fence_line, opens_in_fence = resume.fence, resume.fence_line, True
            current, size = [fence_line], len(fence_line) + 1

    def flush(at: int) -> None:
        nonlocal current, size, opens_in_fence, chunk_start
        if current:
            body = "\n".join(current)
            if fence is not None:
                body += "\n" + fence
            chunks.append(_chunk(body, opens_in_fence, chunk_start, resume_fence))
        current, size, chunk_start = [], 0, at
        opens_in_fence = fence is not None
        if fence is not None:
            current.append(fence_line)
            size = len(fence_line) + 1

    resume_fence = (fence or "", fence_line)
    for raw_line, line_start in _lines(text, offset, hard_limit):
        match = _FENCE.match(raw_line)
        starts_block = bool(raw_line) and not raw_line[0].isspace()
        if (
            fence is None and previous_blank and starts_block and size >= soft_limit
        ) or size >= hard_limit:
            flush(line_start)
            resume_fence = (fence or "", fence_line)
        current.append(raw_line)
        size += len(raw_line) + 1
        if fence is None:
            if match:
                fence, fence_line = match.group(1), raw_line
        elif (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        ):
            fence = None
        previous_blank = fence is None and not raw_line.strip()
    if current:
        chunks.append(_chunk("\n".join(current), opens_in_fence, chunk_start, resume_fence))
    return chunks


def _chunk(body: str, opens_in_fence: bool, start: int, fence: tuple[str, str]) -> Chunk:
    if opens_in_fence:
        return Chunk(body, True, start, fence[0], fence[1])
    return Chunk(body, False, start)


def _lines(text: str, offset: int, limit: int) -> list[tuple[str, int]]:
    """The lines of ``text[offset:]`` with where each starts; long ones cut at a space."""
    out: list[tuple[str, int]] = []
    position = offset
    for line in text[offset:].split("\n"):
        start = position
        position += len(line) + 1
        while len(line) > limit:
            cut = line.rfind(" ", limit // 2, limit)
            cut = cut if cut > 0 else limit
            out.append((line[:cut], start))
            rest = line[cut:]
            stripped = rest.lstrip(" ")
            start += cut + len(rest) - len(stripped)
            line = stripped
        out.append((line, start))
    return out

"""Text files: the encoding found (byte-order mark, UTF-8, else charset-normalizer), bytes
that are not text refused, and the readable text of an HTML page."""

from __future__ import annotations

import codecs
import locale
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import BinaryIO

from charset_normalizer import from_bytes

from app.attachments.detection import SUPPORTED_TYPES
from app.attachments.errors import AttachmentError, RefusalReason

# Longest marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BYTE_ORDER_MARKS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Text is refused as binary when this share of a sample is control characters.
_CONTROL_SHARE_LIMIT = 0.01
_SAMPLE_CHARS = 65536
# How much more "chaos" (charset-normalizer's share of odd characters, 0 to 1) the
# local code page's reading may show and still be preferred (see _best_guess).
_PREFERRED_CHAOS_MARGIN = 0.15
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def decode_text(shown: str, data: bytes) -> tuple[str, str]:
    """The text of ``data`` with newlines normalised, and the encoding it was read in.

    Raises ``AttachmentError`` (unsupported type) for bytes that are not text in any
    encoding charset-normalizer knows, or that decode to mostly control characters.
    """
    text: str | None = None
    encoding = ""
    for mark, codec in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            try:
                text, encoding = data.decode(codec), codec.removesuffix("-sig")
            except UnicodeDecodeError:
                text = None
            break
    if text is None:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            best = _best_guess(data)
            if best is not None:
                text, encoding = best
    if text is None or _is_binary(text):
        raise AttachmentError(
            f"{shown} is not a text file Hushchat can read (its bytes are no known text "
            f"encoding). {SUPPORTED_TYPES}.",
            reason=RefusalReason.UNSUPPORTED_TYPE,
        )
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


def decode_stream(
    shown: str, stream: BinaryIO, *, block: int = 1 << 20
) -> tuple[list[str], str] | None:
    """The text of a UTF-8 (or byte-order-marked) file read ``block`` bytes at a time, in
    pieces of about ``block`` characters cut after a line break, newlines normalised, and
    its encoding.

    A large text file is never held as bytes and text at once. Returns ``None`` when the
    bytes do not decode (not UTF-8, or not what their byte-order mark says):
    :func:`decode_text` on the whole file then finds the encoding. Raises
    ``AttachmentError`` as :func:`decode_text` does for bytes that are not text.
    """
    head = stream.read(block)
    codec = next((codec for mark, codec in _BYTE_ORDER_MARKS if head.startswith(mark)), "utf-8")
    decoder = codecs.getincrementaldecoder(codec)()
    pieces: list[str] = []
    try:
        for text in _normalised(_decoded(decoder, head, stream, block)):
            if not pieces and _is_binary(text):
                raise AttachmentError(
                    f"{shown} is not a text file Hushchat can read (its bytes are no known "
                    f"text encoding). {SUPPORTED_TYPES}.",
                    reason=RefusalReason.UNSUPPORTED_TYPE,
                )
            pieces.append(text)
    except UnicodeDecodeError:
        return None
    return pieces, codec.removesuffix("-sig")


def _decoded(
    decoder: codecs.IncrementalDecoder, head: bytes, stream: BinaryIO, block: int
) -> Iterator[str]:
    data = head
    while data:
        yield decoder.decode(data)
        data = stream.read(block)
    yield decoder.decode(b"", final=True)


def _normalised(texts: Iterator[str]) -> Iterator[str]:
    """``texts`` with CRLF and CR made LF, re-cut after the last line break of each piece
    (a CR at a piece's end waits for the next piece: it may be half of a CRLF)."""
    carry = ""
    for text in texts:
        text = carry + text
        cut = text.rfind("\n") + 1
        if text.endswith("\r"):
            cut = len(text) - 1
        elif cut == 0:
            cut = len(text) if len(text) > (1 << 20) else 0
        ready, carry = text[:cut], text[cut:]
        if ready:
            yield ready.replace("\r\n", "\n").replace("\r", "\n")
    if carry:
        yield carry.replace("\r\n", "\n").replace("\r", "\n")


def _best_guess(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's best reading of ``data``, or the local Windows code page
    when that reads the text nearly as cleanly.

    Short single-byte text is ambiguous: Western text often ties with Central European
    cp1250, or loses by a little to Mac Central European, both of which turn "à" or
    "ã" into other letters. The tie goes to the system's Windows code page when it has
    one (cp1250 on a Czech Windows), else to cp1252, by far the most common (the HTML
    standard even reads Latin-1 labels as cp1252).
    """
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    preferred = _local_code_page()
    for match in matches:
        if match.encoding == preferred and match.chaos <= best.chaos + _PREFERRED_CHAOS_MARGIN:
            best = match
            break
    return str(best), best.encoding


def _local_code_page() -> str:
    encoding = codecs.lookup(locale.getencoding()).name
    return encoding if re.fullmatch(r"cp125\d", encoding) else "cp1252"


def _is_binary(text: str) -> bool:
    sample = text[:_SAMPLE_CHARS]
    if "\x00" in sample:
        return True
    controls = sum(1 for char in sample if char < " " and char not in _ALLOWED_CONTROLS)
    return controls > _CONTROL_SHARE_LIMIT * max(len(sample), 1)


# Elements whose content is not read; elements that start and end a line.
# (Not <head>: pages often leave it unclosed; its only text, the title, is read apart.)
_SKIPPED = frozenset({"script", "style", "template", "noscript", "svg", "title"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "dd", "details", "div",
        "dl", "dt", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
        "table", "tr", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
# Stand-ins while lines are cleaned up (html_to_text drops any NUL of the page first).
_CELL_MARK = "\x00c"
_PRE_NEWLINE = "\x00n"
_PRE_SPACE = "\x00s"


class _TextOfHtml(HTMLParser):
    """Collects the visible text of a page: blocks on their own lines, cells tab-separated,
    ``<pre>`` kept as written, script and style dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skipping: list[str] = []
        self._pre_depth = 0
        self._title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.append(tag)
            return
        if tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag == "br":
            self.pieces.append("\n")
        elif tag in _BLOCKS:
            self.pieces.append("\n")
            if tag == "pre":
                self._pre_depth += 1
        elif tag in _CELLS:
            self.pieces.append(_CELL_MARK)

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag in _BLOCKS:
            self.pieces.append("\n")
            if tag == "pre" and self._pre_depth:
                self._pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._skipping:
            if self._skipping[-1] == "title" and not self._title:
                self._title = " ".join(data.split())
            return
        if self._pre_depth:
            # Kept through the clean-up of lines and spaces below.
            self.pieces.append(data.replace("\n", _PRE_NEWLINE).replace(" ", _PRE_SPACE))
        else:
            self.pieces.append(re.sub(r"\s+", " ", data))

    @property
    def title(self) -> str:
        return self._title


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: title first, then the body's text."""
    parser = _TextOfHtml()
    parser.feed(html.replace("\x00", ""))
    parser.close()
    raw = "".join(parser.pieces)
    lines = [
        "\t".join(cell for cell in (c.strip(" ") for c in line.split(_CELL_MARK)) if cell)
        for line in raw.split("\n")
    ]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    body = body.replace(_PRE_NEWLINE, "\n").replace(_PRE_SPACE, " ")
    if parser.title and not body.startswith(parser.title):
        return f"{parser.title}\n\n{body}".strip()
    return body

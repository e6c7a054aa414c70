"""Markdown of model output: code blocks, tables, escaping, no remote content, chunking."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextDocument

from app.ui.chat_view import ChatDocument
from app.ui.markdown import render_markdown, snippet_html, split_blocks

HOSTILE = """Hello <script>alert('x')</script> and <b onclick="steal()">bold</b>

<img src="https://tracker.example/pixel.png">

![a cat](https://tracker.example/cat.png) [safe](https://example.org) [evil](javascript:alert(1))
<iframe src="https://evil.example"></iframe>
"""


def test_code_block_is_highlighted_with_a_copy_link() -> None:
    rendered = render_markdown("```python\ndef f(x):\n    return x < 2\n```\n")
    assert rendered.code_blocks == ["def f(x):\n    return x < 2\n"]
    assert 'href="copy:0"' in rendered.html
    assert "<span style=" in rendered.html  # pygments colours, inline
    assert "&lt;" in rendered.html  # the code's own "<" stays text


def test_unknown_language_and_indented_code_are_plain_but_copyable() -> None:
    rendered = render_markdown("```nosuchlang\n<b>x</b>\n```\n\n    indented <i>\n")
    assert rendered.code_blocks == ["<b>x</b>\n", "indented <i>\n"]
    assert "<b>x</b>" not in rendered.html and "&lt;b&gt;x&lt;/b&gt;" in rendered.html


def test_tables_render_as_tables() -> None:
    rendered = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<table" in rendered.html and "<th>a</th>" in rendered.html
    assert "<td>2</td>" in rendered.html


def test_raw_html_is_escaped_and_nothing_remote_is_loaded() -> None:
    html = render_markdown(HOSTILE).html
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<iframe" not in html and "onclick=" not in html.replace("onclick=&quot;", "")
    assert "<img" not in html
    assert "[image: a cat]" in html
    assert 'href="https://example.org"' in html
    assert 'href="javascript' not in html


def test_the_document_refuses_every_resource(qapp: object) -> None:
    document = ChatDocument()
    requested: list[str] = []

    class Spy(ChatDocument):
        def loadResource(self, kind: int, name: QUrl | str) -> object:
            requested.append(name.toString() if isinstance(name, QUrl) else name)
            return super().loadResource(kind, name)

    spy = Spy()
    spy.setHtml('<p>x</p><img src="https://tracker.example/p.png">')
    spy.setTextWidth(300)
    spy.size()
    assert requested == ["https://tracker.example/p.png"] * len(requested)
    image = int(QTextDocument.ResourceType.ImageResource)
    assert document.loadResource(image, QUrl(requested[0])) is None  # asked, and refused
    document.setHtml(render_markdown(HOSTILE).html)
    text = document.toPlainText()
    assert "<script>alert('x')</script>" in text  # shown as text, not run


def test_search_snippets_bold_matches_and_escape() -> None:
    assert snippet_html("a [zebra] <b>") == "a <b>zebra</b> &lt;b&gt;"


def test_split_blocks_keeps_earlier_chunks_stable_while_text_grows() -> None:
    paragraph = "word " * 60 + "\n\n"
    code = "```python\n" + "x = 1\n\n" * 200 + "```\n\n"
    long_line = "x" * 7000 + " tail\n\n"
    text = (paragraph * 10 + code + paragraph * 10 + long_line) * 2
    final = split_blocks(text)
    assert len(final) > 5
    assert "".join(c.text for c in final if not c.opens_in_fence).count("word") > 0
    for end in range(0, len(text), 997):
        partial = split_blocks(text[:end])
        # every chunk but the growing last one is already what it will finally be
        assert partial[:-1] == final[: len(partial) - 1]
        # and splitting can resume from the last chunk of an earlier split
        assert partial[:-1] + split_blocks(text, resume=partial[-1]) == final


def test_split_blocks_closes_and_reopens_long_code_blocks() -> None:
    code = "```python\n" + "print('hello world')\n" * 400 + "```\n"
    chunks = split_blocks(code, hard_limit=2000)
    assert len(chunks) > 2
    assert chunks[1].opens_in_fence and chunks[1].text.startswith("```python")
    assert all(c.text.rstrip().endswith("```") for c in chunks[:-1])
    rendered = [render_markdown(c.text, opens_in_fence=c.opens_in_fence) for c in chunks]
    assert 'href="copy:0"' in rendered[0].html and "copy:" not in rendered[1].html


def test_math_is_rendered_and_prices_stay_text(qapp: object) -> None:
    """Issue 12 item 11: math was shown as typed."""
    inline = render_markdown(r"Euler: $e^{i\pi}+1=0$, and \(\alpha_1 \leq \sqrt{x}\).").html
    assert "e<sup>iπ</sup>+1=0" in inline
    assert "\N{GREEK SMALL LETTER ALPHA}<sub>1</sub> ≤" in inline and "\\alpha" not in inline
    block = render_markdown("$$\\sum_{n=1}^\\infty \\frac{1}{n^2}$$\n").html
    assert '<p align="center"' in block and "∑<sub>n=1</sub><sup>∞</sup>" in block
    assert "∑" in render_markdown("\\[\\sum_i x_i\\]\n").html
    prices = render_markdown("It costs $5 and $10, or $ 3 $.").html
    assert "<sup>" not in prices and "$5 and $10" in prices
    hostile = render_markdown(r"$<img src=x>\frac{a}{b}$").html
    assert "<img" not in hostile and "&lt;img" in hostile
    broken = render_markdown(r"odd $\frac{a}{$ math").html  # never an exception
    assert "odd" in broken and "math" in broken
    document = ChatDocument()
    document.setHtml(inline)
    assert "e" in document.toPlainText() and "π" in document.toPlainText()


def test_blockquotes_have_a_bar() -> None:
    """Issue 12 item 11: blockquotes were drawn without a bar."""
    rendered = render_markdown("> quoted *text*\n").html
    assert 'bgcolor="#b8bcc3"' in rendered  # the bar: a narrow coloured cell
    assert "<em>text</em>" in rendered
    dark = render_markdown("> q\n", dark=True).html
    assert 'bgcolor="#5a6068"' in dark

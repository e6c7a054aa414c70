"""Markdown prepared for speech: marks dropped, code announced, links and images read as
their words, tables row by row."""

from __future__ import annotations

import pytest

from app.speech.text import code_block_announcement, prepare_for_speech


def test_emphasis_and_inline_code_are_read_as_plain_words() -> None:
    text = prepare_for_speech("Use **bold**, *em*, ~~old~~ and `pip install` here.")
    assert text == "Use bold, em, old and pip install here."


def test_a_code_block_is_announced_with_its_language_and_length_not_read() -> None:
    code = "\n".join(f"x{n} = {n}" for n in range(12))
    text = prepare_for_speech(f"Here it is:\n\n```python\n{code}\n```\n\nDone.")
    assert text == "Here it is:\nCode block in Python, 12 lines.\nDone."
    assert "x3" not in text


@pytest.mark.parametrize(
    ("fence", "said"),
    [
        ("```\nls\n```", "Code block, 1 line."),
        ("```js\na()\nb()\n```", "Code block in JavaScript, 2 lines."),
        ("```made-up-language\nz\n```", "Code block in made-up-language, 1 line."),
        ("```py\n```", "Empty code block in Python."),
        ("    indented = True\n    more = 1", "Code block, 2 lines."),
    ],
)
def test_code_block_announcements(fence: str, said: str) -> None:
    assert prepare_for_speech(fence) == said


def test_the_announcement_counts_lines() -> None:
    assert code_block_announcement("a\n", "Python") == "Code block in Python, 1 line."


def test_links_are_read_as_their_text_and_bare_urls_as_their_host() -> None:
    text = prepare_for_speech(
        "See [the manual](https://example.org/manual) or <https://www.python.org/doc/>, "
        "or write to <ada@example.org>."
    )
    assert text == (
        "See the manual or a link to python.org, or write to an email address, ada@example.org."
    )
    assert "https" not in text


def test_images_are_read_as_their_alt_text() -> None:
    assert prepare_for_speech("![a cat on a sofa](cat.png)") == "Image: a cat on a sofa."
    assert prepare_for_speech("![](x.png)") == "An image."


def test_headings_and_list_items_get_a_pause() -> None:
    text = prepare_for_speech("# Steps\n\n- open the lid\n- pour it in!\n\n1. first\n2. second")
    assert text.splitlines() == [
        "Steps.",
        "open the lid.",
        "pour it in!",
        "first.",
        "second.",
    ]


def test_a_table_is_read_row_by_row_with_its_headers() -> None:
    text = prepare_for_speech(
        "| Name | Year |\n|---|---|\n| Ada | 1843 |\n| Alan | |\n\nThat is all."
    )
    assert text.splitlines() == [
        "Table, 2 rows.",
        "Name: Ada; Year: 1843.",
        "Name: Alan.",
        "That is all.",
    ]


def test_raw_html_and_rules_are_not_read() -> None:
    assert prepare_for_speech("<b>bold</b> words\n\n---\n\n<div>\nhidden\n</div>") == ("bold words")


def test_quotes_are_read_and_numbers_left_to_the_engine() -> None:
    assert prepare_for_speech("> It costs 3.14 EUR, e.g. today.") == (
        "It costs 3.14 EUR, e.g. today."
    )


def test_nothing_to_say() -> None:
    assert prepare_for_speech("") == ""
    assert prepare_for_speech("   \n\n---\n") == ""

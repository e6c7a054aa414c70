"""Logging: one handler, human or JSON, and secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.logs import REDACTED, configure_logging, redact, register_secret


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    handler = configure_logging("DEBUG", "human", out)
    yield out
    logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ('headers={"x-api-key": "zzz-key"}', "zzz-key"),
        ("using sk-ant-api03-abcdefgh12345", "abcdefgh12345"),
        ("api_key=foo123 ok", "foo123"),
        ("id token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "c2lnbmF0dXJl"),
        ("password: hunter2", "hunter2"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("refresh_token=r-123456", "r-123456"),
    ],
)
def test_redact_known_shapes(text: str, leaked: str) -> None:
    cleaned = redact(text)
    assert leaked not in cleaned
    assert REDACTED in cleaned


def test_plain_text_is_untouched() -> None:
    text = "listening on 127.0.0.1:8080 (3 models)"
    assert redact(text) == text


def test_registered_secret_is_removed_from_messages_args_and_tracebacks(
    stream: io.StringIO,
) -> None:
    register_secret("my-very-own-key-42")
    log = logging.getLogger("hushchat.test")
    log.warning("calling with %s", "my-very-own-key-42")
    try:
        raise RuntimeError("server said my-very-own-key-42 is wrong")
    except RuntimeError:
        log.exception("failed")
    output = stream.getvalue()
    assert "my-very-own-key-42" not in output
    assert output.count(REDACTED) >= 2
    assert "RuntimeError" in output


def test_json_format_is_one_object_per_line() -> None:
    out = io.StringIO()
    handler = configure_logging("INFO", "json", out)
    try:
        logging.getLogger("hushchat.test").info("hello %s", "Bearer tok-123")
    finally:
        logging.getLogger().removeHandler(handler)
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "INFO"
    assert record["logger"] == "hushchat.test"
    assert "tok-123" not in record["message"]


def test_configuring_twice_keeps_one_handler() -> None:
    first = configure_logging("INFO", "human", io.StringIO())
    second = configure_logging("INFO", "human", io.StringIO())
    try:
        root = logging.getLogger()
        assert first not in root.handlers
        assert second in root.handlers
    finally:
        logging.getLogger().removeHandler(second)


def test_debug_leaves_out_markdown_its_rule_trace(stream: io.StringIO) -> None:
    from markdown_it import MarkdownIt

    MarkdownIt("commonmark").render("A paragraph with *emphasis*.\n\n- a list\n")
    logging.getLogger("hushchat.test").debug("our own debug line")
    assert "markdown_it" not in stream.getvalue()
    assert "our own debug line" in stream.getvalue()

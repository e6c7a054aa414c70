"""Small parts of the failure handling: Retry-After, backoff, URL display, classification."""

from __future__ import annotations

import email.utils

import pytest

from providers import (
    AuthError,
    ContextTooLongError,
    RateLimitedError,
    ServerError,
)
from providers.base import fold_memory, normalise_finish_reason
from providers.http_errors import (
    ErrorContext,
    ErrorDetails,
    Redactor,
    classify,
    display_url,
    error_details,
    parse_retry_after,
)
from providers.retry import RetryPolicy

CONTEXT = ErrorContext(
    provider="p",
    server="server",
    base_url="http://127.0.0.1:1/v1",
    timeout=5,
    has_api_key=True,
    redact=Redactor([]),
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (" 1.5 ", 1.5), ("0", 0.0), ("-3", 0.0), ("soon", None), (None, None),
     ("nan", None), ("inf", None)],
)  # fmt: skip
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 42, usegmt=True), now=now) == 42.0
    assert parse_retry_after(email.utils.formatdate(now - 42, usegmt=True), now=now) == 0.0


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0, retry_after_cap=30.0)
    for attempt, window in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        for _ in range(20):
            delay = policy.delay(attempt)
            assert delay is not None
            assert window / 2 <= delay <= window
    assert policy.delay(0, retry_after=30.0) == 30.0
    assert policy.delay(0, retry_after=30.5) is None


def test_display_url_drops_credentials_and_query() -> None:
    assert (
        display_url("https://u:p@host.example:8443/v1?key=abc#x") == "https://host.example:8443/v1"
    )
    assert display_url("http://[::1]:11434") == "http://[::1]:11434"


def test_redactor_ignores_tiny_values() -> None:
    redact = Redactor(["abc", "longsecret"])
    assert redact("abc longsecret") == "abc ***"


def test_error_details_dialects() -> None:
    assert error_details({"error": "plain"}).message == "plain"
    assert error_details({"detail": "fastapi"}).message == "fastapi"
    assert error_details({"message": "top"}).message == "top"
    llama = error_details({"error": {"code": 400, "message": "m", "type": "t", "n_ctx": 8}})
    assert (llama.status, llama.type, llama.extra) == (400, "t", {"n_ctx": 8})
    assert error_details(["x"]).message == ""


def test_classify_long_messages_are_shortened() -> None:
    error = classify(500, ErrorDetails(message="x" * 5000), CONTEXT)
    assert isinstance(error, ServerError)
    assert len(str(error)) < 500


def test_classify_in_stream_types() -> None:
    assert isinstance(classify(None, ErrorDetails(type="authentication_error"), CONTEXT), AuthError)
    assert isinstance(
        classify(None, ErrorDetails(type="rate_limit_error"), CONTEXT), RateLimitedError
    )
    assert isinstance(
        classify(None, ErrorDetails(message="exceeds context length"), CONTEXT),
        ContextTooLongError,
    )
    unknown = classify(None, ErrorDetails(message="boom"), CONTEXT)
    assert isinstance(unknown, ServerError)
    assert "error in the stream" in str(unknown)


def test_fold_memory() -> None:
    assert fold_memory("S", "") == "S"
    assert fold_memory("S", "M") == "S\n\nMemory:\nM"
    assert fold_memory("", "M") == "Memory:\nM"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(None, "stop"), ("stop", "stop"), ("end_turn", "stop"), ("length", "length"),
     ("max_tokens", "length"), ("content_filter", "content_filter"), ("tool_use", "tool_calls"),
     ("function_call", "tool_calls"), ("load", "other")],
)  # fmt: skip
def test_finish_reasons(raw: str | None, reason: str) -> None:
    assert normalise_finish_reason(raw) == reason

"""Reading streamed answers: server-sent events, newline-delimited JSON, JSON values.

Bytes are decoded as the response's charset (UTF-8 unless the server says
otherwise) by httpx's incremental decoder, which replaces invalid byte
sequences with U+FFFD instead of failing: a broken byte in a model's output
costs one character, not the answer. Lines have no length limit.

SSE parsing is ``httpx-sse``'s. NDJSON lines are split on ``\\n`` only, not
with ``Response.aiter_lines``: that splits like ``str.splitlines`` and so also
breaks lines at U+0085, U+2028 and U+2029, which may appear unescaped inside
JSON strings (Go's encoder, used by Ollama, leaves U+0085 as is).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

from providers.errors import ProtocolError


def decode_json(text: str, *, provider: str, what: str) -> Any:
    """Parse ``text`` as JSON, or raise ``ProtocolError`` naming ``what`` was malformed.

    The message gives the size and position, never the text: it may be a piece
    of the conversation.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"the server sent {what} that is not valid JSON ({len(text)} characters, error at "
            f"position {exc.pos}: {exc.msg}). Check that `type` and `base_url` match the server.",
            provider=provider,
        ) from exc


def expect_object(value: Any, *, provider: str, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``ProtocolError``."""
    if not isinstance(value, dict):
        raise ProtocolError(
            f"the server sent {what} that is a JSON {type(value).__name__}, not an object. "
            "Check that `type` and `base_url` match the server.",
            provider=provider,
        )
    return value


def aiter_sse(response: httpx.Response) -> AsyncGenerator[ServerSentEvent, None]:
    """The server-sent events of ``response``.

    Check the content type first (``HTTPProvider.require_event_stream``):
    httpx-sse reports a wrong one as ``SSEError``, a ``TransportError``. This
    returns httpx-sse's own generator rather than wrapping it, to keep the
    per-event cost of the stream low.
    """
    return EventSource(response).aiter_sse()


async def aiter_ndjson(
    response: httpx.Response, *, provider: str
) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON objects of a newline-delimited JSON ``response``; blank lines are skipped."""
    pending: list[str] = []
    number = 0
    async for text in response.aiter_text():
        start = 0
        while (end := text.find("\n", start)) != -1:
            pending.append(text[start:end])
            start = end + 1
            line = "".join(pending)
            pending.clear()
            number += 1
            if line.strip():
                yield _ndjson_object(line, number, provider)
        if start < len(text):
            pending.append(text[start:])
    line = "".join(pending)
    if line.strip():
        yield _ndjson_object(line, number + 1, provider)


def _ndjson_object(line: str, number: int, provider: str) -> dict[str, Any]:
    what = f"line {number} of its stream"
    return expect_object(
        decode_json(line, provider=provider, what=what), provider=provider, what=what
    )

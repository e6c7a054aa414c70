"""Behaviour every wire format shares, checked against each (openai, ollama, anthropic)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, TypeVar, cast

import httpx
import pytest

from providers import (
    AuthError,
    ChatEvent,
    ConnectionFailedError,
    ContextTooLongError,
    FinishEvent,
    ProtocolError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ReasoningDelta,
    ServerError,
    TextDelta,
    UsageEvent,
    create_provider,
)
from tests.unit.providers.fakes import (
    API_KEY,
    ScriptedStream,
    Server,
    Wire,
    chat,
    collect,
    make_spec,
    stream_response,
)

E = TypeVar("E", bound=ProviderError)


async def collect_until_error(
    wire: Wire, server: Server, error: type[E], **spec: Any
) -> tuple[list[object], pytest.ExceptionInfo[E]]:
    """The events delivered before the stream raised ``error``, and the error."""
    events: list[object] = []
    async with create_provider(make_spec(wire.type, **spec), transport=server.transport) as p:
        with pytest.raises(error) as info:
            async for event in p.stream_chat(chat()):
                events.append(event)
    return events, info


def texts(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_normal_stream_yields_deltas_then_usage_then_finish(wire: Wire) -> None:
    server = Server(stream_response(wire, wire.answer(["Hel", "lo"])))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo")]
    assert events[-2] == UsageEvent(wire.usage)
    assert isinstance(events[-1], FinishEvent)
    assert events[-1].reason == "stop"
    assert sum(isinstance(e, FinishEvent) for e in events) == 1
    assert server.requests[0].url.path == wire.chat_path


async def test_reasoning_deltas_come_before_the_text(wire: Wire) -> None:
    body = wire.answer(["Answer"], reasoning=("Let me ", "think."))
    server = Server(stream_response(wire, body))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert events[:3] == [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        TextDelta("Answer"),
    ]


async def test_malformed_stream_is_a_protocol_error(wire: Wire) -> None:
    server = Server(stream_response(wire, wire.malformed))
    _events, info = await collect_until_error(wire, server, ProtocolError)
    assert "not valid JSON" in str(info.value)
    assert info.value.provider == f"test-{wire.type}"


async def test_wrong_content_type_is_a_protocol_error(wire: Wire) -> None:
    body = b"<html>not an API</html>" if wire.type == "ollama" else b'{"choices": []}'
    server = Server(httpx.Response(200, headers={"content-type": "text/html"}, content=body))
    _events, info = await collect_until_error(wire, server, ProtocolError)
    assert "type" in str(info.value)


async def test_stream_ending_without_its_end_marker_raises_after_the_deltas(wire: Wire) -> None:
    server = Server(stream_response(wire, wire.answer(["Hel", "lo"], complete=False)))
    events, info = await collect_until_error(wire, server, ConnectionFailedError)
    assert texts(events) == "Hello"
    assert "incomplete" in str(info.value)
    assert len(server.requests) == 1  # never retried after a token


async def test_connection_dropped_mid_answer_raises_after_the_deltas(wire: Wire) -> None:
    body = wire.answer(["Hel", "lo"], complete=False)
    stream = ScriptedStream([body], then=httpx.RemoteProtocolError("peer closed connection"))
    server = Server(stream_response(wire, stream))
    events, info = await collect_until_error(wire, server, ConnectionFailedError)
    assert texts(events) == "Hello"
    assert "mid-answer" in str(info.value)
    assert stream.closed
    assert len(server.requests) == 1


async def test_401_is_an_auth_error_and_not_retried(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.Response(401, json={"error": {"message": "invalid x-api-key"}}))
    _events, info = await collect_until_error(wire, server, AuthError)
    assert info.value.status == 401
    assert "api_key" in str(info.value)
    assert len(server.requests) == 1
    assert sleeps == []


async def test_403_is_an_auth_error(wire: Wire) -> None:
    server = Server(httpx.Response(403, json={"error": {"message": "forbidden"}}))
    _events, info = await collect_until_error(wire, server, AuthError)
    assert info.value.status == 403


async def test_429_with_retry_after_is_retried_then_succeeds(
    wire: Wire, sleeps: list[float]
) -> None:
    server = Server(
        httpx.Response(429, headers={"retry-after": "3"}, json={"error": "slow down"}),
        stream_response(wire, wire.answer(["ok"])),
    )
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert texts(events) == "ok"
    assert sleeps == [3.0]
    assert len(server.requests) == 2


async def test_429_with_retry_after_http_date_is_honoured(wire: Wire, sleeps: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 10, usegmt=True)
    server = Server(
        httpx.Response(429, headers={"retry-after": when}),
        stream_response(wire, wire.answer(["ok"])),
    )
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        await collect(provider)
    assert len(sleeps) == 1
    assert 5 <= sleeps[0] <= 10


async def test_429_asking_for_too_long_a_wait_raises_at_once(
    wire: Wire, sleeps: list[float]
) -> None:
    server = Server(httpx.Response(429, headers={"retry-after": "120"}))
    _events, info = await collect_until_error(wire, server, RateLimitedError)
    assert info.value.retry_after == 120.0
    assert "120 s" in str(info.value)
    assert sleeps == []
    assert len(server.requests) == 1


async def test_429_gives_up_after_max_retries(wire: Wire, sleeps: list[float]) -> None:
    server = Server(*(httpx.Response(429) for _ in range(3)))
    _events, info = await collect_until_error(wire, server, RateLimitedError)
    assert info.value.retry_after is None
    assert len(server.requests) == 3  # the first try and max_retries=2 retries
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9  # backoff grows (allowing for jitter)


async def test_503_is_retried_then_succeeds(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.Response(503), stream_response(wire, wire.answer(["ok"])))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert texts(events) == "ok"
    assert len(sleeps) == 1


async def test_503_with_retry_after_is_rate_limiting(wire: Wire, sleeps: list[float]) -> None:
    server = Server(*(httpx.Response(503, headers={"retry-after": "1"}) for _ in range(3)))
    _events, info = await collect_until_error(wire, server, RateLimitedError)
    assert info.value.status == 503
    assert sleeps == [1.0, 1.0]


async def test_no_retries_when_max_retries_is_zero(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.Response(503))
    await collect_until_error(wire, server, ServerError, max_retries=0)
    assert sleeps == []


async def test_500_is_a_server_error_and_not_retried(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}))
    _events, info = await collect_until_error(wire, server, ServerError)
    assert info.value.status == 500
    assert "CUDA out of memory" in str(info.value)
    assert "logs" in str(info.value)
    assert sleeps == []


async def test_500_with_a_non_json_body(wire: Wire) -> None:
    server = Server(httpx.Response(502, text="<html>Bad Gateway</html>"))
    _events, info = await collect_until_error(wire, server, ServerError)
    assert "Bad Gateway" in str(info.value)


async def test_404_says_what_to_check(wire: Wire) -> None:
    server = Server(httpx.Response(404, json={"error": "model 'nope' not found"}))
    _events, info = await collect_until_error(wire, server, ServerError)
    assert "base_url" in str(info.value)


async def test_connect_error_is_retried_then_succeeds(wire: Wire, sleeps: list[float]) -> None:
    server = Server(
        httpx.ConnectError("[Errno 111] Connection refused"),
        stream_response(wire, wire.answer(["ok"])),
    )
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert texts(events) == "ok"
    assert len(sleeps) == 1
    assert 0.25 <= sleeps[0] <= 0.5  # first backoff window with jitter


async def test_connect_error_gives_up_with_a_clear_message(wire: Wire, sleeps: list[float]) -> None:
    server = Server(*(httpx.ConnectError("[Errno 111] Connection refused") for _ in range(3)))
    _events, info = await collect_until_error(wire, server, ConnectionFailedError)
    assert "could not connect" in str(info.value)
    assert wire.base_url.split("//")[1].split("/")[0] in str(info.value)
    assert len(server.requests) == 3


async def test_dns_failure_is_named(wire: Wire, sleeps: list[float]) -> None:
    server = Server(*(httpx.ConnectError("[Errno -2] Name or service not known") for _ in range(3)))
    _events, info = await collect_until_error(wire, server, ConnectionFailedError)
    assert "could not resolve the host" in str(info.value)


async def test_tls_failure_is_not_retried(wire: Wire, sleeps: list[float]) -> None:
    server = Server(
        httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    _events, info = await collect_until_error(wire, server, ConnectionFailedError)
    assert "TLS" in str(info.value)
    assert sleeps == []


async def test_connect_timeout(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.ConnectTimeout("timed out"))
    _events, info = await collect_until_error(wire, server, ProviderTimeoutError)
    assert "could not connect" in str(info.value)
    assert "timeout" in str(info.value)
    assert len(server.requests) == 1


async def test_read_timeout_before_the_answer(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.ReadTimeout("timed out"))
    _events, info = await collect_until_error(wire, server, ProviderTimeoutError)
    assert "sent nothing for 5 s" in str(info.value)
    assert len(server.requests) == 1  # the request was sent: not safe to retry


async def test_read_timeout_mid_answer_raises_after_the_deltas(wire: Wire) -> None:
    stream = ScriptedStream(
        [wire.answer(["Hel"], complete=False)], then=httpx.ReadTimeout("timed out")
    )
    server = Server(stream_response(wire, stream))
    events, info = await collect_until_error(wire, server, ProviderTimeoutError)
    assert texts(events) == "Hel"
    assert "mid-answer" in str(info.value)
    assert stream.closed


async def test_invalid_utf8_becomes_the_replacement_character(wire: Wire) -> None:
    body = wire.answer(["AB"]).replace(b"AB", b"A\xff\xfeB")
    server = Server(stream_response(wire, body))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert texts(events) == "A\ufffd\ufffdB"
    assert isinstance(events[-1], FinishEvent)


async def test_multibyte_characters_split_across_chunks(wire: Wire) -> None:
    body = wire.answer(["héllo ✓"])
    cut = body.index("✓".encode()) + 1
    server = Server(stream_response(wire, ScriptedStream([body[:cut], body[cut:]])))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert texts(events) == "héllo ✓"


async def test_one_megabyte_line_parses(wire: Wire) -> None:
    big = "x" * 1_000_000
    body = wire.answer([big, "!"])
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    server = Server(stream_response(wire, ScriptedStream(chunks)))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        events = await collect(provider)
    assert texts(events) == big + "!"


async def test_error_inside_the_stream_raises_after_the_deltas(wire: Wire) -> None:
    server = Server(stream_response(wire, wire.error_in_stream))
    events, info = await collect_until_error(wire, server, ServerError)
    assert texts(events) == "Hel"
    assert "error in the stream" in str(info.value) or "HTTP 500" in str(info.value)


async def test_context_too_long(wire: Wire, sleeps: list[float]) -> None:
    server = Server(wire.context_too_long())
    _events, info = await collect_until_error(wire, server, ContextTooLongError)
    assert "context window" in str(info.value)
    assert info.value.status == 400
    assert sleeps == []


async def test_list_models(wire: Wire) -> None:
    server = Server(httpx.Response(200, json=wire.models_payload))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        models = await provider.list_models()
    assert [m.id for m in models] == wire.model_ids
    assert server.requests[0].url.path == wire.models_path
    assert server.requests[0].method == "GET"


async def test_list_models_with_a_wrong_shape_is_a_protocol_error(wire: Wire) -> None:
    server = Server(httpx.Response(200, json={"unexpected": True}))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        with pytest.raises(ProtocolError):
            await provider.list_models()


async def test_list_models_with_invalid_json_is_a_protocol_error(wire: Wire) -> None:
    server = Server(httpx.Response(200, content=b"{"))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        with pytest.raises(ProtocolError):
            await provider.list_models()


async def test_list_models_is_retried_on_connect_errors(wire: Wire, sleeps: list[float]) -> None:
    server = Server(httpx.ConnectError("refused"), httpx.Response(200, json=wire.models_payload))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        models = await provider.list_models()
    assert len(models) == len(wire.model_ids)
    assert len(sleeps) == 1


async def test_list_models_auth_error(wire: Wire) -> None:
    server = Server(httpx.Response(401))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        with pytest.raises(AuthError):
            await provider.list_models()


async def test_closing_the_stream_closes_the_response(wire: Wire) -> None:
    stream = ScriptedStream([wire.answer(["Hel", "lo"], complete=False)], hang=True)
    server = Server(stream_response(wire, stream))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        # The built-in types return async generators; the Protocol promises an iterator.
        chat_stream = cast(AsyncGenerator[ChatEvent, None], provider.stream_chat(chat()))
        async with aclosing(chat_stream) as events:
            first = await anext(events)
            assert isinstance(first, TextDelta)
            assert not stream.closed
        assert stream.closed


async def test_cancelling_the_consumer_closes_the_response_promptly(wire: Wire) -> None:
    stream = ScriptedStream([wire.answer(["Hel", "lo"], complete=False)], hang=True)
    server = Server(stream_response(wire, stream))
    received: list[object] = []

    async def consume() -> None:
        async for event in provider.stream_chat(chat()):
            received.append(event)

    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        task = asyncio.create_task(consume())
        await asyncio.wait_for(stream.hanging.wait(), timeout=5)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.5
        assert stream.closed
    assert texts(received) == "Hello"


async def test_api_key_goes_in_a_header_never_the_url(wire: Wire) -> None:
    server = Server(stream_response(wire, wire.answer(["ok"])))
    async with create_provider(make_spec(wire.type), transport=server.transport) as provider:
        await collect(provider)
    request = server.requests[0]
    assert API_KEY not in str(request.url)
    assert API_KEY in " ".join(request.headers.values())
    assert API_KEY not in request.content.decode()


async def test_custom_headers_are_sent(wire: Wire) -> None:
    server = Server(stream_response(wire, wire.answer(["ok"])))
    spec = make_spec(wire.type, headers={"X-Title": "Hushchat"})
    async with create_provider(spec, transport=server.transport) as provider:
        await collect(provider)
    assert server.requests[0].headers["x-title"] == "Hushchat"

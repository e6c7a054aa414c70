"""The ``anthropic`` type: what it sends, and the parts of the Messages stream only it has."""

from __future__ import annotations

import httpx
import pytest

from providers import (
    AuthError,
    ChatMessage,
    ChatRequest,
    ContextTooLongError,
    FinishEvent,
    ProtocolError,
    ProviderConfigError,
    RateLimitedError,
    ReasoningDelta,
    Role,
    ServerError,
    TextDelta,
    Usage,
    UsageEvent,
    create_provider,
)
from tests.unit.providers.fakes import API_KEY, WIRES, Server, collect, make_spec, sse

WIRE = WIRES["anthropic"]


def event_stream(body: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def delta(text: str) -> str:
    return sse(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        "content_block_delta",
    )


async def test_request_body_and_headers() -> None:
    server = Server(event_stream(WIRE.answer(["ok"]).decode()))
    request = ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content="Be brief."),
            ChatMessage(role=Role.USER, content="Hi"),
            ChatMessage(role=Role.ASSISTANT, content="Hello."),
            ChatMessage(role=Role.USER, content="How are you?"),
        ],
        memory="Ada",
        temperature=1.5,
        stop=["END"],
    )
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        await collect(provider, request)
    sent = server.requests[0]
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert server.json_bodies()[0] == {
        "model": "test-model",
        "max_tokens": 4096,
        "system": "Be brief.\n\nMemory:\nAda",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "How are you?"},
        ],
        "stream": True,
        "temperature": 1.0,
        "stop_sequences": ["END"],
    }


async def test_max_tokens_from_the_request_and_no_system() -> None:
    server = Server(event_stream(WIRE.answer(["ok"]).decode()))
    request = ChatRequest(messages=[ChatMessage(role=Role.USER, content="Hi")], max_tokens=10)
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        await collect(provider, request)
    body = server.json_bodies()[0]
    assert body["max_tokens"] == 10
    assert "system" not in body


async def test_thinking_then_text_with_usage_and_stop_reason() -> None:
    server = Server(event_stream(WIRE.answer(["Hi"], reasoning=("hmm",)).decode()))
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [
        ReasoningDelta("hmm"),
        TextDelta("Hi"),
        UsageEvent(Usage(7, 2)),
        FinishEvent("stop", "end_turn"),
    ]


async def test_max_tokens_stop_reason_is_length() -> None:
    body = delta("a") + sse(
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {}},
        "message_delta",
    )
    body += sse({"type": "message_stop"}, "message_stop")
    server = Server(event_stream(body))
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), FinishEvent("length", "max_tokens")]


async def test_unknown_event_types_are_ignored() -> None:
    body = sse({"type": "future_event", "x": 1}, "future_event") + delta("a")
    body += sse({"type": "message_stop"}, "message_stop")
    server = Server(event_stream(body))
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), FinishEvent("stop", None)]


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", ServerError),
        ("rate_limit_error", RateLimitedError),
        ("authentication_error", AuthError),
        ("api_error", ServerError),
    ],
)
async def test_error_events(error_type: str, expected: type[Exception]) -> None:
    body = delta("a") + sse(
        {"type": "error", "error": {"type": error_type, "message": "nope"}}, "error"
    )
    server = Server(event_stream(body))
    events: list[object] = []
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        with pytest.raises(expected):
            async for event in provider.stream_chat(
                ChatRequest(messages=[ChatMessage(role=Role.USER, content="x")])
            ):
                events.append(event)
    assert events == [TextDelta("a")]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "content_block_delta", "delta": "text"},
        {"type": "content_block_delta", "delta": {"type": "text_delta"}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": 1}},
    ],
)
async def test_wrong_shapes_are_protocol_errors(data: object) -> None:
    server = Server(event_stream(sse(data, "content_block_delta")))
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        with pytest.raises(ProtocolError):
            await collect(provider)


async def test_529_overloaded_is_retried(sleeps: list[float]) -> None:
    server = Server(
        httpx.Response(529, json={"type": "error", "error": {"type": "overloaded_error"}}),
        event_stream(WIRE.answer(["ok"]).decode()),
    )
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        await collect(provider)
    assert len(sleeps) == 1


async def test_prompt_too_long() -> None:
    server = Server(WIRE.context_too_long())
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        with pytest.raises(ContextTooLongError, match="prompt is too long"):
            await collect(provider)


def test_template_is_refused_at_creation() -> None:
    spec = make_spec("anthropic", template="{{ prompt }}")
    with pytest.raises(ProviderConfigError, match="cannot use `template`") as info:
        create_provider(spec)
    assert isinstance(info.value, ValueError)
    assert info.value.provider == "test-anthropic"


async def test_list_models_follows_pages() -> None:
    first = {
        "data": [{"type": "model", "id": "claude-a", "display_name": "Claude A"}],
        "has_more": True,
        "last_id": "claude-a",
    }
    second = {"data": [{"type": "model", "id": "claude-b"}], "has_more": False, "last_id": "b"}
    server = Server(httpx.Response(200, json=first), httpx.Response(200, json=second))
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        models = await provider.list_models()
    assert [m.id for m in models] == ["claude-a", "claude-b"]
    assert models[0].details == {"display_name": "Claude A"}
    assert server.requests[0].url.params["limit"] == "1000"
    assert server.requests[1].url.params["after_id"] == "claude-a"
    assert server.requests[0].headers["x-api-key"] == API_KEY


async def test_json_error_with_status_200_instead_of_a_stream() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server = Server(httpx.Response(200, json=body))
    async with create_provider(make_spec("anthropic"), transport=server.transport) as provider:
        with pytest.raises(ServerError, match="Overloaded"):
            await collect(provider)

"""The ``openai`` type: what it sends, and the parts of the SSE dialect only it has."""

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
    RateLimitedError,
    ReasoningDelta,
    Role,
    ServerError,
    TextDelta,
    Usage,
    UsageEvent,
    create_provider,
)
from tests.unit.providers.fakes import API_KEY, WIRES, Server, chat, collect, make_spec, sse

WIRE = WIRES["openai"]


def event_stream(body: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


async def test_request_body_and_headers() -> None:
    server = Server(event_stream(WIRE.answer(["ok"]).decode()))
    request = ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content="Be brief."),
            ChatMessage(role=Role.USER, content="Hi"),
        ],
        memory="The user is called Ada.",
        max_tokens=64,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
    )
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        await collect(provider, request)
    sent = server.requests[0]
    assert str(sent.url) == "http://127.0.0.1:8080/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert server.json_bodies()[0] == {
        "model": "test-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "messages": [
            {"role": "system", "content": "Be brief.\n\nMemory:\nThe user is called Ada."},
            {"role": "user", "content": "Hi"},
        ],
    }


async def test_memory_without_a_system_prompt_becomes_one() -> None:
    server = Server(event_stream(WIRE.answer(["ok"]).decode()))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        await collect(provider, chat(system=None, memory="likes tea"))
    assert server.json_bodies()[0]["messages"][0] == {
        "role": "system",
        "content": "Memory:\nlikes tea",
    }


async def test_request_model_overrides_the_spec_and_trailing_slash_is_ignored() -> None:
    server = Server(event_stream(WIRE.answer(["ok"]).decode()))
    spec = make_spec("openai", base_url="http://127.0.0.1:8080/v1/", api_key=None)
    request = ChatRequest(messages=[ChatMessage(role=Role.USER, content="x")], model="other")
    async with create_provider(spec, transport=server.transport) as provider:
        await collect(provider, request)
    assert server.requests[0].url.path == "/v1/chat/completions"
    assert "authorization" not in server.requests[0].headers
    assert server.json_bodies()[0]["model"] == "other"


async def test_reasoning_field_and_length_finish() -> None:
    body = (
        sse({"choices": [{"delta": {"reasoning": "thinking"}}]})
        + sse({"choices": [{"delta": {"content": "cut"}, "finish_reason": "length"}]})
        + "data: [DONE]\n\n"
    )
    server = Server(event_stream(body))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [
        ReasoningDelta("thinking"),
        TextDelta("cut"),
        FinishEvent("length", "length"),
    ]


async def test_usage_in_the_finish_chunk_and_done_without_finish_reason() -> None:
    body = (
        sse({"choices": [{"delta": {"content": "a"}}]})
        + sse({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        + "data: [DONE]\n\n"
    )
    server = Server(event_stream(body))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), UsageEvent(Usage(1, 1)), FinishEvent("stop", None)]


async def test_finish_reason_without_done_is_accepted() -> None:
    body = sse({"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}]})
    server = Server(event_stream(body))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events[-1] == FinishEvent("stop", "stop")


async def test_nothing_after_done_is_read() -> None:
    body = sse({"choices": [{"delta": {"content": "a"}}]}) + "data: [DONE]\n\ndata: {broken\n\n"
    server = Server(event_stream(body))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events[-1] == FinishEvent("stop", None)


async def test_comments_and_blank_data_are_skipped() -> None:
    body = ": keep-alive\n\n" + sse({"choices": [{"delta": {"content": "a"}}]})
    body += "data: \n\n" + "data: [DONE]\n\n"
    server = Server(event_stream(body))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), FinishEvent("stop", None)]


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": {"delta": {}}},
        {"choices": ["text"]},
        {"choices": [{"delta": "text"}]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"reasoning_content": ["x"]}}]},
        {"choices": [{"delta": {}, "finish_reason": 1}]},
        {"choices": [], "usage": "lots"},
        ["not", "an", "object"],
    ],
)
async def test_wrong_shapes_are_protocol_errors(chunk: object) -> None:
    server = Server(event_stream(sse(chunk) + "data: [DONE]\n\n"))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ProtocolError, match="documented format"):
            await collect(provider)


async def test_openai_context_length_exceeded() -> None:
    server = Server(
        httpx.Response(
            400,
            json={
                "error": {
                    "message": "This model's maximum context length is 8192 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        )
    )
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ContextTooLongError, match="8192"):
            await collect(provider)


async def test_llama_server_context_error_names_the_window() -> None:
    server = Server(WIRE.context_too_long())
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ContextTooLongError, match="context window of 4096 tokens"):
            await collect(provider)


async def test_insufficient_quota_is_not_a_rate_limit(sleeps: list[float]) -> None:
    server = Server(
        httpx.Response(
            429,
            json={"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}},
        )
    )
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ServerError, match="billing") as info:
            await collect(provider)
    assert not isinstance(info.value, RateLimitedError)


async def test_rate_limit_error_inside_the_stream() -> None:
    body = sse({"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}})
    server = Server(event_stream(body))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(RateLimitedError):
            await collect(provider)


async def test_missing_key_says_to_set_one() -> None:
    server = Server(httpx.Response(401, json={"error": {"message": "No API key provided"}}))
    spec = make_spec("openai", api_key=None)
    async with create_provider(spec, transport=server.transport) as provider:
        with pytest.raises(AuthError, match="set `api_key`"):
            await collect(provider)


async def test_404_hints_at_v1() -> None:
    server = Server(httpx.Response(404, text="Not Found"))
    spec = make_spec("openai", base_url="http://127.0.0.1:1234")
    async with create_provider(spec, transport=server.transport) as provider:
        with pytest.raises(ServerError, match="/v1"):
            await collect(provider)


async def test_redirect_is_not_followed() -> None:
    server = Server(httpx.Response(301, headers={"location": "https://elsewhere.example/v1"}))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ServerError, match="redirected"):
            await collect(provider)
    assert len(server.requests) == 1


async def test_list_models_details() -> None:
    server = Server(httpx.Response(200, json=WIRE.models_payload))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        models = await provider.list_models()
    assert models[0].owned_by == "llamacpp"
    assert models[1].context_size == 32768
    assert str(server.requests[0].url) == "http://127.0.0.1:8080/v1/models"


async def test_json_error_with_status_200_instead_of_a_stream() -> None:
    server = Server(
        httpx.Response(
            200,
            json={"error": {"message": "too long", "code": "context_length_exceeded"}},
        )
    )
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ContextTooLongError):
            await collect(provider)


async def test_non_streamed_json_answer_is_a_protocol_error() -> None:
    server = Server(httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]}))
    async with create_provider(make_spec("openai"), transport=server.transport) as provider:
        with pytest.raises(ProtocolError, match="text/event-stream"):
            await collect(provider)

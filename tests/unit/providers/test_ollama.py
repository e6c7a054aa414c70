"""The ``ollama`` type: what it sends, and the parts of the NDJSON dialect only it has."""

from __future__ import annotations

import httpx
import pytest

from providers import (
    ChatMessage,
    ChatRequest,
    ContextTooLongError,
    FinishEvent,
    ProtocolError,
    Role,
    ServerError,
    TextDelta,
    Usage,
    UsageEvent,
    create_provider,
)
from tests.unit.providers.fakes import API_KEY, WIRES, Server, chat, collect, make_spec, ndjson

WIRE = WIRES["ollama"]


def ndjson_stream(body: str) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "application/x-ndjson"}, content=body.encode()
    )


async def test_request_body() -> None:
    server = Server(ndjson_stream(WIRE.answer(["ok"]).decode()))
    request = ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content="Be brief."),
            ChatMessage(role=Role.USER, content="Hi"),
        ],
        memory="Ada",
        max_tokens=32,
        temperature=0.5,
        stop=["###"],
        seed=1,
    )
    spec = make_spec("ollama", context_size=8192)
    async with create_provider(spec, transport=server.transport) as provider:
        await collect(provider, request)
    assert str(server.requests[0].url) == "http://127.0.0.1:11434/api/chat"
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert server.json_bodies()[0] == {
        "model": "test-model",
        "stream": True,
        "options": {
            "num_ctx": 8192,
            "num_predict": 32,
            "temperature": 0.5,
            "stop": ["###"],
            "seed": 1,
        },
        "messages": [
            {"role": "system", "content": "Be brief.\n\nMemory:\nAda"},
            {"role": "user", "content": "Hi"},
        ],
    }


async def test_no_key_means_no_authorization_header() -> None:
    server = Server(ndjson_stream(WIRE.answer(["ok"]).decode()))
    async with create_provider(
        make_spec("ollama", api_key=None), transport=server.transport
    ) as provider:
        await collect(provider)
    assert "authorization" not in server.requests[0].headers


async def test_done_reason_length_and_token_counts() -> None:
    body = ndjson({"message": {"role": "assistant", "content": "a"}, "done": False}) + ndjson(
        {"done": True, "done_reason": "length", "prompt_eval_count": 3, "eval_count": 9}
    )
    server = Server(ndjson_stream(body))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), UsageEvent(Usage(3, 9)), FinishEvent("length", "length")]


async def test_done_without_counts_has_no_usage_event() -> None:
    server = Server(ndjson_stream(ndjson({"message": {"content": "a"}, "done": True})))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), FinishEvent("stop", None)]


async def test_unicode_line_separators_inside_content_do_not_split_lines() -> None:
    text = "a\x85b\u2028c\u2029d"
    body = ndjson({"message": {"content": text}, "done": False}) + ndjson({"done": True})
    server = Server(ndjson_stream(body))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events[0] == TextDelta(text)


async def test_crlf_and_blank_lines_and_missing_final_newline() -> None:
    body = '{"message": {"content": "a"}, "done": false}\r\n\r\n{"done": true}'
    server = Server(ndjson_stream(body))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        events = await collect(provider)
    assert events == [TextDelta("a"), FinishEvent("stop", None)]


@pytest.mark.parametrize(
    "line",
    [
        '["an", "array"]',
        '{"message": "text", "done": false}',
        '{"message": {"content": 3}, "done": false}',
        '{"message": {"thinking": {"x": 1}}, "done": false}',
    ],
)
async def test_wrong_shapes_are_protocol_errors(line: str) -> None:
    server = Server(ndjson_stream(line + "\n"))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        with pytest.raises(ProtocolError):
            await collect(provider)


async def test_malformed_line_number_is_named_but_not_its_text() -> None:
    body = ndjson({"message": {"content": "secret words"}, "done": False}) + "{secret words\n"
    server = Server(ndjson_stream(body))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        with pytest.raises(ProtocolError, match="line 2") as info:
            await collect(provider)
    assert "secret words" not in str(info.value)


async def test_context_error_text() -> None:
    server = Server(WIRE.context_too_long())
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        with pytest.raises(ContextTooLongError):
            await collect(provider)


async def test_missing_model_says_to_pull_it() -> None:
    server = Server(httpx.Response(404, json={"error": "model 'llama9' not found"}))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        with pytest.raises(ServerError, match="ollama pull") as info:
            await collect(provider)
    assert "model 'llama9' not found" in str(info.value)


async def test_list_models_details() -> None:
    server = Server(httpx.Response(200, json=WIRE.models_payload))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        (model,) = await provider.list_models()
    assert model.details == {
        "family": "llama",
        "parameter_size": "1.2B",
        "quantization_level": "Q8_0",
    }


async def test_chat_request_without_messages_still_streams() -> None:
    server = Server(ndjson_stream(WIRE.answer(["ok"]).decode()))
    async with create_provider(make_spec("ollama"), transport=server.transport) as provider:
        events = await collect(provider, chat(system=None))
    assert isinstance(events[-1], FinishEvent)

"""The ``providers`` package against a real llama.cpp ``llama-server`` on loopback.

The server serves the tiny random-weight model (``tests/peers/tiny_model.py``), which
streams printable words and stops only at ``max_tokens``; it runs with context shift, so a
request with a large ``max_tokens`` streams for seconds, long enough to act mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import string
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, suppress
from typing import Any, cast

import httpx
import pytest

from providers import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    ConnectionFailedError,
    ContextTooLongError,
    FinishEvent,
    ProviderSpec,
    Role,
    TextDelta,
    UsageEvent,
    create_provider,
)
from tests.peers.llama_server import CANCEL_LOG_PATTERN, LlamaServer, free_port

pytestmark = pytest.mark.llama_server

# Every character the tiny model can produce: its words, letters, punctuation and spaces.
PRINTABLE = frozenset(string.ascii_lowercase + " .,!?")

# Enough tokens to stream for seconds (the server shifts its context), so that a test
# acting after the first delta always acts mid-stream; ends early if cancellation fails.
LONG_ANSWER_TOKENS = 20_000

CANCEL_BUDGET_S = 0.2
SERVER_NOTICE_TIMEOUT_S = 5.0


def openai_spec(server: LlamaServer, **overrides: Any) -> ProviderSpec:
    fields: dict[str, Any] = {
        "name": "llama-test",
        "type": "openai",
        "base_url": f"{server.base_url}/v1",
        "model": server.model,
        "context_size": server.context_size,
        "timeout": 10.0,
        "max_retries": 0,
    }
    return ProviderSpec(**(fields | overrides))


def anthropic_spec(server: LlamaServer) -> ProviderSpec:
    return ProviderSpec(
        name="llama-anthropic-test",
        type="anthropic",
        base_url=server.base_url,
        model=server.model,
        context_size=server.context_size,
        api_key="not-checked-by-llama-server",
        timeout=10.0,
        max_retries=0,
    )


def ask(text: str, *, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content="You are a tiny test model."),
            ChatMessage(role=Role.USER, content=text),
        ],
        max_tokens=max_tokens,
        seed=7,
    )


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


def text_of(events: list[ChatEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def assert_complete_answer(events: list[ChatEvent], *, max_tokens: int) -> None:
    """Printable text, usage, and exactly one finish event, last, stopped by max_tokens."""
    text = text_of(events)
    assert text.strip(), events
    assert set(text) <= PRINTABLE, text
    finishes = [event for event in events if isinstance(event, FinishEvent)]
    assert len(finishes) == 1
    assert events[-1] is finishes[0]
    assert finishes[0].reason == "length"
    usages = [event.usage for event in events if isinstance(event, UsageEvent)]
    assert usages, "the server reports usage; the provider must pass it on"
    assert usages[-1].completion_tokens == max_tokens
    assert usages[-1].prompt_tokens is not None
    assert usages[-1].prompt_tokens > 0


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network transport, remembering each request's path and JSON body."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.url.path, body))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def first_text_delta(stream: AsyncIterator[ChatEvent]) -> TextDelta:
    async for event in stream:
        if isinstance(event, TextDelta):
            return event
    raise AssertionError("the stream ended without a text delta")


async def wait_until_idle(server: LlamaServer, within_s: float) -> bool:
    """True once ``/slots`` shows no slot processing, within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            slots = (await http.get("/slots")).json()
            if not any(slot["is_processing"] for slot in slots):
                return True
            await asyncio.sleep(0.02)
    return False


async def test_chat_streams_printable_text_usage_and_length_finish(
    llama_server: LlamaServer,
) -> None:
    async with create_provider(openai_spec(llama_server)) as provider:
        events = await collect(provider.stream_chat(ask("hello world", max_tokens=16)))

    assert_complete_answer(events, max_tokens=16)
    assert sum(isinstance(event, TextDelta) for event in events) > 1, "streamed, not one block"


async def test_template_mode_sends_the_rendered_prompt_to_completions(
    llama_server: LlamaServer,
) -> None:
    template = (
        "{{ system_prompt }}\n"
        "{% for message in history if message.role != 'system' %}"
        "{{ message.role }}: {{ message.content }}\n"
        "{% endfor %}"
        "user: {{ prompt }}\nassistant:"
    )
    transport = RecordingTransport()
    request = ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content="Be brief."),
            ChatMessage(role=Role.USER, content="hello"),
            ChatMessage(role=Role.ASSISTANT, content="world"),
            ChatMessage(role=Role.USER, content="the quick brown fox"),
        ],
        max_tokens=12,
    )
    spec = openai_spec(llama_server, template=template)
    async with create_provider(spec, transport=transport) as provider:
        events = await collect(provider.stream_chat(request))

    assert_complete_answer(events, max_tokens=12)
    [(path, body)] = transport.requests
    assert path == "/v1/completions"
    assert "messages" not in body
    assert body["prompt"] == (
        "Be brief.\nuser: hello\nassistant: world\nuser: the quick brown fox\nassistant:"
    )


async def test_list_models_includes_the_served_model(llama_server: LlamaServer) -> None:
    async with create_provider(openai_spec(llama_server)) as provider:
        models = await provider.list_models()

    assert llama_server.model in [model.id for model in models]


async def test_anthropic_messages_stream_text(llama_server: LlamaServer) -> None:
    async with create_provider(anthropic_spec(llama_server)) as provider:
        events = await collect(provider.stream_chat(ask("hello", max_tokens=10)))

    text = text_of(events)
    assert text.strip(), events
    assert set(text) <= PRINTABLE, text
    assert sum(isinstance(event, TextDelta) for event in events) > 1, "streamed, not one block"
    assert isinstance(events[-1], FinishEvent)
    assert events[-1].reason == "length"
    assert sum(isinstance(event, FinishEvent) for event in events) == 1
    usages = [event.usage for event in events if isinstance(event, UsageEvent)]
    assert usages
    assert usages[-1].completion_tokens == 10


async def test_closing_the_stream_mid_answer_returns_fast_and_the_server_stops(
    llama_server: LlamaServer,
) -> None:
    log_offset = llama_server.log_offset()
    async with create_provider(openai_spec(llama_server)) as provider:
        # The Provider contract promises that closing the iterator closes the HTTP stream.
        stream = cast(
            AsyncGenerator[ChatEvent, None],
            provider.stream_chat(ask("hello", max_tokens=LONG_ANSWER_TOKENS)),
        )
        async with aclosing(stream):
            await first_text_delta(stream)
            started = time.perf_counter()
            await stream.aclose()
            elapsed = time.perf_counter() - started

    assert elapsed < CANCEL_BUDGET_S, f"closing the stream took {elapsed * 1000:.0f} ms"
    seen = llama_server.wait_for_log(
        CANCEL_LOG_PATTERN, after=log_offset, timeout=SERVER_NOTICE_TIMEOUT_S
    )
    assert seen is not None, f"llama-server did not cancel the task:\n{llama_server.log_tail()}"
    assert await wait_until_idle(llama_server, SERVER_NOTICE_TIMEOUT_S)


async def test_cancelling_the_consuming_task_mid_answer_closes_the_stream(
    llama_server: LlamaServer,
) -> None:
    log_offset = llama_server.log_offset()
    first_delta = asyncio.Event()
    received: list[TextDelta] = []

    async def consume(spec: ProviderSpec) -> None:
        async with create_provider(spec) as provider:
            async for event in provider.stream_chat(ask("hello", max_tokens=LONG_ANSWER_TOKENS)):
                if isinstance(event, TextDelta):
                    received.append(event)
                    first_delta.set()

    task = asyncio.create_task(consume(openai_spec(llama_server)))
    await asyncio.wait_for(first_delta.wait(), timeout=10.0)
    started = time.perf_counter()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5.0)
    elapsed = time.perf_counter() - started

    assert task.cancelled()
    assert received
    assert elapsed < CANCEL_BUDGET_S, f"cancelling took {elapsed * 1000:.0f} ms"
    seen = llama_server.wait_for_log(
        CANCEL_LOG_PATTERN, after=log_offset, timeout=SERVER_NOTICE_TIMEOUT_S
    )
    assert seen is not None, f"llama-server did not cancel the task:\n{llama_server.log_tail()}"
    assert await wait_until_idle(llama_server, SERVER_NOTICE_TIMEOUT_S)


async def test_server_killed_mid_answer_raises_connection_failed_after_the_deltas(
    dedicated_llama_server: LlamaServer,
) -> None:
    received: list[TextDelta] = []
    async with create_provider(openai_spec(dedicated_llama_server)) as provider:
        with pytest.raises(ConnectionFailedError) as raised:
            async for event in provider.stream_chat(ask("hello", max_tokens=LONG_ANSWER_TOKENS)):
                if isinstance(event, TextDelta):
                    received.append(event)
                    if len(received) == 1:
                        dedicated_llama_server.kill()
                assert not isinstance(event, FinishEvent), "the answer cannot be complete"

    assert received, "the deltas before the kill are delivered"
    assert len(received) < LONG_ANSWER_TOKENS
    assert str(raised.value)  # a sentence a person can act on


async def test_no_server_listening_raises_connection_failed() -> None:
    spec = ProviderSpec(
        name="nobody-home",
        type="openai",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        model="tiny-llama",
        max_retries=0,
        timeout=5.0,
    )
    async with create_provider(spec) as provider:
        with pytest.raises(ConnectionFailedError):
            await collect(provider.stream_chat(ask("hello", max_tokens=4)))


@pytest.mark.parametrize("template", [None, "user: {{ prompt }}\nassistant:"])
async def test_prompt_over_the_context_size_raises_context_too_long(
    llama_server: LlamaServer, template: str | None
) -> None:
    # The spec claims a large context so that the server, not a client-side check,
    # refuses the prompt: llama-server answers 400 exceed_context_size_error.
    spec = openai_spec(llama_server, context_size=65_536, template=template)
    too_long = "hello world " * llama_server.context_size
    async with create_provider(spec) as provider:
        with pytest.raises(ContextTooLongError) as raised:
            await collect(provider.stream_chat(ask(too_long, max_tokens=4)))

    assert raised.value.status == 400
    assert str(raised.value)


async def test_anthropic_prompt_over_the_context_size_raises_context_too_long(
    llama_server: LlamaServer,
) -> None:
    too_long = "hello world " * llama_server.context_size
    async with create_provider(anthropic_spec(llama_server)) as provider:
        with pytest.raises(ContextTooLongError):
            await collect(provider.stream_chat(ask(too_long, max_tokens=4)))

"""``stream_idle_timeout``: a stream with no content for that long fails (issue 10, item 7).

Keep-alives (SSE comments, blank or empty NDJSON lines, Anthropic pings) reset the HTTP
read timeout, so a server that stopped mid-answer but keeps its connection open would be
waited on forever. Here the body is scripted (``httpx.MockTransport``) with short times;
``tests/integration/providers/test_stream_idle.py`` does the same over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from providers import (
    ProviderSpec,
    ProviderTimeoutError,
    TextDelta,
    create_provider,
)
from tests.unit.providers.fakes import (
    Server,
    Wire,
    chat,
    make_spec,
    ndjson,
    sse,
    stream_response,
)

IDLE_S = 0.3


def keepalive(wire: Wire, count: int) -> bytes:
    """The ``count``-th keep-alive a server of ``wire``'s format sends."""
    if wire.type == "openai":
        return b": keep-alive\n\n"
    if wire.type == "ollama":
        lines = [
            "\n",
            ndjson({"model": "m", "message": {"role": "assistant", "content": ""}, "done": False}),
            ndjson({"model": "m", "done": False}),
            ndjson({"model": "m", "message": {"role": "assistant", "thinking": ""}, "done": False}),
        ]
        return lines[count % len(lines)].encode()
    return sse({"type": "ping"}, "ping").encode()


class StallingStream(httpx.AsyncByteStream):
    """``head``, then ``wire``'s keep-alives every ``interval`` s for ever; records ``aclose``."""

    def __init__(self, wire: Wire, head: bytes, interval: float = 0.05) -> None:
        self.wire = wire
        self.head = head
        self.interval = interval
        self.keepalives = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        while True:
            await asyncio.sleep(self.interval)
            yield keepalive(self.wire, self.keepalives)
            self.keepalives += 1

    async def aclose(self) -> None:
        self.closed = True


def head_of(wire: Wire, texts: list[str]) -> bytes:
    """The start of an answer carrying ``texts``, without its end."""
    return wire.answer(texts, complete=False)


def spec_for(wire: Wire, **fields: Any) -> ProviderSpec:
    return make_spec(wire.type, timeout=5.0, stream_idle_timeout=IDLE_S, **fields)


async def test_keepalives_after_deltas_end_in_a_timeout_with_the_deltas_delivered(
    wire: Wire,
) -> None:
    stream = StallingStream(wire, head_of(wire, ["Hel", "lo"]))
    server = Server(stream_response(wire, stream))  # type: ignore[arg-type]
    texts: list[str] = []
    async with create_provider(spec_for(wire), transport=server.transport) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError) as caught:
            async for event in provider.stream_chat(chat()):
                if isinstance(event, TextDelta):
                    texts.append(event.text)
        elapsed = time.monotonic() - started
    assert texts == ["Hel", "lo"]
    assert IDLE_S <= elapsed < IDLE_S + 1.5
    assert stream.keepalives >= 3  # they kept coming and did not count
    assert stream.closed  # the HTTP response is closed
    message = str(caught.value)
    assert message.startswith(f"test-{wire.type}: ")
    assert "stopped sending the answer" in message and "mid-answer" in message
    assert f"{IDLE_S:g} s" in message and "stream_idle_timeout" in message


async def test_keepalives_before_any_content_also_end(wire: Wire) -> None:
    stream = StallingStream(wire, head_of(wire, []))
    server = Server(stream_response(wire, stream))  # type: ignore[arg-type]
    async with create_provider(spec_for(wire), transport=server.transport) as provider:
        with pytest.raises(ProviderTimeoutError, match="before the first words"):
            async for _event in provider.stream_chat(chat()):
                pass
    assert stream.closed


class SlowStream(httpx.AsyncByteStream):
    """A whole answer, its chunks ``interval`` s apart."""

    def __init__(self, chunks: list[bytes], interval: float) -> None:
        self.chunks = chunks
        self.interval = interval

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.interval)
            yield chunk


def openai_chunks(texts: list[str]) -> list[bytes]:
    chunks = [sse({"choices": [{"index": 0, "delta": {"content": t}}]}).encode() for t in texts]
    chunks.append(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode())
    chunks.append(b"data: [DONE]\n\n")
    return chunks


async def test_content_arriving_slower_than_keepalives_but_within_the_idle_time_is_fine() -> None:
    from tests.unit.providers.fakes import WIRES

    wire = WIRES["openai"]
    # Deltas 0.2 s apart, each interleaved with comments: never 0.3 s without content.
    chunks: list[bytes] = []
    for piece in openai_chunks(["a", "b", "c", "d", "e"]):
        chunks += [b": keep-alive\n\n", piece]
    server = Server(stream_response(wire, SlowStream(chunks, 0.1)))  # type: ignore[arg-type]
    async with create_provider(spec_for(wire), transport=server.transport) as provider:
        texts = [e.text async for e in provider.stream_chat(chat()) if isinstance(e, TextDelta)]
    assert "".join(texts) == "abcde"


async def test_the_callers_own_pauses_do_not_count(wire: Wire) -> None:
    """Only waiting for the server counts: a caller busy longer than the idle time between
    events (saving, drawing) does not make the stream fail."""
    server = Server(stream_response(wire, wire.answer(["one ", "two ", "three"])))
    texts: list[str] = []
    async with create_provider(spec_for(wire), transport=server.transport) as provider:
        async for event in provider.stream_chat(chat()):
            if isinstance(event, TextDelta):
                texts.append(event.text)
            await asyncio.sleep(IDLE_S * 1.5)
    assert "".join(texts) == "one two three"


async def test_stop_while_waiting_is_a_cancellation_not_a_timeout(wire: Wire) -> None:
    stream = StallingStream(wire, head_of(wire, ["Hel"]))
    server = Server(stream_response(wire, stream))  # type: ignore[arg-type]
    first = asyncio.Event()

    async def consume() -> None:
        async for _event in provider.stream_chat(chat()):
            first.set()

    async with create_provider(
        make_spec(wire.type, stream_idle_timeout=30.0), transport=server.transport
    ) as provider:
        task = asyncio.create_task(consume())
        await first.wait()
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stream.closed


def test_the_default_is_60_seconds_and_it_must_be_positive() -> None:
    assert make_spec("openai").stream_idle_timeout == 60.0
    with pytest.raises(ValueError, match="greater than 0"):
        make_spec("openai", stream_idle_timeout=0)


def test_ndjson_keepalives_are_what_ollama_sends() -> None:
    """The scripted Ollama keep-alives parse as ``done: false`` lines without content."""
    from tests.unit.providers.fakes import WIRES

    lines = [keepalive(WIRES["ollama"], n).decode() for n in range(4)]
    parsed = [json.loads(line) for line in lines if line.strip()]
    assert all(line["done"] is False for line in parsed)

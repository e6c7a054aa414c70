"""A stream that only sends keep-alives ends (issue 10, item 7), against a real HTTP server.

The server (``stalling_server``) sends a few deltas, then only keep-alives (SSE comments,
blank and empty NDJSON lines, Anthropic pings) every 0.2 s, so the HTTP read timeout never
fires. With ``stream_idle_timeout`` at 1 s, the stream must end with
``ProviderTimeoutError`` after the deltas, within a few seconds, and close the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from providers import (
    ChatMessage,
    ChatRequest,
    ProviderSpec,
    ProviderTimeoutError,
    Role,
    TextDelta,
    create_provider,
)
from tests.integration.providers.stalling_server import DELTAS, PARTIAL_ANSWER, StallingServer

IDLE_S = 1.0
#: The stream must end this soon after it starts stalling (idle time plus slack).
ENDS_WITHIN_S = IDLE_S + 2.0

TEMPLATE = "{{ prompt }}"

CASES = {
    "openai": {},
    "openai-template": {"template": TEMPLATE},
    "ollama": {},
    "ollama-template": {"template": TEMPLATE},
    "anthropic": {"api_key": "test-key"},
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[StallingServer, ProviderSpec]]:
    wire = request.param.removesuffix("-template")
    with StallingServer(wire) as server:
        fields: dict[str, Any] = {
            "name": f"stalling-{request.param}",
            "type": wire,
            "base_url": server.base_url,
            "model": "m",
            "timeout": 10.0,
            "stream_idle_timeout": IDLE_S,
            "max_retries": 0,
        }
        yield server, ProviderSpec(**(fields | CASES[request.param]))


def ask() -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role=Role.USER, content="tell me about fish")])


async def test_keepalives_alone_end_the_stream_with_a_timeout(
    case: tuple[StallingServer, ProviderSpec],
) -> None:
    server, spec = case
    texts: list[str] = []
    async with create_provider(spec) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError) as caught:
            async for event in provider.stream_chat(ask()):
                if isinstance(event, TextDelta):
                    texts.append(event.text)
        ended = time.monotonic()
    assert texts == list(DELTAS) and "".join(texts) == PARTIAL_ANSWER
    assert ended - started < ENDS_WITHIN_S
    assert server.keepalives_sent >= 2  # the read timeout was reset, yet the stream ended
    message = str(caught.value)
    assert "stopped sending the answer" in message
    assert "stream_idle_timeout" in message
    assert caught.value.provider == spec.name
    # The connection is closed: the server notices on its next keep-alive.
    assert await asyncio.to_thread(server.disconnected.wait, 3)


async def test_content_resets_the_idle_clock() -> None:
    """Keep-alives between deltas are fine as long as content keeps coming."""
    with StallingServer("openai", keepalive_interval=0.3) as server:
        spec = ProviderSpec(
            name="slow",
            type="openai",
            base_url=server.base_url,
            model="m",
            stream_idle_timeout=IDLE_S,
            max_retries=0,
        )
        async with create_provider(spec) as provider:
            with pytest.raises(ProviderTimeoutError):
                async for _event in provider.stream_chat(ask()):
                    pass
        # Three keep-alives 0.3 s apart (0.9 s) did not end it; the idle timeout did.
        assert server.keepalives_sent >= 3

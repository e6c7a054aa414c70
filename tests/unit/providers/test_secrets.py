"""API keys stay out of URLs, error messages, reprs and logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from providers import ProviderError, create_provider
from tests.unit.providers.fakes import API_KEY, ScriptedStream, Server, Wire, collect, make_spec
from tests.unit.providers.fakes import stream_response as respond


def failing_answers(wire: Wire) -> list[object]:
    """A spread of failures, several of which echo the key back."""
    return [
        httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {API_KEY}"}}),
        httpx.Response(403, text=f"key {API_KEY} may not use this model"),
        httpx.Response(429, headers={"retry-after": "999"}, json={"error": API_KEY}),
        httpx.Response(500, json={"error": {"message": f"crash handling {API_KEY}"}}),
        httpx.ConnectError(f"refused for {API_KEY}"),
        httpx.ReadTimeout("timed out"),
        respond(wire, ScriptedStream([b"data: {oops\n\n{oops\n"])),
        respond(wire, ScriptedStream([], then=httpx.ReadError(f"reset {API_KEY}"))),
    ]


async def test_key_is_never_in_errors_reprs_or_logs(
    wire: Wire, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = make_spec(wire.type, max_retries=0)
    assert API_KEY not in repr(spec)
    for answer in failing_answers(wire):
        server = Server(answer)  # type: ignore[arg-type]
        async with create_provider(spec, transport=server.transport) as provider:
            assert API_KEY not in repr(provider)
            with pytest.raises(ProviderError) as info:
                await collect(provider)
        error = info.value
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
        assert API_KEY not in error.message
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(record.args) for record in caplog.records)


async def test_secret_custom_headers_are_redacted_too(wire: Wire) -> None:
    token = "proxy-token-abcdef123456"
    spec = make_spec(wire.type, headers={"X-Proxy-Authorization": token})
    server = Server(httpx.Response(500, text=f"bad proxy token {token}"))
    async with create_provider(spec, transport=server.transport) as provider:
        assert token not in repr(provider)
        with pytest.raises(ProviderError) as info:
            await collect(provider)
    assert token not in str(info.value)
    assert "***" in str(info.value)


async def test_user_info_in_base_url_is_not_shown(wire: Wire) -> None:
    spec = make_spec(wire.type, base_url="http://user:hunter2pass@127.0.0.1:8080/v1", max_retries=0)
    server = Server(httpx.ConnectError("refused"))
    async with create_provider(spec, transport=server.transport) as provider:
        assert "hunter2pass" not in repr(provider)
        with pytest.raises(ProviderError) as info:
            await collect(provider)
    assert "hunter2pass" not in str(info.value)

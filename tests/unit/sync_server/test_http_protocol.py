"""The server's HTTP protocol writes an answer once (``sync_server/http_protocol.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sync_server import cli
from sync_server.http_protocol import (
    FLUSH_BYTES,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings

REQUEST = b"GET /v1/sync/changes HTTP/1.1\r\nHost: sync.example\r\n\r\n"


class _Transport(asyncio.Transport):
    """Records what is written and whether it was closed or aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.paused = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _request(app: Any, protocol_class: type[HttpToolsProtocol]) -> tuple[Any, _Transport]:
    """One request given to a real uvicorn protocol: the protocol and its transport."""
    config = Config(app=app, log_config=None, access_log=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    return protocol, transport


async def _answer(app: Any, protocol_class: type[HttpToolsProtocol]) -> _Transport:
    """The transport once the protocol answered the request."""
    protocol, transport = _request(app, protocol_class)
    for _ in range(20):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


async def _one_answer(scope: Scope, receive: Receive, send: Send) -> None:
    """As the fast lane and Starlette answer: the head, then the whole body."""
    body = b'{"changes":[]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"14")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_an_answer_leaves_in_one_write() -> None:
    plain = await _answer(_one_answer, HttpToolsProtocol)
    joined = await _answer(_one_answer, CoalescingHttpToolsProtocol)
    assert len(plain.writes) == 2  # what uvicorn does on its own
    assert len(joined.writes) == 1
    assert joined.writes[0] == b"".join(plain.writes)
    assert joined.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert joined.writes[0].endswith(b'\r\n\r\n{"changes":[]}')


async def test_a_streamed_answer_leaves_as_it_is_produced() -> None:
    """Nothing waits past the event loop's turn: a chunk sent before the application
    waits is on the real transport before the wait ends."""
    seen: list[int] = []
    transports: list[_Transport] = []

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.01)
        seen.append(len(transports[0].writes))
        await send({"type": "http.response.body", "body": b"second"})

    class Recording(CoalescingHttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            assert isinstance(transport, _Transport)
            transports.append(transport)
            super().connection_made(transport)

    _, transport = _request(streaming, Recording)
    await asyncio.sleep(0.05)
    assert seen == [1]  # head and first chunk, in one write, before the sleep ended
    assert b"".join(transport.writes).endswith(b"6\r\nsecond\r\n0\r\n\r\n")


async def test_held_bytes_are_written_before_close_and_dropped_on_abort() -> None:
    loop = asyncio.get_running_loop()
    real = _Transport()
    transport = CoalescingTransport(real, loop)
    transport.write(b"a")
    transport.writelines([b"b", bytearray(b"c"), memoryview(b"d")])
    transport.write(b"")
    assert real.writes == [] and transport.get_write_buffer_size() == 4 + 7
    transport.close()
    assert real.writes == [b"abcd"] and real.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert real.writes == [b"abcd"]

    other = _Transport()
    aborted = CoalescingTransport(other, loop)
    aborted.write(b"never")
    aborted.abort()
    await asyncio.sleep(0)
    assert other.writes == [] and other.aborted


async def test_a_large_write_is_not_held() -> None:
    real = _Transport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"h" * 100)
    transport.write(b"x" * FLUSH_BYTES)
    assert real.writes == [b"h" * 100 + b"x" * FLUSH_BYTES]


async def test_the_rest_is_the_real_transports() -> None:
    real = _Transport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    assert transport.get_extra_info("peername") == ("127.0.0.1", 50000)
    transport.pause_reading()
    assert real.paused
    transport.resume_reading()
    assert not real.paused
    assert not transport.is_closing()


def test_serve_runs_uvicorn_with_the_coalescing_protocol(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: dict[str, Any] = {}

    def run(app: Any, **options: Any) -> None:
        ran.update(options)

    monkeypatch.setattr("uvicorn.run", run)
    values: dict[str, Any] = {name.lower(): value for name, value in generate_secrets().items()}
    settings = Settings(**values, data_dir=tmp_path)
    assert cli._serve(settings, "127.0.0.1", 0) == 0
    assert ran["http"] is CoalescingHttpToolsProtocol

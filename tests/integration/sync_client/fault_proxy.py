"""A small asyncio TCP proxy on loopback that breaks HTTP exchanges on purpose.

``FaultProxy(upstream_port)`` listens on ``127.0.0.1`` and a free port and copies bytes
both ways to ``127.0.0.1:upstream_port``. It watches the client's bytes for request lines
(``b"POST /v1/sync/push"``, ``b"GET /v1/sync/changes"`` …): :meth:`FaultProxy.seen` counts
them and :meth:`FaultProxy.wait_seen` waits for the n-th one. :meth:`FaultProxy.arm` makes
the next requests whose request line contains a pattern fail in one of three ways, after
the request went upstream (so the server may well have done the work):

* ``cut``: the first half of the answer's first read reaches the client (in the headers
  or the body), then both sides are closed (a connection dropped mid-response);
* ``stall``: the answer is held back; the connection stays open, silent, until the client
  gives up (its timeout) or the proxy heals or stops;
* ``reset``: when the answer starts, the client's side is closed with an RST
  (``SO_LINGER`` 0), the upstream side is closed.

:meth:`FaultProxy.heal` disarms every fault and releases nothing held (stalled
connections are closed: the client has timed out on them anyway). The proxy is bounded:
at most ``max_connections`` at once (more are refused by closing them), a per-read limit,
and :meth:`FaultProxy.stop` (or leaving ``async with``) closes the listener and every
connection. It binds loopback only and connects to loopback only. It reads no payload
beyond the request lines it matches and logs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

__all__ = ["FaultMode", "FaultProxy"]

FaultMode = Literal["cut", "stall", "reset"]

_LOOPBACK = "127.0.0.1"
_CHUNK = 64 * 1024
_CUT_BYTES = 12  # at least "HTTP/1.1 200"
_TAIL = 64  # bytes kept across reads so a request line split between two reads is seen


@dataclass
class _Fault:
    pattern: bytes
    mode: FaultMode
    remaining: int | None  # None: until heal()


@dataclass(eq=False)
class _Connection:
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter | None = None
    fault: FaultMode | None = None
    held: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """A loopback TCP proxy to ``127.0.0.1:upstream_port`` with armed faults."""

    def __init__(self, upstream_port: int, *, max_connections: int = 64) -> None:
        self.upstream_port = upstream_port
        self.max_connections = max_connections
        self.port = 0
        self.faults_done: Counter[FaultMode] = Counter()
        #: Answers ``stall`` is holding back or held (the server did the work).
        self.answers_held = 0
        self._faults: list[_Fault] = []
        self._watched: set[bytes] = set()
        self._seen: Counter[bytes] = Counter()
        self._changed = asyncio.Condition()
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{_LOOPBACK}:{self.port}"

    # ----------------------------------------------------------------- control

    def watch(self, *patterns: bytes) -> None:
        """Count requests whose request line contains one of ``patterns``."""
        self._watched.update(patterns)

    def seen(self, pattern: bytes) -> int:
        """How many requests matching ``pattern`` (watched or armed) went through."""
        return self._seen[pattern]

    async def wait_seen(self, pattern: bytes, count: int, seconds: float) -> None:
        """Until ``count`` requests matched ``pattern``; TimeoutError after ``seconds``."""
        self.watch(pattern)
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: self._seen[pattern] >= count)

    def arm(self, pattern: bytes, mode: FaultMode, times: int | None = None) -> None:
        """Break the next ``times`` requests matching ``pattern`` (all, until :meth:`heal`,
        when ``times`` is None)."""
        self.watch(pattern)
        self._faults.append(_Fault(pattern, mode, times))

    def heal(self) -> None:
        """No more faults; connections held by ``stall`` are closed."""
        self._faults.clear()
        for connection in list(self._connections):
            if connection.fault == "stall":
                self._close(connection)

    def retarget(self, upstream_port: int) -> None:
        """Send new connections to another upstream port (a restarted server)."""
        self.upstream_port = upstream_port

    def drop_all(self) -> None:
        """Close every open connection (a restarted server's clients see them end)."""
        for connection in list(self._connections):
            self._close(connection)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, _LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._faults.clear()
        tasks = [task for c in self._connections for task in c.tasks]
        for connection in list(self._connections):
            self._close(connection)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------- plumbing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or len(self._connections) >= self.max_connections:
            writer.close()
            return
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(_LOOPBACK, self.upstream_port), timeout=5
            )
        except (OSError, TimeoutError):
            # Upstream down: the client sees the connection end, like a refused one.
            self._close(connection)
            return
        connection.upstream_writer = up_writer
        downstream = asyncio.ensure_future(self._downstream(connection, up_reader))
        connection.tasks.append(downstream)
        try:
            await self._upstream(connection, reader)
            if connection.fault != "stall":  # a half-closed client may still read
                await asyncio.wait({downstream}, timeout=10)
        finally:
            self._close(connection)
            downstream.cancel()
            await asyncio.gather(downstream, return_exceptions=True)

    async def _upstream(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        """Client to server: match request lines, arm the connection's fault."""
        tail = b""
        up = connection.upstream_writer
        assert up is not None
        try:
            while data := await reader.read(_CHUNK):
                await self._match(connection, tail, data)
                tail = data[-_TAIL:]
                up.write(data)
                await up.drain()
        except (ConnectionError, OSError):
            return
        with contextlib.suppress(OSError):
            if up.can_write_eof():
                up.write_eof()

    async def _match(self, connection: _Connection, tail: bytes, data: bytes) -> None:
        window = tail + data
        matched = False
        for pattern in self._watched:
            # Count occurrences that end in the new bytes (not those already counted).
            start = 0
            while (index := window.find(pattern, start)) >= 0:
                start = index + 1
                if index + len(pattern) > len(tail):
                    self._seen[pattern] += 1
                    matched = True
                    self._take_fault(connection, pattern)
        if matched:
            async with self._changed:
                self._changed.notify_all()

    def _take_fault(self, connection: _Connection, pattern: bytes) -> None:
        for fault in self._faults:
            if fault.pattern != pattern:
                continue
            connection.fault = fault.mode
            self.faults_done[fault.mode] += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return

    async def _downstream(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        """Server to client: forward, or break the answer of a faulted request."""
        client = connection.client_writer
        try:
            while data := await reader.read(_CHUNK):
                mode = connection.fault
                if mode == "stall":
                    if not connection.held:
                        connection.held = True
                        self.answers_held += 1
                    continue  # held back: the client hears nothing more
                if mode == "cut":
                    client.write(data[: max(_CUT_BYTES, len(data) // 2)])
                    with contextlib.suppress(ConnectionError, OSError):
                        await client.drain()
                    self._close(connection)
                    return
                if mode == "reset":
                    self._reset(connection)
                    return
                client.write(data)
                await client.drain()
        except (ConnectionError, OSError):
            pass
        if connection.fault != "stall":
            self._close(connection)

    def _reset(self, connection: _Connection) -> None:
        sock = connection.client_writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport = connection.client_writer.transport
        transport.abort()  # with linger 0: an RST, not a FIN
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        for writer in (connection.client_writer, connection.upstream_writer):
            if writer is not None and not writer.is_closing():
                writer.close()

"""uvicorn's httptools protocol, writing an answer in one system call.

uvicorn writes an answer's status line and headers when the application sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send``
system calls, so two TCP segments, for an answer that is ready at once (every answer of
this server's is one ``Response``). On loopback at 100 devices those were a measurable
share of the server's CPU per request (docs/server.md, "Seventh pass"), and the client
woke for each segment.

:class:`CoalescingHttpToolsProtocol` gives each connection a transport that keeps what is
written during one turn of the event loop and hands it to the real transport at the end of
that turn (one ``call_soon``) or sooner: when the buffer passes :data:`FLUSH_BYTES`, and
before the transport is closed, paused or asked for its buffer size. The order of bytes
never changes and nothing waits for more than the current turn, so a streamed answer's
chunks still leave as they are produced.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Above this many held bytes the buffer is written at once (a large answer gains nothing
#: from waiting, and the copy would cost more than the call saves).
FLUSH_BYTES = 64 * 1024


class CoalescingTransport(asyncio.Transport):
    """A transport that joins the writes of one event-loop turn (see the module)."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold ``data`` until the end of this turn of the event loop."""
        if not data:
            return
        self._held.append(bytes(data))
        if sum(map(len, self._held)) >= FLUSH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_scheduled)

    def writelines(self, list_of_data: Any) -> None:
        """Hold each piece (as :meth:`write`)."""
        for data in list_of_data:
            self.write(data)

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand what is held to the real transport now (one write)."""
        held = self._held
        if not held:
            return
        self._held = []
        self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        """Write what is held, then close (the real transport sends its buffer first)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is held and abort the connection."""
        self._held = []
        self._transport.abort()

    def write_eof(self) -> None:
        """Write what is held, then half-close."""
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """As the real transport."""
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        """Held bytes plus the real transport's buffer."""
        return sum(map(len, self._held)) + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """As the real transport."""
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """As the real transport."""
        self._transport.set_write_buffer_limits(high, low)

    def is_closing(self) -> bool:
        """As the real transport."""
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """As the real transport."""
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        """As the real transport."""
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        """As the real transport."""
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        """As the real transport."""
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Write what is held, then hand the connection to ``protocol``."""
        self.flush()
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """As the real transport."""
        return self._transport.get_protocol()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose answers leave in one write (see the module)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Give the connection the coalescing transport."""
        super().connection_made(CoalescingTransport(transport, self.loop))

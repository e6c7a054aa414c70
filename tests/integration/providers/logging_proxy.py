"""A real HTTP proxy on loopback that records every byte a client sends it.

It forwards plain-HTTP requests in absolute form (``POST http://host:port/path``) to
their server, one request per connection, and tunnels ``CONNECT`` blindly, so a client
that uses it gets its answers: a leak through it looks exactly like a leak through a
corporate proxy. Tests assert on ``received`` (every byte, request heads and bodies)
and ``targets`` (the request lines' targets).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from typing import Self
from urllib.parse import urlsplit

_HEAD_LIMIT = 64 * 1024


class LoggingProxy:
    """``with LoggingProxy() as proxy:`` listens on ``proxy.url`` until the block ends."""

    def __init__(self, *, hosts: dict[str, str] | None = None) -> None:
        """``hosts`` maps host names to the addresses the proxy connects to instead."""
        self.hosts = dict(hosts or {})
        self.targets: list[str] = []
        self._received = bytearray()
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def received(self) -> bytes:
        """Every byte clients sent, in order of arrival."""
        with self._lock:
            return bytes(self._received)

    def _record(self, data: bytes) -> None:
        with self._lock:
            self._received += data

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
            chunk = client.recv(65536)
            if not chunk:
                self._record(head)
                return
            head += chunk
        self._record(head)
        header_block, _, rest = head.partition(b"\r\n\r\n")
        request_line, *header_lines = header_block.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        with self._lock:
            self.targets.append(target)
        try:
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                host = host.strip("[]")
                upstream = socket.create_connection(
                    (self.hosts.get(host, host), int(port)), timeout=10
                )
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:
                parts = urlsplit(target)
                host = parts.hostname or ""
                upstream = socket.create_connection(
                    (self.hosts.get(host, host), parts.port or 80), timeout=10
                )
                path = parts.path or "/"
                if parts.query:
                    path += f"?{parts.query}"
                kept = [
                    line
                    for line in header_lines
                    if not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
                ]
                new_head = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"])
                upstream.sendall(new_head.encode("latin-1") + b"\r\n\r\n" + rest)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream.settimeout(None)
        with upstream:
            pump = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            pump.start()
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server: the rest of the request (its body), recorded as it passes."""
        try:
            while data := client.recv(65536):
                self._record(data)
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

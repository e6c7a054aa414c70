"""A real HTTP server on loopback that starts an answer, then sends only keep-alives.

It behaves like an LLM server stopped mid-answer that keeps the connection open: a few
content deltas in the wire format asked for, then, until the client goes away, a
keep-alive every ``keepalive_interval`` seconds. Each keep-alive resets an HTTP read
timeout, so only an idle timeout on content ends such a stream.

Keep-alives per format (what real servers and proxies send):

* ``openai``: SSE comments (``: keep-alive``), as llama-server, vLLM behind proxies and
  OpenRouter (``: OPENROUTER PROCESSING``) send;
* ``ollama``: blank lines and ``{"done": false}`` lines with empty content;
* ``anthropic``: ``ping`` events.

Used by the provider integration tests and the ``hushchat chat`` end-to-end tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

#: The content the server sends before it stalls, one delta each.
DELTAS = ("Zebra", "fish ", "are ")
PARTIAL_ANSWER = "".join(DELTAS)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _ndjson(data: Any) -> bytes:
    return (json.dumps(data) + "\n").encode()


def _openai_start(path: str) -> list[bytes]:
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return [_sse({"choices": [{"index": 0, "text": text}]}) for text in DELTAS]
    chunks = [_sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    chunks += [_sse({"choices": [{"index": 0, "delta": {"content": text}}]}) for text in DELTAS]
    return chunks


def _ollama_start(path: str) -> list[bytes]:
    if path.endswith("/api/generate"):
        return [_ndjson({"model": "m", "response": text, "done": False}) for text in DELTAS]
    return [
        _ndjson({"model": "m", "message": {"role": "assistant", "content": text}, "done": False})
        for text in DELTAS
    ]


def _anthropic_start(path: str) -> list[bytes]:
    message: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant"}
    message["content"] = []
    message["usage"] = {"input_tokens": 7, "output_tokens": 1}
    chunks = [_sse({"type": "message_start", "message": message}, "message_start")]
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    chunks.append(_sse(block, "content_block_start"))
    for text in DELTAS:
        delta = {"type": "content_block_delta", "index": 0}
        delta["delta"] = {"type": "text_delta", "text": text}
        chunks.append(_sse(delta, "content_block_delta"))
    return chunks


_OLLAMA_KEEPALIVES = (
    b"\n",
    _ndjson({"model": "m", "message": {"role": "assistant", "content": ""}, "done": False}),
    _ndjson({"model": "m", "done": False}),
)

WIRE_FORMATS: dict[str, tuple[str, Any]] = {
    # type: (content type, start of the answer)
    "openai": ("text/event-stream", _openai_start),
    "ollama": ("application/x-ndjson", _ollama_start),
    "anthropic": ("text/event-stream", _anthropic_start),
}


def _keepalives(wire: str) -> Iterator[bytes]:
    count = 0
    while True:
        if wire == "openai":
            yield b": keep-alive\n\n"
        elif wire == "ollama":
            yield _OLLAMA_KEEPALIVES[count % len(_OLLAMA_KEEPALIVES)]
        else:
            yield _sse({"type": "ping"}, "ping")
        count += 1


class StallingServer:
    """``with StallingServer("openai") as server:`` serves on ``server.base_url``.

    Every POST gets the start of an answer, then keep-alives until the client
    disconnects or ``max_seconds`` pass. ``disconnected`` is set when a client goes away
    (noticed at the next keep-alive); ``disconnected_at`` has the times.
    """

    def __init__(
        self, wire: str, *, keepalive_interval: float = 0.2, max_seconds: float = 60.0
    ) -> None:
        self.wire = wire
        self.keepalive_interval = keepalive_interval
        self.max_seconds = max_seconds
        self.requests: list[str] = []
        self.keepalives_sent = 0
        self.disconnected_at: list[float] = []
        self.disconnected = threading.Event()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` a provider entry of this wire format uses."""
        return f"{self.root_url}/v1" if self.wire == "openai" else self.root_url

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests look at ``server.requests``."""

            def do_GET(self) -> None:
                body = b'{"data": [], "models": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append(self.path)
                content_type, start = WIRE_FORMATS[server.wire]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for chunk in start(self.path):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    deadline = time.monotonic() + server.max_seconds
                    for chunk in _keepalives(server.wire):
                        if server._stop.wait(server.keepalive_interval):
                            return
                        if time.monotonic() > deadline:
                            return
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        server.keepalives_sent += 1
                except OSError:  # the client went away: what the tests wait for
                    server.disconnected_at.append(time.monotonic())
                    server.disconnected.set()

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

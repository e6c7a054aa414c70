"""``hushchat-sync serve`` over a real socket: a request announcing a large body with a
bad token is answered (401, ``Connection: close``) without the server waiting for the
body, and the connection is closed instead of being drained."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.e2e.sync_server.test_cli import Server, _base_env, _cli


def _keyed_env(tmp_path: Path) -> dict[str, str]:
    env = _base_env(tmp_path)
    generated = _cli("gen-keys", env=env)
    assert generated.returncode == 0, generated.stderr
    env.update(line.split("=", 1) for line in generated.stdout.strip().splitlines())
    return env


def _exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send ``request``, read until the server closes; (answer, closed by the server)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return answer, False
            if not chunk:
                return answer, True
            answer += chunk
    return answer, False


def test_a_huge_body_with_a_bad_token_is_refused_unread(tmp_path: Path) -> None:
    server = Server(_keyed_env(tmp_path), tmp_path / "server.log")
    try:
        announced = 15 << 20  # under MAX_REQUEST_BYTES, so only the token is wrong
        head = (
            "POST /v1/sync/push HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Authorization: Bearer not-a-token\r\n"
            "X-Hushchat-Device: device-0001\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {announced}\r\n\r\n"
        ).encode()
        started = time.monotonic()
        answer, closed = _exchange(server.port, head + b'{"records": [], "padding": "xxxx')
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"connection: close" in answer.lower()
        # No DPoP proof came with the token: the DPoP challenge (RFC 9449 §7.1).
        assert b"www-authenticate: dpop" in answer.lower()
        assert closed, "the server kept the connection open to read the body"
        assert time.monotonic() - started < 5
        # Without any credentials at all: the same.
        bare = head.replace(b"Authorization: Bearer not-a-token\r\n", b"")
        answer, closed = _exchange(server.port, bare)
        assert answer.startswith(b"HTTP/1.1 401") and closed
    finally:
        server.stop()

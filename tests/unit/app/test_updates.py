"""The opt-in update check (app/updates.py) against a real HTTP server on loopback.

The server answers like GitHub's latest-release API (or wrongly, on purpose); what is
checked: a newer release is reported with its page, the same or an older one is not,
every kind of bad answer is an :class:`UpdateCheckError` that says what happened, and the
request carries nothing but the version in its ``User-Agent``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.config import Config, UpdateSettings
from app.updates import MAX_ANSWER_BYTES, Release, UpdateCheckError, newer_release, parse_version


class _ReleaseServer:
    """A loopback server whose next answers the test sets; records the requests' headers."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b""
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/releases/latest"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, document: object, status: int = 200) -> None:
        self.status = status
        self.body = document if isinstance(document, bytes) else json.dumps(document).encode()


@pytest.fixture
def releases() -> Iterator[_ReleaseServer]:
    server = _ReleaseServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def _release(tag: str, page: str = "https://example.org/releases/tag/x") -> dict[str, object]:
    return {"tag_name": tag, "html_url": page, "name": tag, "body": "notes", "assets": []}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.2.3", (1, 2, 3)),
        ("v0.10.0", (0, 10, 0)),
        (" v2.0.1 ", (2, 0, 1)),
        ("v2.0.0-rc1", None),
        ("2.0", None),
        ("latest", None),
    ],
)
def test_versions_are_three_numbers(text: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == parsed


async def test_a_newer_release_is_reported_with_its_page(releases: _ReleaseServer) -> None:
    page = "https://github.com/hushchat/hushchat/releases/tag/v0.10.0"
    releases.answer(_release("v0.10.0", page))
    assert await newer_release(releases.url, "0.9.12") == Release("0.10.0", page)
    sent = releases.headers[-1]
    assert sent["user-agent"] == "Hushchat/0.9.12 (update check)"
    # Nothing that identifies the user or the profile: no cookie, no auth, no query.
    assert not {"cookie", "authorization"} & set(sent)


@pytest.mark.parametrize("running", ["0.10.0", "0.10.1", "1.0.0"])
async def test_the_same_or_an_older_release_is_not_reported(
    releases: _ReleaseServer, running: str
) -> None:
    releases.answer(_release("v0.10.0"))
    assert await newer_release(releases.url, running) is None


@pytest.mark.parametrize(
    ("status", "document", "says"),
    [
        (404, {"message": "Not Found"}, "HTTP 404"),
        (200, b"<html>rate limited</html>", "not JSON"),
        (200, ["v1.0.0"], "not a release"),
        (200, {"name": "v9.0.0"}, "no tag_name"),
        (200, _release("nightly"), "no version number"),
        (200, _release("v9.0.0", "http://example.org/plain"), "https://"),
        (200, b"[" * (MAX_ANSWER_BYTES + 10), "too large"),
    ],
)
async def test_bad_answers_are_errors_that_say_what_happened(
    releases: _ReleaseServer, status: int, document: object, says: str
) -> None:
    releases.answer(document, status)
    with pytest.raises(UpdateCheckError, match=says):
        await newer_release(releases.url, "0.1.0")


async def test_a_server_that_is_not_there_is_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpdateCheckError, match="could not reach"):
        await newer_release(f"http://127.0.0.1:{port}/releases/latest", "0.1.0")


def test_the_check_is_off_unless_asked_for_and_its_address_is_https() -> None:
    assert Config().updates.check is False
    assert Config.model_validate({"updates": {"check": True}}).updates.check
    with pytest.raises(ValueError, match="pattern"):
        UpdateSettings(url="http://example.org/releases/latest")

"""Test support: the real sync server under uvicorn on loopback, a scripted browser.

:class:`LiveServer` runs ``create_app(settings)`` in uvicorn on ``127.0.0.1`` and a free
port, in a thread with its own event loop (the client under test runs on the test's
loop and talks real HTTP to it); start-up and shut-down waits are bounded.
:class:`ScriptedBrowser` plays the user's browser against the oidc-provider peer: it
follows the peer's redirects (the peer's scripted interaction signs in the user named by
``login_hint``) and finally opens the loopback redirect, like a browser would.
:func:`smtp_server` catches the local-account mails on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI

_START_TIMEOUT = 20.0
_HIDDEN_INPUT = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"\s*/?>')


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """uvicorn serving ``app`` on loopback in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve()), name="sync-server", daemon=True
        )

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.server.should_exit = True
                raise RuntimeError("the sync server did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=_START_TIMEOUT)


class ScriptedBrowser:
    """A cookie-keeping HTTP client that does what the user would do in a browser."""

    def __init__(self) -> None:
        self.visited: list[str] = []
        self.callback_status: int | None = None
        self.callback_page = ""

    def open(self, url: str) -> bool:
        """Follow the authorization redirects to the loopback callback (like webbrowser.open)."""
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            response = client.get(url)
            for _ in range(12):
                self.visited.append(str(response.request.url))
                location = response.headers.get("location")
                if response.status_code not in (302, 303) or location is None:
                    break
                target = urljoin(str(response.request.url), location)
                response = client.get(target)
            self.visited.append(str(response.request.url))
            self.callback_status = response.status_code
            self.callback_page = response.text
        return True

    def enter_user_code(self, issuer: str, user_code: str) -> str:
        """The device flow on the "other device": open the verification page with the
        code, confirm, get signed in by the scripted interaction; returns the last page."""
        with httpx.Client(base_url=issuer, timeout=10.0, trust_env=False) as client:
            page = client.get("/device", params={"user_code": user_code})
            form = dict(_HIDDEN_INPUT.findall(page.text))
            confirm = client.post("/device", data=form)
            form = dict(_HIDDEN_INPUT.findall(confirm.text))
            assert form.get("confirm") == "yes", confirm.text[:300]
            response = client.post("/device", data=form)
            for _ in range(12):
                location = response.headers.get("location")
                if response.status_code not in (302, 303) or location is None:
                    break
                response = client.get(urljoin(str(response.request.url), location))
            return response.text


class Mailbox:
    """aiosmtpd handler keeping every message (recipients, subject, body)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str, str]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        """Store the message."""
        message = message_from_bytes(envelope.content)
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        self.messages.append((list(envelope.rcpt_tos), str(message["Subject"]), body.decode()))
        return "250 OK"

    async def wait_for(self, to: str, subject_part: str) -> str:
        """The body of the first mail to ``to`` whose subject has ``subject_part`` (≤ 10 s)."""
        for _ in range(200):
            for recipients, subject, body in self.messages:
                if recipients == [to] and subject_part in subject:
                    return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail {subject_part!r} to {to}")


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on loopback capturing mail: (mailbox, port)."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()

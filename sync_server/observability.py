"""Structured JSON logs with request ids, and the request-id/access-log middleware.

Log lines carry method, route path, status, duration and request id — never bodies,
query strings, headers, tokens or keys. A client-supplied ``X-Request-ID`` is reused when
it is short and plain, otherwise one is generated; it is echoed in the response and in
every problem document.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
import secrets
import sys
import time

from pythonjsonlogger.json import JsonFormatter
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync_server.errors import problem_response

REQUEST_ID_HEADER = "X-Request-ID"
#: Where a request's id is kept in the ASGI scope once assigned (:func:`request_id_of`).
REQUEST_ID_KEY = "hushchat_request_id"
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("sync_server.access")
#: Request ids: unique, not secret (they are echoed to the client and logged), so drawn
#: without a system call per request; seeded from the OS's randomness at start.
_ids = random.Random(secrets.randbits(128))  # noqa: S311 (ids, not secrets)
os.register_at_fork(after_in_child=lambda: _ids.seed(secrets.randbits(128)))
log = logging.getLogger(__name__)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Send the server's and uvicorn's logs to stderr as JSON (or plain text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    for name in ("sync_server", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # uvicorn's own access log prints query strings; ours does not.
    logging.getLogger("uvicorn.access").disabled = True


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's ``X-Request-ID`` if short and plain, else a new one.

    Assigned once per request and kept in the scope, so that :mod:`sync_server.fastlane`
    and this middleware use the same id for a request the fast lane hands on.
    """
    assigned: str | None = scope.get(REQUEST_ID_KEY)
    if assigned is not None:
        return assigned
    supplied: str | None = None
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            supplied = value.decode("latin-1")
            break
    if supplied and _SAFE_REQUEST_ID.match(supplied):
        request_id = supplied
    else:
        request_id = f"{_ids.getrandbits(64):016x}"
    scope[REQUEST_ID_KEY] = request_id
    return request_id


def log_access(scope: Scope, status: int, started: float) -> None:
    """The one access-log line of a request (no query string, headers or body)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    access_log.info(
        "request",
        extra={
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )


def internal_error(request_id: str) -> Response:
    """The answer to an unexpected error (logged by the caller)."""
    return problem_response(
        500,
        "Internal Server Error",
        "Unexpected error; quote the request id when reporting it.",
        request_id=request_id,
    )


class RequestContextMiddleware:
    """Assigns the request id and writes one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_error")
            if not response_started:
                await internal_error(request_id)(scope, receive, send_with_id)
        finally:
            log_access(scope, status, started)
            request_id_var.reset(token)

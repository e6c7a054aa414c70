"""How requests reach the endpoints: authentication before the body, and body-size limits.

An unauthenticated caller must not make the server read (let alone parse) a large body:

* :class:`BodySizeLimitMiddleware` streams the body to the app, never buffering it, and
  refuses with 413 as soon as the declared ``Content-Length`` or the bytes read so far pass
  the request's limit: ``MAX_REQUEST_BYTES``, lowered to ``MAX_UNAUTHENTICATED_BODY_BYTES``
  on endpoints that need no authentication.
* :class:`ApiRoute` (the route class of every router) authenticates the caller
  (:func:`sync_server.deps.authenticate`) *before* FastAPI reads the body on endpoints
  that need a principal, and sets the small limit on the others.
* A response sent before the body was read to its end carries ``Connection: close``, so
  the server does not read the rest of it just to reuse the connection.

Ordinary ``POST /v1/sync/push`` and ``GET /v1/sync/changes`` requests do not come this way:
:mod:`sync_server.fastlane` answers them in front of FastAPI, and hands everything else
(with the same limits) to the app, where these layers apply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync_server.deps import authenticate, defers_lookup, needs_principal
from sync_server.errors import problem_response
from sync_server.observability import request_id_var

BODY_LIMIT_KEY = "hushchat_body_limit"
_FAST_PATH = "_hushchat_fast_path"
#: A fast path: ``(request, state, caller)`` → the answer, or ``None`` to let FastAPI
#: handle the request (anything unusual: its validation answers are the reference).
FastPath = Callable[[Request, Any, Any], Awaitable[Response | None]]
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def fast_path(handler: FastPath) -> Callable[[_Endpoint], _Endpoint]:
    """Give an endpoint a handler that skips FastAPI's parameter solving when it can.

    The endpoint stays registered (and documented) as it is; :class:`ApiRoute` tries
    ``handler`` after authenticating and calls FastAPI's handler when it returns ``None``.
    The caller is remembered on the request, so FastAPI does not check the DPoP proof
    (nor count the request) again.
    """

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, _FAST_PATH, handler)
        return endpoint

    return mark


class RequestTooLargeError(StarletteHTTPException):
    """The body passed its limit (an ``HTTPException`` so FastAPI passes it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request bodies are limited to {limit} bytes here.")
        self.limit = limit


def declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` of the request, if it has a valid one."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _has_body(scope: Scope) -> bool:
    length = declared_length(scope)
    if length is not None:
        return length > 0
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", []))


class BodySizeLimitMiddleware:
    """Streams request bodies to the app and answers 413 once one passes its limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[BODY_LIMIT_KEY] = self.max_bytes
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await _reject(scope, receive, send, self.max_bytes)
            return
        received = 0
        finished = not _has_body(scope)
        response_started = False

        async def counted() -> Message:
            nonlocal received, finished
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    finished = True
                if received > scope[BODY_LIMIT_KEY]:
                    raise RequestTooLargeError(scope[BODY_LIMIT_KEY])
            elif message["type"] == "http.disconnect":
                finished = True
            return message

        async def closing(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                if not finished:
                    headers = [
                        (name, value)
                        for name, value in message.get("headers", [])
                        if name.lower() != b"connection"
                    ]
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted, closing)
        except RequestTooLargeError as exc:
            if response_started:
                raise
            await _reject(scope, receive, closing, exc.limit)


async def _reject(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem_response(
        413,
        "Request too large",
        f"Request bodies are limited to {limit} bytes here.",
        slug="request-too-large",
        request_id=request_id_var.get(),
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


class ApiRoute(APIRoute):
    """An endpoint that checks who is calling before its body is read.

    Endpoints that declare :data:`sync_server.deps.CurrentPrincipal` are authenticated
    first; the others may only receive ``MAX_UNAUTHENTICATED_BODY_BYTES``. (Routers are
    included without router-level dependencies, so the route's own dependency tree is
    the whole one.) Endpoints that declare :data:`sync_server.deps.SyncCaller` may leave
    the database lookup to their own transaction, but only when the body is declared and
    no larger than ``MAX_UNAUTHENTICATED_BODY_BYTES`` (or absent): a larger body is read
    only after the lookup, as on the other endpoints.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, preceded by authentication or the small body limit."""
        handler = super().get_route_handler()
        authenticates = needs_principal(self.dependant)
        defers = defers_lookup(self.dependant)
        fast: FastPath | None = getattr(self.endpoint, _FAST_PATH, None) if defers else None

        async def run(request: Request) -> Response:
            state = request.app.state.server
            scope = request.scope
            if defers:
                limit = state.settings.max_unauthenticated_body_bytes
                length = declared_length(scope)
                small = length <= limit if length is not None else not _has_body(scope)
                caller = await authenticate(request, state, defer=small)
                if fast is not None:
                    answer = await fast(request, state, caller)
                    if answer is not None:
                        return answer
            elif authenticates:
                await authenticate(request, state)
            else:
                limit = state.settings.max_unauthenticated_body_bytes
                scope[BODY_LIMIT_KEY] = min(scope.get(BODY_LIMIT_KEY, limit), limit)
                length = declared_length(scope)
                if length is not None and length > limit:
                    raise RequestTooLargeError(limit)
            return await handler(request)

        return run

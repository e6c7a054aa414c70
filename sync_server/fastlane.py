"""A plain ASGI lane in front of FastAPI for the two requests that are nearly all traffic.

``POST /v1/sync/push`` and ``GET /v1/sync/changes`` are answered here, without Starlette
``Request``/``Response`` objects, middleware, routing or dependency solving, when they are
ordinary: the method and path match exactly, a push declares a JSON body of at most
``MAX_UNAUTHENTICATED_BODY_BYTES`` (so it may be read before the credential's database
lookup, as on the FastAPI path), a pull's query is plain numbers in range without ``wait``.
Everything else goes to the FastAPI app unchanged, which gives the reference answers:

* before anything with an effect (a query or body the lane does not take, an app without
  state yet, a ``root_path``), the request is handed on untouched;
* when authentication fails (:func:`sync_server.deps.authenticate_view`: the proof is used
  and a 401 counted by then), the error is remembered in the scope
  (:func:`sync_server.deps.refuse`) and FastAPI raises it at the point where it would
  have (before reading the body), so its answer, ``Connection: close`` included, is its own;
* when the body does not parse or validate as a ``PushRequest``, the request is handed on
  with the body replayed and the caller remembered (the proof is not checked twice);
  FastAPI gives its 422;
* problems after that (429 from the rate limits, 413 for a batch or record too large,
  401/403 from the transaction) are rendered here with the same function as the app's
  handler (:func:`sync_server.errors.problem_response`), and an unexpected error as
  :class:`sync_server.observability.RequestContextMiddleware` would.

Answers carry what the FastAPI path's do: ``RateLimit-*`` when limits are on, the request
id (``X-Request-ID``), the same access-log line. ``tests/integration/sync_server/
test_fast_lane.py`` compares both paths request by request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync_server import records
from sync_server.deps import Caller, RequestView, authenticate_view, caller_limits, refuse, settle
from sync_server.errors import ProblemError, problem_response
from sync_server.observability import internal_error, log_access, request_id_of, request_id_var
from sync_server.protocol import PushRequest
from sync_server.routers.sync import JSON_TYPE, plain_query
from sync_server.state import ServerState

log = logging.getLogger("sync_server.observability")

PUSH_PATH = "/v1/sync/push"
CHANGES_PATH = "/v1/sync/changes"
_PATHS = frozenset((PUSH_PATH, CHANGES_PATH))
#: Pull pages up to this many records count as short transactions
#: (:meth:`sync_server.db.Database.run_short`); the default page is 200.
INLINE_PAGE = 200

#: An answer: status, raw headers (without the request id) and body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_Lane = Callable[["_Call", Caller], Awaitable["Answer | Receive"]]


class _Call:
    """One request on the lane: its scope, view, state and messages."""

    __slots__ = ("body", "query", "receive", "scope", "state", "view")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        state: ServerState,
        headers: dict[str, str],
        query: dict[str, int] | None = None,
    ) -> None:
        client = scope.get("client")
        self.scope = scope
        self.receive = receive
        self.state = state
        self.query = query or {}
        self.view = RequestView(
            scope,
            headers,
            scope["method"],
            _url(scope, headers),
            scope["path"],
            client[0] if client else "unknown",
        )


#: The part of the lane's request URLs before the path (scheme, host, port), by the scope's
#: scheme and server and the Host header it is built from. Bounded: the Host header is the
#: client's to choose.
_BASES: dict[tuple[Any, ...], str] = {}
_BASES_KEPT = 64


def _url(scope: Scope, headers: dict[str, str]) -> str:
    """``str(starlette.datastructures.URL(scope=scope))`` for a request of the lane.

    Its path is one of the lane's fixed paths and its query plain numbers, so the URL is
    what Starlette builds before the path (computed by Starlette once per scheme, server
    and Host header) followed by path and query, without a URL object (Host header
    parsing, ``urlunsplit``) per request.
    """
    query = scope.get("query_string", b"").decode()
    suffix: str = scope["path"] + ("?" + query if query else "")
    server = scope.get("server")
    key = (scope.get("scheme", "http"), tuple(server) if server else None, headers.get("host"))
    base = _BASES.get(key)
    if base is None:
        full = str(URL(scope=scope))
        if not full.endswith(suffix):
            return full
        base = full[: len(full) - len(suffix)]
        if len(_BASES) >= _BASES_KEPT:
            _BASES.clear()
        _BASES[key] = base
    return base + suffix


def _headers(scope: Scope) -> dict[str, str]:
    """Header values by (lower-case) name, the first of repeated ones (as Starlette's)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back ``messages`` (a body the lane read)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _problem(exc: ProblemError, call: _Call) -> Answer:
    """``exc`` as the app's handler renders it (``sync_server.app._on_problem``)."""
    response = problem_response(
        exc.status,
        exc.title,
        exc.detail,
        slug=exc.slug,
        extra=exc.extra,
        headers=exc.headers,
        request_id=request_id_var.get(),
        instance=call.view.path,
    )
    return exc.status, list(response.raw_headers), bytes(response.body)


def _json(content: bytes, limits: dict[str, str]) -> Answer:
    """A 200 JSON answer with the ``RateLimit-*`` headers, as ``routers.sync._json``."""
    headers = [
        (b"content-length", str(len(content)).encode()),
        (b"content-type", b"application/json"),
    ]
    for name, value in limits.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return 200, headers, content


async def _push(call: _Call, caller: Caller) -> Answer | Receive:
    """``POST /v1/sync/push`` (see ``routers.sync.push``)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await call.receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client left: FastAPI's to handle
            return _replaying(messages, call.receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        # Parsed and validated in one pass by pydantic-core. A body it refuses that
        # FastAPI's json.loads takes (UTF-16, a byte-order mark) is handed on, and FastAPI
        # answers it as always.
        request = PushRequest.model_validate_json(b"".join(chunks))
    except ValidationError:
        return _replaying(messages, call.receive)
    state = call.state
    try:
        limits = await caller_limits(state, caller)
        records.check_sizes(request, state.settings)

        def write(who: Caller) -> Awaitable[bytes | None]:
            # At most max_unauthenticated_body_bytes of records: a short transaction.
            return records.push(state.db, who, request, state.notifier.changed, short=True)

        content = await settle(call.scope, call.view.client, state, caller, write)
    except ProblemError as exc:
        return _problem(exc, call)
    return _json(content, limits)


async def _changes(call: _Call, caller: Caller) -> Answer | Receive:
    """``GET /v1/sync/changes`` without ``wait`` (see ``routers.sync.get_changes``)."""
    state = call.state
    cursor = call.query.get("cursor", 0)
    maximum = state.settings.max_page_size
    page = min(call.query.get("limit") or min(200, maximum), maximum)

    def look(who: Caller) -> Awaitable[records.ChangesFound | None]:
        return records.changes_as(state.db, who, cursor, page, short=page <= INLINE_PAGE)

    try:
        limits = await caller_limits(state, caller)
        rows, recoveries = await settle(call.scope, call.view.client, state, caller, look)
    except ProblemError as exc:
        return _problem(exc, call)
    return _json(records.changes_json(rows, cursor, page, recoveries), limits)


class FastLane:
    """The lane; ``fallback`` is the FastAPI app (its ASGI entry point)."""

    def __init__(self, fallback: ASGIApp, state: Callable[[], ServerState | None]) -> None:
        self._fallback = fallback
        self._state = state

    def takes(self, scope: Scope) -> bool:
        """True for a request this lane looks at (the rest goes straight to FastAPI)."""
        return scope["path"] in _PATHS and not scope.get("root_path")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request of :meth:`takes`, or hand it to FastAPI."""
        state = self._state()
        method, path = scope["method"], scope["path"]
        if state is None:
            await self._fallback(scope, receive, send)
            return
        headers = _headers(scope)
        lane: _Lane
        query: dict[str, int] | None = None
        if method == "POST" and path == PUSH_PATH:
            lane = _push
            length = headers.get("content-length", "")
            settings = state.settings
            limit = min(settings.max_unauthenticated_body_bytes, settings.max_request_bytes)
            plain = (
                JSON_TYPE.fullmatch(headers.get("content-type", "")) is not None
                and length.isdigit()
                and 0 < int(length) <= limit
                and "transfer-encoding" not in headers
            )
        elif method == "GET" and path == CHANGES_PATH:
            lane = _changes
            query = plain_query(scope)
            plain = (
                query is not None
                and not query.get("wait")
                and headers.get("content-length", "0") == "0"
                and "transfer-encoding" not in headers
            )
        else:
            plain = False
        if not plain:
            await self._fallback(scope, receive, send)
            return
        await self._serve(_Call(scope, receive, state, headers, query), lane, send)

    async def _serve(self, call: _Call, lane: _Lane, send: Send) -> None:
        scope = call.scope
        request_id = request_id_of(scope)
        context = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        started_answer = False
        hand_on: Receive | None = None
        try:
            try:
                caller = await authenticate_view(call.view, call.state, defer=True)
            except (ProblemError, RequestValidationError) as exc:
                refuse(scope, exc)
                hand_on = call.receive
            else:
                outcome = await lane(call, caller)
                if isinstance(outcome, tuple):
                    status, headers, body = outcome
                    headers.append((b"x-request-id", request_id.encode()))
                    started_answer = True
                    start = {"type": "http.response.start", "status": status, "headers": headers}
                    await send(start)
                    await send({"type": "http.response.body", "body": body})
                else:
                    hand_on = outcome
        except Exception:
            log.exception("unhandled_error")
            status = 500
            if not started_answer:
                await _send_response(internal_error(request_id), request_id, send)
        finally:
            if hand_on is None:
                log_access(scope, status, started)
            request_id_var.reset(context)
        if hand_on is not None:
            await self._fallback(scope, hand_on, send)


async def _send_response(response: Any, request_id: str, send: Send) -> None:
    """A Starlette response (a problem document) with the request id, as the middleware."""
    headers = [*response.raw_headers, (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(response.body)})

"""Record sync: ``GET /v1/sync/changes`` (long-poll with ``wait``) and ``POST /v1/sync/push``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.types import Scope

from sync_server import records
from sync_server.deps import (
    Caller,
    StateDep,
    SyncCaller,
    client_address,
    count_caller,
    settle,
)
from sync_server.protocol import MAX_SAFE_INTEGER, ChangesResponse, PushRequest, PushResponse
from sync_server.routing import ApiRoute, fast_path
from sync_server.state import ServerState

router = APIRouter(tags=["sync"], route_class=ApiRoute)

#: Longest ``wait`` a pull may ask for (seconds).
MAX_WAIT_SECONDS = 30


def _json(content: bytes, sub_response: Response) -> Response:
    # Serialised once by sync_server.records; FastAPI would validate it again. FastAPI
    # copies the dependencies' headers (RateLimit-*) only onto answers it builds itself.
    answer = Response(content=content, media_type="application/json")
    for name, value in sub_response.headers.items():
        if name not in ("content-length", "content-type"):
            answer.headers.append(name, value)
    return answer


_DIGITS = re.compile(r"[0-9]{1,16}")
JSON_TYPE = re.compile(r"application/json\s*(;\s*charset=\"?utf-8\"?\s*)?", re.IGNORECASE)


def plain_query(scope: Scope) -> dict[str, int] | None:
    """``cursor``/``limit``/``wait`` when each is a plain in-range number, given once.

    ``None`` for anything else, so that FastAPI answers it (with its 422 details).
    """
    found: dict[str, int] = {}
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in ("cursor", "limit", "wait"):
            continue
        if name in found or not _DIGITS.fullmatch(value):
            return None
        found[name] = int(value)
    if found.get("cursor", 0) > MAX_SAFE_INTEGER or found.get("limit", 1) < 1:
        return None
    if found.get("wait", 0) > MAX_WAIT_SECONDS:
        return None
    return found


async def _fast_changes(request: Request, state: ServerState, caller: Caller) -> Response | None:
    """:func:`get_changes` without FastAPI's parameter solving (see ``fast_path``)."""
    query = plain_query(request.scope)
    if query is None:
        return None
    response = Response()
    await count_caller(state, response, caller)
    return await get_changes(
        request,
        response,
        caller,
        state,
        cursor=query.get("cursor", 0),
        limit=query.get("limit"),
        wait=query.get("wait", 0),
    )


async def _fast_push(request: Request, state: ServerState, caller: Caller) -> Response | None:
    """:func:`push` without FastAPI's parameter solving (see ``fast_path``).

    The body is parsed and validated as FastAPI would (JSON, then the model in Python
    mode); when either fails FastAPI handles the request and gives its answer.
    """
    if not JSON_TYPE.fullmatch(request.headers.get("content-type", "")):
        return None
    try:
        body = PushRequest.model_validate(await request.json())
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError):
        return None
    response = Response()
    await count_caller(state, response, caller)
    return await push(request, body, caller, state, response)


@router.get(
    "/v1/sync/changes", summary="Pull changes since a cursor", response_model=ChangesResponse
)
@fast_path(_fast_changes)
async def get_changes(
    request: Request,
    response: Response,
    caller: SyncCaller,
    state: StateDep,
    cursor: Annotated[
        int, Query(ge=0, le=MAX_SAFE_INTEGER, description="Last seq seen; 0 at start.")
    ] = 0,
    limit: Annotated[int | None, Query(ge=1, description="Page size.")] = None,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Long-poll: when nothing changed after cursor, wait up to this many "
            "seconds for a change before answering (an empty page if none came).",
        ),
    ] = 0,
) -> Response:
    """Records changed after ``cursor``, oldest first; ``has_more`` when another page waits.

    Every answer also lists the account's pending and ready recoveries. With ``wait``, a
    pull at the head of the account's changes is held until another device pushes, a
    recovery starts or changes (answered at once) or ``wait`` seconds pass.
    """
    maximum = state.settings.max_page_size
    page = min(limit or min(200, maximum), maximum)

    def look(who: Caller) -> Awaitable[records.ChangesFound | None]:
        return records.changes_as(state.db, who, cursor, page)

    # The caller is checked by the same read transaction as the first look.
    client = client_address(request)
    rows, recoveries = await settle(request.scope, client, state, caller, look)
    account_id = _account(caller)
    notifier = state.notifier
    if not rows and wait and not notifier.is_closed:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        interval = state.settings.long_poll_interval_seconds
        seen = recoveries
        with notifier.waiter(account_id, caller.device_id) as waiter:
            while True:
                # Listen first, then look: a push that commits after the look wakes us.
                waiter.arm()
                rows, recoveries = await records.changed_rows_and_recoveries(
                    state.db, account_id, cursor, page
                )
                remaining = deadline - loop.time()
                if rows or recoveries != seen or remaining <= 0 or notifier.is_closed:
                    break
                # No database connection is held while sleeping.
                await waiter.sleep(min(interval, remaining))
                if await request.is_disconnected():
                    break
    return _json(records.changes_json(rows, cursor, page, recoveries), response)


@router.post("/v1/sync/push", summary="Push a batch of records", response_model=PushResponse)
@fast_path(_fast_push)
async def push(
    request: Request, body: PushRequest, caller: SyncCaller, state: StateDep, response: Response
) -> Response:
    """Each record is saved, conflicts (with the server's copy) or is rejected."""
    records.check_sizes(body, state.settings)

    def write(who: Caller) -> Awaitable[bytes | None]:
        return records.push(state.db, who, body, state.notifier.changed)

    # One write transaction checks the caller and applies the batch.
    return _json(
        await settle(request.scope, client_address(request), state, caller, write), response
    )


def _account(caller: Caller) -> str:
    """The caller's account, once :func:`settle` has checked it."""
    if caller.account_id is None:
        raise RuntimeError("a sync caller without its account")
    return caller.account_id

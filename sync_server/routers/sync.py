"""Record sync: ``GET /v1/sync/changes`` and ``POST /v1/sync/push``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sync_server import records
from sync_server.deps import CurrentPrincipal, StateDep
from sync_server.protocol import MAX_SAFE_INTEGER, ChangesResponse, PushRequest, PushResponse

router = APIRouter(tags=["sync"])


@router.get("/v1/sync/changes", summary="Pull changes since a cursor")
async def get_changes(
    principal: CurrentPrincipal,
    state: StateDep,
    cursor: Annotated[int, Query(ge=0, le=MAX_SAFE_INTEGER, description="Last seq seen; 0 at start.")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="Page size.")] = None,
) -> ChangesResponse:
    """Records changed after ``cursor``, oldest first; ``has_more`` when another page waits."""
    maximum = state.settings.max_page_size
    page = min(limit or min(200, maximum), maximum)
    return await records.changes(state.db, principal, cursor, page)


@router.post("/v1/sync/push", summary="Push a batch of records")
async def push(body: PushRequest, principal: CurrentPrincipal, state: StateDep) -> PushResponse:
    """Each record is saved, conflicts (with the server's copy) or is rejected."""
    records.check_sizes(body, state.settings)
    return await records.push(state.db, principal, body)

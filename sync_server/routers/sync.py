"""Record sync: ``GET /v1/sync/changes`` and ``POST /v1/sync/push``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from sync_server import records
from sync_server.deps import CurrentPrincipal, StateDep
from sync_server.protocol import MAX_SAFE_INTEGER, ChangesResponse, PushRequest, PushResponse
from sync_server.routing import ApiRoute

router = APIRouter(tags=["sync"], route_class=ApiRoute)


def _json(content: bytes) -> Response:
    # Serialised once by sync_server.records; FastAPI would validate it again.
    return Response(content=content, media_type="application/json")


@router.get(
    "/v1/sync/changes", summary="Pull changes since a cursor", response_model=ChangesResponse
)
async def get_changes(
    principal: CurrentPrincipal,
    state: StateDep,
    cursor: Annotated[
        int, Query(ge=0, le=MAX_SAFE_INTEGER, description="Last seq seen; 0 at start.")
    ] = 0,
    limit: Annotated[int | None, Query(ge=1, description="Page size.")] = None,
) -> Response:
    """Records changed after ``cursor``, oldest first; ``has_more`` when another page waits."""
    maximum = state.settings.max_page_size
    page = min(limit or min(200, maximum), maximum)
    return _json(await records.changes(state.db, principal, cursor, page))


@router.post("/v1/sync/push", summary="Push a batch of records", response_model=PushResponse)
async def push(body: PushRequest, principal: CurrentPrincipal, state: StateDep) -> Response:
    """Each record is saved, conflicts (with the server's copy) or is rejected."""
    records.check_sizes(body, state.settings)
    return _json(await records.push(state.db, principal, body))

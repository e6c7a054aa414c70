"""Liveness (``/healthz``), readiness (``/readyz``, database ping) and ``/v1/meta``."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from sync_server import __version__
from sync_server.deps import AnonymousLimits, StateDep
from sync_server.errors import ProblemError
from sync_server.protocol import (
    PROTOCOL_VERSION,
    EscrowMeta,
    Health,
    LimitsMeta,
    Meta,
    OidcMeta,
)
from sync_server.routing import ApiRoute
from sync_server.sealing import ESCROW_ALGORITHM

router = APIRouter(tags=["health"], route_class=ApiRoute)
log = logging.getLogger(__name__)


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and serving requests."""
    return Health(version=__version__)


@router.get("/readyz", summary="Readiness (database reachable)")
async def readyz(state: StateDep) -> Health:
    """Ready when the database and the rate-limit storage answer; 503 problem otherwise."""
    try:
        await state.db.ping()
        if not await state.limiter.check_storage():
            raise OSError("rate-limit storage did not answer")
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readiness_failed", extra={"error": type(exc).__name__})
        raise ProblemError(
            503,
            "Not ready",
            "The database or the rate-limit storage is not reachable.",
            slug="not-ready",
            headers={"Retry-After": "5"},
        ) from exc
    return Health(version=__version__)


@router.get("/v1/meta", summary="How to use this server", dependencies=[AnonymousLimits])
async def meta(state: StateDep) -> Meta:
    """Login parameters (issuer, client id, scopes), escrow public key and limits."""
    settings = state.settings
    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id and settings.oidc_audience:
        oidc = OidcMeta(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            audience=settings.oidc_audience,
            scopes=settings.oidc_scopes.split(),
        )
    return Meta(
        server_version=__version__,
        protocol_version=PROTOCOL_VERSION,
        oidc=oidc,
        local_accounts=settings.local_accounts_enabled,
        escrow=EscrowMeta(
            algorithm=ESCROW_ALGORITHM,
            public_key=state.escrow.public_bytes,
            key_id=state.escrow.key_id,
        ),
        limits=LimitsMeta(
            max_record_bytes=settings.max_record_bytes,
            max_request_bytes=settings.max_request_bytes,
            max_batch_records=settings.max_batch_records,
            max_page_size=settings.max_page_size,
        ),
        recovery_delay_seconds=settings.recovery_delay_seconds,
    )

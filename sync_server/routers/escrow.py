"""Standard-tier key escrow: ``GET|PUT|DELETE /v1/escrow``.

The client seals its Standard sync key to the escrow public key (see
:mod:`sync_server.sealing`). The server holds only that public key: it checks the upload's
shape (a v1 sealed box of 16 to 256 bytes of plaintext, sealed to the current key id) and
stores it; it cannot open it. Only ``hushchat-sync escrow process`` can. Private-tier keys
are never accepted.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import select

from sync_server.accounts import Principal, audit, now
from sync_server.deps import CurrentPrincipal, StateDep
from sync_server.errors import ProblemError
from sync_server.models import AuditEvent, Escrow, Recovery
from sync_server.protocol import AuditEventOut, EscrowPut, EscrowStatus, RecoveryOut
from sync_server.recoveries import OPEN_STATUSES, cancel_open
from sync_server.routing import ApiRoute
from sync_server.sealing import (
    MAX_ESCROW_PLAINTEXT,
    MIN_ESCROW_PLAINTEXT,
    SealingError,
    check_sealed_shape,
)
from sync_server.state import ServerState

router = APIRouter(tags=["escrow"], route_class=ApiRoute)


def recovery_out(row: Recovery) -> RecoveryOut:
    """Wire shape of a recovery request."""
    return RecoveryOut(
        id=row.id,
        status=row.status,
        device_id=row.device_id,
        created_at=row.created_at,
        not_before=row.not_before,
        expires_at=row.expires_at,
    )


async def _status(state: ServerState, principal: Principal) -> EscrowStatus:
    async with state.db.read() as session:
        escrow = await session.get(Escrow, principal.account_id)
        pending = (
            await session.execute(
                select(Recovery)
                .where(
                    Recovery.account_id == principal.account_id,
                    Recovery.status.in_(OPEN_STATUSES),
                )
                .order_by(Recovery.created_at)
            )
        ).scalars()
        recoveries = [recovery_out(row) for row in pending]
        events = (
            await session.execute(
                select(AuditEvent)
                .where(AuditEvent.account_id == principal.account_id)
                .order_by(AuditEvent.id.desc())
                .limit(50)
            )
        ).scalars()
        audit_trail = [
            AuditEventOut(event=row.event, device_id=row.device_id, created_at=row.created_at)
            for row in events
        ]
    return EscrowStatus(
        escrowed=escrow is not None,
        key_id=escrow.key_id if escrow else None,
        server_key_id=escrow.server_key_id if escrow else None,
        updated_at=escrow.updated_at if escrow else None,
        pending_recoveries=recoveries,
        audit=audit_trail,
    )


@router.get("/v1/escrow", summary="Escrow status, pending recoveries and audit trail")
async def get_escrow(principal: CurrentPrincipal, state: StateDep) -> EscrowStatus:
    """Whether a Standard key is escrowed, pending recoveries, the last 50 audit events."""
    return await _status(state, principal)


@router.put("/v1/escrow", summary="Escrow the Standard-tier key")
async def put_escrow(body: EscrowPut, principal: CurrentPrincipal, state: StateDep) -> EscrowStatus:
    """Store the key sealed to the escrow public key (replacing an earlier one)."""
    if body.server_key_id != state.escrow.key_id:
        raise ProblemError(
            409,
            "Escrow key changed",
            "Seal the key to the public key currently in /v1/meta.",
            slug="escrow-key-changed",
        )
    try:
        # Shape only: the server has no escrow private key to open it with.
        check_sealed_shape(body.sealed_key, MIN_ESCROW_PLAINTEXT, MAX_ESCROW_PLAINTEXT)
    except SealingError as exc:
        raise ProblemError(
            422,
            "Malformed sealed key",
            f"sealed_key must be a version-1 sealed box of the key ({exc}).",
            slug="escrow-malformed",
        ) from exc
    moment = now()
    async with state.db.write() as session:
        row = await session.get(Escrow, principal.account_id)
        if row is None:
            session.add(
                Escrow(
                    account_id=principal.account_id,
                    key_id=body.key_id,
                    server_key_id=body.server_key_id,
                    sealed_key=body.sealed_key,
                    device_id=principal.device_id,
                    created_at=moment,
                    updated_at=moment,
                )
            )
        else:
            row.key_id = body.key_id
            row.server_key_id = body.server_key_id
            row.sealed_key = body.sealed_key
            row.device_id = principal.device_id
            row.updated_at = moment
        await audit(session, principal.account_id, "escrow.stored", principal.device_id)
    return await _status(state, principal)


@router.delete(
    "/v1/escrow", status_code=status.HTTP_204_NO_CONTENT, summary="Remove the escrowed key"
)
async def delete_escrow(principal: CurrentPrincipal, state: StateDep) -> Response:
    """Forget the escrowed key and cancel pending and ready recoveries."""
    async with state.db.write() as session:
        row = await session.get(Escrow, principal.account_id)
        if row is not None:
            await session.delete(row)
        await cancel_open(
            session,
            principal.account_id,
            now(),
            "escrow-deleted",
            by_device=principal.device_id,
        )
        await audit(session, principal.account_id, "escrow.deleted", principal.device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

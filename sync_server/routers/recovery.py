"""Escrow recovery: ``POST /v1/recovery/start|cancel|complete``.

1. ``start`` from the new device: needs a verified e-mail and a fresh login (``auth_time``
   within ``RECOVERY_MAX_AUTH_AGE_SECONDS``) and the device's ephemeral X25519 public key;
   the account's address is notified.
2. For ``RECOVERY_DELAY_SECONDS`` any device of the account can ``cancel`` it.
3. ``complete`` from the same device after the delay: the server opens the escrowed key and
   seals it to the ephemeral public key. Every step is in the audit trail.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status
from sqlalchemy import select, update

from sync_server.accounts import Principal, audit, new_id, now
from sync_server.deps import CurrentPrincipal, SignInLimits, StateDep
from sync_server.errors import ProblemError
from sync_server.models import Escrow, Recovery
from sync_server.protocol import (
    RecoveryCancel,
    RecoveryComplete,
    RecoveryOut,
    RecoveryResult,
    RecoveryStart,
)
from sync_server.routers.escrow import recovery_out
from sync_server.routing import ApiRoute
from sync_server.sealing import (
    SealingError,
    escrow_aad,
    open_sealed,
    public_key_from_bytes,
    recovery_aad,
    seal,
)
from sync_server.state import ServerState

router = APIRouter(tags=["recovery"], route_class=ApiRoute)


def _require_verified(principal: Principal) -> None:
    if not principal.email_verified or not principal.email:
        raise ProblemError(
            403,
            "E-mail not verified",
            "Recovery needs an account with a verified e-mail address.",
            slug="email-not-verified",
        )


def _require_fresh_login(principal: Principal, max_age: int) -> None:
    auth_time = principal.auth_time
    if auth_time is None or now() - auth_time > timedelta(seconds=max_age):
        raise ProblemError(
            401,
            "Fresh login required",
            f"Sign in again (at most {max_age} s ago) before starting a recovery.",
            slug="login-required",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_user_authentication", '
                f'max_age="{max_age}"'
            },
        )


def _notify(state: ServerState, principal: Principal, subject: str, body: str) -> None:
    if principal.email:
        state.mailer.send_later(principal.email, subject, body, purpose="recovery")


async def _own_recovery(state: ServerState, principal: Principal, recovery_id: str) -> Recovery:
    async with state.db.read() as session:
        row = await session.get(Recovery, recovery_id)
    if row is None or row.account_id != principal.account_id:
        raise ProblemError(404, "Not found", "No such recovery request.", slug="not-found")
    return row


@router.post(
    "/v1/recovery/start",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start recovering the escrowed key",
    dependencies=[SignInLimits],
)
async def start(body: RecoveryStart, principal: CurrentPrincipal, state: StateDep) -> RecoveryOut:
    """Creates a pending recovery that can complete after the delay."""
    _require_verified(principal)
    _require_fresh_login(principal, state.settings.recovery_max_auth_age_seconds)
    try:
        public_key_from_bytes(body.device_public_key)
    except SealingError as exc:
        raise ProblemError(
            422, "Invalid device key", "device_public_key must be 32 bytes.", slug="invalid-key"
        ) from exc
    settings = state.settings
    moment = now()
    async with state.db.write() as session:
        if await session.get(Escrow, principal.account_id) is None:
            raise ProblemError(404, "Nothing escrowed", "No key is escrowed.", slug="no-escrow")
        await session.execute(
            update(Recovery)
            .where(
                Recovery.account_id == principal.account_id,
                Recovery.device_id == principal.device_id,
                Recovery.status == "pending",
            )
            .values(status="cancelled", finished_at=moment, finished_by_device=principal.device_id)
        )
        not_before = moment + timedelta(seconds=settings.recovery_delay_seconds)
        row = Recovery(
            id=new_id(),
            account_id=principal.account_id,
            device_id=principal.device_id,
            device_public_key=body.device_public_key,
            status="pending",
            created_at=moment,
            not_before=not_before,
            expires_at=not_before + timedelta(seconds=settings.recovery_window_seconds),
        )
        session.add(row)
        await audit(session, principal.account_id, "recovery.started", principal.device_id, row.id)
    _notify(
        state,
        principal,
        "Hushchat: recovery of your Standard chats started",
        f"A device ({principal.device_id}) started recovering the key of your Standard chats "
        f"at {moment:%Y-%m-%d %H:%M} UTC. It can complete after {not_before:%Y-%m-%d %H:%M} "
        "UTC. If this was not you, cancel it now from another signed-in device.",
    )
    return recovery_out(row)


@router.post("/v1/recovery/cancel", summary="Cancel a pending recovery")
async def cancel(body: RecoveryCancel, principal: CurrentPrincipal, state: StateDep) -> RecoveryOut:
    """Any device of the account can cancel while it is pending."""
    row = await _own_recovery(state, principal, body.recovery_id)
    async with state.db.write() as session:
        current = await session.get(Recovery, row.id)
        assert current is not None
        if current.status != "pending":
            raise ProblemError(
                409, "Not pending", f"The recovery is {current.status}.", slug="not-pending"
            )
        current.status = "cancelled"
        current.finished_at = now()
        current.finished_by_device = principal.device_id
        await audit(
            session, principal.account_id, "recovery.cancelled", principal.device_id, row.id
        )
        result = recovery_out(current)
    _notify(
        state,
        principal,
        "Hushchat: recovery cancelled",
        f"The recovery started by device {row.device_id} was cancelled by device "
        f"{principal.device_id}.",
    )
    return result


@router.post(
    "/v1/recovery/complete",
    summary="Receive the escrowed key sealed to the device key",
    dependencies=[SignInLimits],
)
async def complete(
    body: RecoveryComplete,
    principal: CurrentPrincipal,
    state: StateDep,
) -> RecoveryResult:
    """After the delay, the same device gets the key sealed to its ephemeral public key."""
    _require_verified(principal)
    row = await _own_recovery(state, principal, body.recovery_id)
    if row.device_id != principal.device_id:
        raise ProblemError(
            403,
            "Other device",
            "Complete the recovery on the device that started it.",
            slug="wrong-device",
        )
    async with state.db.write() as session:
        current = await session.get(Recovery, row.id)
        assert current is not None
        moment = now()
        if current.status != "pending":
            raise ProblemError(
                409, "Not pending", f"The recovery is {current.status}.", slug="not-pending"
            )
        if moment < current.not_before:
            wait = int((current.not_before - moment).total_seconds()) + 1
            raise ProblemError(
                409,
                "Too early",
                f"The recovery can complete in {wait} s unless cancelled.",
                slug="recovery-delay",
                headers={"Retry-After": str(wait)},
                extra={"not_before": current.not_before.isoformat()},
            )
        if moment > current.expires_at:
            raise ProblemError(
                409, "Expired", "The recovery expired; start a new one.", slug="recovery-expired"
            )
        escrow = (
            await session.execute(select(Escrow).where(Escrow.account_id == principal.account_id))
        ).scalar_one_or_none()
        if escrow is None:
            raise ProblemError(404, "Nothing escrowed", "No key is escrowed.", slug="no-escrow")
        try:
            key = open_sealed(
                state.escrow.private_key,
                escrow.sealed_key,
                escrow_aad(principal.account_id, escrow.key_id),
            )
        except SealingError as exc:
            raise ProblemError(
                500,
                "Escrow unreadable",
                "The escrowed key no longer opens (escrow key replaced?).",
                slug="escrow-unreadable",
            ) from exc
        sealed = seal(
            public_key_from_bytes(current.device_public_key),
            key,
            recovery_aad(principal.account_id, current.id),
        )
        current.status = "completed"
        current.finished_at = moment
        current.finished_by_device = principal.device_id
        await audit(
            session, principal.account_id, "recovery.completed", principal.device_id, row.id
        )
        key_id = escrow.key_id
    _notify(
        state,
        principal,
        "Hushchat: recovery completed",
        f"Device {principal.device_id} recovered the key of your Standard chats.",
    )
    return RecoveryResult(recovery_id=row.id, key_id=key_id, sealed_key=sealed)

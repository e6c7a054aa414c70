"""Escrow recovery: ``POST /v1/recovery/start|approve|cancel|complete``.

1. ``start`` from the new device: needs a verified e-mail, a fresh login (``auth_time``
   within ``RECOVERY_MAX_AUTH_AGE_SECONDS``), the device's ephemeral X25519 public key,
   and an account whose recovery is not blocked (an e-mail change or password reset blocks
   it for ``RECOVERY_DELAY_SECONDS``: 409 ``recovery-blocked``). Every verified address
   the account ever had is mailed, with a single-use cancel link.
2. Until ``not_before`` (``RECOVERY_DELAY_SECONDS`` later) any device of the account can
   ``cancel`` it; *another* device can ``approve`` it, which skips the rest of the delay.
3. After ``not_before``, ``hushchat-sync escrow process`` (the only holder of the escrow
   private key) opens the escrowed key and seals it to the device's key: status ``ready``.
4. ``complete`` from the starting device returns that sealed answer (``recovery-delay``
   before ``not_before``, ``recovery-waiting`` until the escrow command has run).

The server process itself never opens an escrow. Every step is in the audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.accounts import Principal, audit, new_id, now
from sync_server.deps import CurrentPrincipal, SignInLimits, StateDep
from sync_server.errors import ProblemError
from sync_server.models import Account, Escrow, Recovery
from sync_server.protocol import (
    RecoveryApprove,
    RecoveryCancel,
    RecoveryComplete,
    RecoveryOut,
    RecoveryResult,
    RecoveryStart,
)
from sync_server.recoveries import (
    OPEN_STATUSES,
    PendingMails,
    RecoveryNotices,
    cancel_open,
    known_addresses,
    new_cancel_token,
    remember_address,
    simple_mail,
    started_mail,
)
from sync_server.routers.escrow import recovery_out
from sync_server.routing import ApiRoute
from sync_server.sealing import SealingError, public_key_from_bytes

router = APIRouter(tags=["recovery"], route_class=ApiRoute)

#: Seconds a device waits before asking again while the escrow command has not run.
WAITING_RETRY_SECONDS = 5


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


def _not_open(row: Recovery) -> ProblemError:
    reasons = {
        "email-changed": " because the account's e-mail address changed",
        "password-reset": " because the account's password was reset",
        "escrow-deleted": " because the escrowed key was deleted",
        "escrow-unreadable": ": the escrowed key could not be opened; escrow it again from a "
        "device that has it",
        "link": " from the link in the notice mail",
        "replaced": " because this device started a newer recovery",
    }
    detail = f"The recovery is {row.status}"
    if row.status == "cancelled" and row.cancel_reason:
        detail += reasons.get(row.cancel_reason, "")
    return ProblemError(409, "Not pending", detail + ".", slug="not-pending")


def _expired() -> ProblemError:
    return ProblemError(
        409, "Expired", "The recovery expired; start a new one.", slug="recovery-expired"
    )


async def _own_recovery(session: AsyncSession, principal: Principal, recovery_id: str) -> Recovery:
    row = await session.get(Recovery, recovery_id)
    if row is None or row.account_id != principal.account_id:
        raise ProblemError(404, "Not found", "No such recovery request.", slug="not-found")
    return row


def _expire(row: Recovery, moment: datetime) -> None:
    row.status = "expired"
    row.finished_at = moment
    row.sealed_answer = None


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
    notices = RecoveryNotices(state.mailer, settings)
    mails = PendingMails()
    moment = now()
    token, token_hash = new_cancel_token()
    async with state.db.write() as session:
        account = await session.get(Account, principal.account_id)
        assert account is not None  # the principal was just resolved
        blocked = account.recovery_blocked_until
        if blocked is not None and moment < blocked:
            wait = int((blocked - moment).total_seconds()) + 1
            raise ProblemError(
                409,
                "Recovery blocked",
                "The account's e-mail address changed or its password was reset recently; "
                f"a recovery can start in {wait} s.",
                slug="recovery-blocked",
                headers={"Retry-After": str(wait)},
                extra={"blocked_until": blocked.isoformat()},
            )
        if await session.get(Escrow, principal.account_id) is None:
            raise ProblemError(404, "Nothing escrowed", "No key is escrowed.", slug="no-escrow")
        await cancel_open(
            session,
            principal.account_id,
            moment,
            "replaced",
            by_device=principal.device_id,
            only_device=principal.device_id,
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
            cancel_token_hash=token_hash,
        )
        session.add(row)
        await audit(session, principal.account_id, "recovery.started", principal.device_id, row.id)
        assert principal.email is not None  # _require_verified
        # Normally known already (recorded when the address was first seen verified).
        await remember_address(session, principal.account_id, principal.email, moment)
        subject, text = started_mail(row, notices.cancel_link(token))
        mails.add(await known_addresses(session, principal.account_id), subject, text)
        result = recovery_out(row)
    notices.send(mails)
    state.notifier.changed(principal.account_id)
    return result


@router.post("/v1/recovery/approve", summary="Approve another device's recovery now")
async def approve(
    body: RecoveryApprove, principal: CurrentPrincipal, state: StateDep
) -> RecoveryOut:
    """Another signed-in device of the account vouches for the recovery: no more delay."""
    notices = RecoveryNotices(state.mailer, state.settings)
    mails = PendingMails()
    moment = now()
    async with state.db.write() as session:
        row = await _own_recovery(session, principal, body.recovery_id)
        if row.device_id == principal.device_id:
            raise ProblemError(
                403,
                "Same device",
                "Approve the recovery from another signed-in device of the account.",
                slug="wrong-device",
            )
        if row.status == "expired" or (row.status in OPEN_STATUSES and moment > row.expires_at):
            raise _expired()
        if row.status != "pending":
            raise _not_open(row)
        if row.not_before > moment:
            row.not_before = moment
        row.approved_by_device = principal.device_id
        await audit(session, principal.account_id, "recovery.approved", principal.device_id, row.id)
        subject, text = simple_mail("approved", row, moment)
        mails.add(await known_addresses(session, principal.account_id), subject, text)
        result = recovery_out(row)
    notices.send(mails)
    state.notifier.changed(principal.account_id)
    return result


@router.post("/v1/recovery/cancel", summary="Cancel a pending recovery")
async def cancel(body: RecoveryCancel, principal: CurrentPrincipal, state: StateDep) -> RecoveryOut:
    """Any device of the account can cancel while it is pending or ready."""
    notices = RecoveryNotices(state.mailer, state.settings)
    mails = PendingMails()
    moment = now()
    async with state.db.write() as session:
        row = await _own_recovery(session, principal, body.recovery_id)
        if row.status not in OPEN_STATUSES:
            raise _not_open(row)
        row.status = "cancelled"
        row.finished_at = moment
        row.finished_by_device = principal.device_id
        row.cancel_reason = "device"
        row.sealed_answer = None
        await audit(
            session, principal.account_id, "recovery.cancelled", principal.device_id, row.id
        )
        subject, text = simple_mail("cancelled", row, moment)
        mails.add(await known_addresses(session, principal.account_id), subject, text)
        result = recovery_out(row)
    notices.send(mails)
    state.notifier.changed(principal.account_id)
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
    """Once the escrow command has sealed the answer, the starting device receives it."""
    _require_verified(principal)
    notices = RecoveryNotices(state.mailer, state.settings)
    mails = PendingMails()
    async with state.db.write() as session:
        row = await _own_recovery(session, principal, body.recovery_id)
        if row.device_id != principal.device_id:
            raise ProblemError(
                403,
                "Other device",
                "Complete the recovery on the device that started it.",
                slug="wrong-device",
            )
        moment = now()
        if row.status in OPEN_STATUSES and moment > row.expires_at:
            # Recorded (the transaction commits), then refused below.
            _expire(row, moment)
            await audit(session, principal.account_id, "recovery.expired", None, row.id)
            result = None
        else:
            result = _answer(row, moment)
            row.status = "completed"
            row.finished_at = moment
            row.finished_by_device = principal.device_id
            row.sealed_answer = None
            await audit(
                session, principal.account_id, "recovery.completed", principal.device_id, row.id
            )
            subject, text = simple_mail("completed", row, moment)
            mails.add(await known_addresses(session, principal.account_id), subject, text)
    if result is None:
        raise _expired()
    notices.send(mails)
    state.notifier.changed(principal.account_id)
    return result


def _answer(row: Recovery, moment: datetime) -> RecoveryResult:
    """The sealed answer of a ready recovery, or the problem saying why there is none."""
    if row.status == "expired":
        raise _expired()
    if row.status not in OPEN_STATUSES:
        raise _not_open(row)
    if moment < row.not_before:
        wait = int((row.not_before - moment).total_seconds()) + 1
        raise ProblemError(
            409,
            "Too early",
            f"The recovery can complete in {wait} s unless cancelled.",
            slug="recovery-delay",
            headers={"Retry-After": str(wait)},
            extra={"not_before": row.not_before.isoformat()},
        )
    if row.status != "ready" or row.sealed_answer is None or row.answer_key_id is None:
        raise ProblemError(
            409,
            "Waiting for the escrow service",
            "The delay is over; the server's escrow service has not sealed the key for "
            f"this device yet. Ask again in {WAITING_RETRY_SECONDS} s.",
            slug="recovery-waiting",
            headers={"Retry-After": str(WAITING_RETRY_SECONDS)},
        )
    return RecoveryResult(
        recovery_id=row.id, key_id=row.answer_key_id, sealed_key=row.sealed_answer
    )

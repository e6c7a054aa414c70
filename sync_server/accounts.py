"""Accounts, devices and token bindings: who is calling, from which device.

An account is keyed by (issuer, subject). A device is registered on first use of its id
(``X-Hushchat-Device``), which is the thumbprint of the key its DPoP proofs are signed
with (checked by :mod:`sync_server.auth.dpop` before anything here runs); the row stores
that thumbprint (``jkt``) and refuses any other key. An OIDC access token is bound, by
hash, to the first device that presents it, so revoking a device makes its tokens useless
even under another device id; a revoked device (its key) can never be used again.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    String,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.auth.oidc import VerifiedToken
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.models import Account, AuditEvent, Device, LocalToken, Recovery, TokenBinding
from sync_server.prepared import Prepared
from sync_server.recoveries import (
    PendingMails,
    RecoveryNotices,
    known_addresses,
    lock_recovery,
    remember_address,
)

log = logging.getLogger(__name__)
LOCAL_ISSUER = "local"
_LAST_SEEN_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Credential:
    """A caller whose token, device headers and DPoP proof checked out, before any lookup.

    ``token`` is the verified OIDC token (``None`` for a local token). ``account_id`` is
    the account this credential belonged to when it was last resolved
    (:class:`AccountCache`); whether it is still valid is only known from the database.
    """

    via: Literal["oidc", "local"]
    token_hash: str
    device_id: str
    jkt: str
    device_name: str | None
    token: VerifiedToken | None = None
    account_id: str | None = None

    @property
    def cache_key(self) -> str:
        """What names the account: the local token, or the OIDC (issuer, subject)."""
        if self.token is None:
            return "local:" + self.token_hash
        return f"oidc:{self.token.issuer}\n{self.token.subject}"


class AccountCache:
    """Which account a credential named when it was last resolved (bounded, in memory).

    This is a routing hint, never a grant: a token's account cannot change, and every
    request that uses the hint checks the token, the device and its key in the database,
    in the same transaction as its work. The hint only lets the server count the per-user
    rate limit before that transaction. An entry that stops resolving is dropped.
    """

    def __init__(self, size: int = 65536) -> None:
        self._size = size
        self._accounts: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        """The account ``key`` named, if remembered."""
        return self._accounts.get(key)

    def put(self, key: str, account_id: str) -> None:
        """Remember that ``key`` names ``account_id`` (forgets everything when full)."""
        if len(self._accounts) >= self._size and key not in self._accounts:
            self._accounts.clear()
        self._accounts[key] = account_id

    def drop(self, key: str) -> None:
        """Forget ``key`` (its credential no longer resolves)."""
        self._accounts.pop(key, None)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    account_id: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    created_at: datetime
    device_id: str
    auth_time: datetime | None
    via: Literal["oidc", "local"]
    #: Whether the account had a pending or ready recovery when the credential was read
    #: (the per-request query answers it too); ``None`` when not known, so a pull asks.
    open_recoveries: bool | None = None


def now() -> datetime:
    """Current time, UTC (one place, so tests and code agree)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random 128-bit id as 32 hex characters."""
    return secrets.token_hex(16)


def unauthorized(detail: str) -> ProblemError:
    """401 problem with the Bearer challenge."""
    return ProblemError(
        401,
        "Unauthorized",
        detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def invalid_proof(detail: str) -> ProblemError:
    """401 for a missing or unacceptable DPoP proof (RFC 9449 §7.1 challenge)."""
    return ProblemError(
        401,
        "Unauthorized",
        detail,
        slug="invalid-dpop-proof",
        headers={
            "WWW-Authenticate": (
                f'DPoP error="invalid_dpop_proof", error_description="{detail}", algs="ES256"'
            )
        },
    )


def _other_key() -> ProblemError:
    return invalid_proof("This device id is bound to another key.")


def device_revoked() -> ProblemError:
    """403 for a revoked device: the client should forget its local sync state."""
    return ProblemError(
        403, "Device revoked", "This device was revoked; sign in again.", slug="device-revoked"
    )


async def audit(
    session: AsyncSession,
    account_id: str,
    event: str,
    device_id: str | None,
    detail: str | None = None,
) -> None:
    """Append an audit event (no secrets in ``detail``) and log it."""
    session.add(
        AuditEvent(
            account_id=account_id,
            event=event,
            device_id=device_id,
            detail=detail,
            created_at=now(),
        )
    )
    log.info("audit", extra={"event": event, "account": account_id, "device": device_id})


class _AccountFields(Protocol):
    """What a principal takes from an account: an ``Account`` or a row of its columns."""

    id: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    created_at: datetime


def _principal(
    account: _AccountFields,
    device_id: str,
    auth_time: datetime | None,
    via: Literal["oidc", "local"],
    open_recoveries: bool | None = None,
) -> Principal:
    """The caller, from its account (an ORM object or a row of the principal queries)."""
    return Principal(
        account_id=account.id,
        issuer=account.issuer,
        subject=account.subject,
        email=account.email,
        email_verified=account.email_verified,
        created_at=account.created_at,
        device_id=device_id,
        auth_time=auth_time,
        via=via,
        open_recoveries=open_recoveries,
    )


async def _ensure_device(
    session: AsyncSession, account_id: str, device_id: str, jkt: str, device_name: str | None
) -> None:
    device = await session.get(Device, (account_id, device_id))
    moment = now()
    if device is None:
        async with session.begin_nested():
            session.add(
                Device(
                    account_id=account_id,
                    id=device_id,
                    jkt=jkt,
                    name=device_name,
                    created_at=moment,
                    last_seen_at=moment,
                )
            )
        await audit(session, account_id, "device.registered", device_id)
        return
    if device.jkt is not None and device.jkt != jkt:
        raise _other_key()
    if device.revoked_at is not None:
        raise device_revoked()
    if device.jkt is None:
        device.jkt = jkt  # registered before DPoP: bound by its first proof
    if moment - device.last_seen_at > _LAST_SEEN_RESOLUTION:
        device.last_seen_at = moment
    if device_name and device.name != device_name:
        device.name = device_name


_accounts, _devices = Account.__table__, Device.__table__
_bindings, _local_tokens = TokenBinding.__table__, LocalToken.__table__
_recoveries = Recovery.__table__
#: A recovery still open (pending or ready). Literals, not an expanding list: one SQL
#: text, run on asyncpg directly too.
OPEN_RECOVERY_STATUS: ColumnElement[bool] = _recoveries.c.status.in_(
    (literal_column("'pending'"), literal_column("'ready'"))
)


def open_recovery(account_id: ColumnElement[str]) -> ColumnElement[bool]:
    """Whether the account ``account_id`` (a column, or a bound parameter) has an open
    recovery: a pull lists them, and asks only when this says so."""
    return exists().where(_recoveries.c.account_id == account_id, OPEN_RECOVERY_STATUS)


_OPEN_RECOVERY = open_recovery(_accounts.c.id).label("open_recoveries")
# The per-request lookups, built once with bound parameters. One round trip each: the
# account, this token's binding (OIDC) or row (local), this device, and whether a recovery
# is open.
_OIDC_PRINCIPAL = (
    select(
        _accounts,
        _bindings.c.device_id.label("bound_device"),
        _devices.c.name.label("device_name"),
        _devices.c.last_seen_at.label("device_last_seen"),
        _devices.c.revoked_at.label("device_revoked"),
        _devices.c.jkt.label("device_jkt"),
        _OPEN_RECOVERY,
    )
    .select_from(
        _accounts.outerjoin(_bindings, _bindings.c.token_hash == bindparam("token_hash")).outerjoin(
            _devices,
            (_devices.c.account_id == _accounts.c.id) & (_devices.c.id == bindparam("device_id")),
        )
    )
    .where(_accounts.c.issuer == bindparam("issuer"), _accounts.c.subject == bindparam("subject"))
)
_LOCAL_PRINCIPAL = (
    select(
        _accounts,
        _local_tokens.c.kind,
        _local_tokens.c.device_id.label("token_device"),
        _local_tokens.c.expires_at,
        _local_tokens.c.auth_time,
        _devices.c.name.label("device_name"),
        _devices.c.last_seen_at.label("device_last_seen"),
        _devices.c.revoked_at.label("device_revoked"),
        _devices.c.jkt.label("device_jkt"),
        _OPEN_RECOVERY,
    )
    .select_from(
        _local_tokens.join(_accounts, _accounts.c.id == _local_tokens.c.account_id).outerjoin(
            _devices,
            (_devices.c.account_id == _accounts.c.id) & (_devices.c.id == bindparam("device_id")),
        )
    )
    .where(_local_tokens.c.token_hash == bindparam("token_hash"))
)


_OIDC_PRINCIPAL_RUN = Prepared(_OIDC_PRINCIPAL)
_LOCAL_PRINCIPAL_RUN = Prepared(_LOCAL_PRINCIPAL)

# The same checks as conditions a statement can carry (PostgreSQL pulls put them in the
# page's statement: sync_server.records._changes_checked). True only where
# check_credential would return the caller's account without a write and without
# refusing; anything else (false) sends the request through check_credential, which
# says why. ``tests/integration/sync_server/test_fresh_credential.py`` holds the two to
# each other for every way a credential can fail.
_DEVICE_NAME = bindparam("device_name", type_=String)
_FRESH_DEVICE = (
    _accounts.c.id == bindparam("account_id"),
    _devices.c.account_id == _accounts.c.id,
    _devices.c.id == bindparam("device_id"),
    _devices.c.jkt == bindparam("jkt"),
    _devices.c.revoked_at.is_(None),
    _devices.c.last_seen_at >= bindparam("seen_after", type_=_devices.c.last_seen_at.type),
    or_(_DEVICE_NAME.is_(None), _devices.c.name == _DEVICE_NAME),
)
FRESH_LOCAL: ColumnElement[bool] = exists().where(
    _local_tokens.c.token_hash == bindparam("token_hash"),
    _local_tokens.c.kind == literal_column("'access'"),
    _local_tokens.c.expires_at > bindparam("now", type_=_local_tokens.c.expires_at.type),
    _local_tokens.c.device_id == bindparam("device_id"),
    _local_tokens.c.account_id == _accounts.c.id,
    *_FRESH_DEVICE,
)
FRESH_OIDC: ColumnElement[bool] = exists().where(
    _accounts.c.issuer == bindparam("issuer"),
    _accounts.c.subject == bindparam("subject"),
    _accounts.c.email.is_not_distinct_from(bindparam("email", type_=String)),
    _accounts.c.email_verified.is_not_distinct_from(bindparam("email_verified", type_=Boolean)),
    _bindings.c.token_hash == bindparam("token_hash"),
    # check_oidc finds the binding by its token alone; a binding is always made in the
    # token's own account, and one elsewhere would only be stricter here (no write, no
    # refusal: check_credential then decides).
    _bindings.c.account_id == _accounts.c.id,
    _bindings.c.device_id == bindparam("device_id"),
    *_FRESH_DEVICE,
)


def fresh_parameters(credential: Credential) -> dict[str, Any]:
    """The parameters of :data:`FRESH_LOCAL` or :data:`FRESH_OIDC` (by ``credential.token``)
    for ``credential``, whose ``account_id`` must be known."""
    moment = now()
    params: dict[str, Any] = {
        "account_id": credential.account_id,
        "token_hash": credential.token_hash,
        "device_id": credential.device_id,
        "jkt": credential.jkt,
        "seen_after": moment - _LAST_SEEN_RESOLUTION,
        "device_name": credential.device_name or None,  # "" asks nothing, as None
    }
    token = credential.token
    if token is None:
        params["now"] = moment
    else:
        params.update(
            token_hash=token.token_hash,  # what check_oidc reads
            issuer=token.issuer,
            subject=token.subject,
            email=token.email,
            email_verified=token.email_verified,
        )
    return params


def _one_or_none(connection: Connection, query: Prepared, parameters: dict[str, Any]) -> Any:
    return query.one_or_none(connection, parameters)


def check_oidc(
    connection: Connection,
    token: VerifiedToken,
    device_id: str,
    jkt: str,
    device_name: str | None,
) -> Principal | None:
    """The caller when its account, token binding and device need no write, else ``None``.

    One query (account, this token's binding and this device); raises the 401/403
    problems of a token bound to another device, another key or a revoked device.
    """
    row = _one_or_none(
        connection,
        _OIDC_PRINCIPAL_RUN,
        {
            "token_hash": token.token_hash,
            "device_id": device_id,
            "issuer": token.issuer,
            "subject": token.subject,
        },
    )
    if row is None:
        return None
    if row.bound_device is not None and row.bound_device != device_id:
        raise unauthorized("This token belongs to another device.")
    if row.device_jkt is not None and row.device_jkt != jkt:
        raise _other_key()
    if row.device_revoked is not None:
        raise device_revoked()
    fresh = (
        row.bound_device is not None
        and row.device_jkt is not None
        and row.email == token.email
        and row.email_verified == token.email_verified
        and row.device_last_seen is not None
        and now() - row.device_last_seen <= _LAST_SEEN_RESOLUTION
        and (not device_name or row.device_name == device_name)
    )
    if not fresh:
        return None
    return _principal(row, device_id, token.auth_time, "oidc", bool(row.open_recoveries))


def check_local(
    connection: Connection, hashed: str, device_id: str, jkt: str, device_name: str | None
) -> tuple[Principal, bool]:
    """The caller of a local access token, and whether its device row needs no write.

    One query; raises the 401/403 problems of an unknown, expired or foreign token, another
    key or a revoked device.
    """
    row = _one_or_none(
        connection, _LOCAL_PRINCIPAL_RUN, {"token_hash": hashed, "device_id": device_id}
    )
    if row is None or row.kind != "access" or row.expires_at <= now():
        raise unauthorized("Invalid or expired access token.")
    if row.token_device != device_id:
        raise unauthorized("This token belongs to another device.")
    if row.device_jkt is not None and row.device_jkt != jkt:
        raise _other_key()
    if row.device_revoked is not None:
        raise device_revoked()
    principal = _principal(row, device_id, row.auth_time, "local", bool(row.open_recoveries))
    fresh = (
        row.device_jkt is not None
        and row.device_last_seen is not None
        and now() - row.device_last_seen <= _LAST_SEEN_RESOLUTION
        and (not device_name or row.device_name == device_name)
    )
    return principal, fresh


def check_credential(connection: Connection, credential: Credential) -> Principal | None:
    """:func:`check_local` or :func:`check_oidc` inside a caller's transaction.

    ``None`` when resolving the credential needs a write (first use of a device or token,
    ``last_seen_at`` due, a new name or e-mail, an account that is gone): the caller then
    resolves it with :func:`resolve_local` / :func:`resolve_oidc` and tries again.
    """
    if credential.token is None:
        principal, fresh = check_local(
            connection,
            credential.token_hash,
            credential.device_id,
            credential.jkt,
            credential.device_name,
        )
        return principal if fresh else None
    return check_oidc(
        connection, credential.token, credential.device_id, credential.jkt, credential.device_name
    )


async def resolve_oidc(
    db: Database,
    token: VerifiedToken,
    device_id: str,
    jkt: str,
    device_name: str | None,
    notices: RecoveryNotices | None = None,
) -> Principal:
    """Find or create the account and device for a validated OIDC token.

    ``jkt`` is the thumbprint of the key whose DPoP proof came with the request. A
    verified address the account has not had before (an e-mail change at the issuer)
    locks recovery (:func:`sync_server.recoveries.lock_recovery`); ``notices`` mails
    every known address about it.
    """
    # One round trip on the hot path: account, this token's binding and this device.
    found = await db.run(check_oidc, token, device_id, jkt, device_name)
    if found is not None:
        return found
    delay = notices.settings.recovery_delay_seconds if notices is not None else 86400
    for attempt in range(2):
        mails = PendingMails()
        try:
            async with db.write() as session:
                account = await _upsert_oidc_account(session, token, mails, delay)
                binding = await session.get(TokenBinding, token.token_hash)
                if binding is None:
                    session.add(
                        TokenBinding(
                            token_hash=token.token_hash,
                            account_id=account.id,
                            device_id=device_id,
                            expires_at=token.expires_at,
                        )
                    )
                elif binding.device_id != device_id:
                    raise unauthorized("This token belongs to another device.")
                await _ensure_device(session, account.id, device_id, jkt, device_name)
                principal = _principal(account, device_id, token.auth_time, "oidc")
        except IntegrityError:
            # A concurrent first request created the same row; the retry finds it.
            if attempt:
                raise
        else:
            if notices is not None:
                notices.send(mails)
            return principal
    raise AssertionError("unreachable")


async def _upsert_oidc_account(
    session: AsyncSession, token: VerifiedToken, mails: PendingMails, delay_seconds: int
) -> Account:
    account = (
        await session.execute(
            select(Account).where(Account.issuer == token.issuer, Account.subject == token.subject)
        )
    ).scalar_one_or_none()
    if account is None:
        account = Account(
            id=new_id(),
            issuer=token.issuer,
            subject=token.subject,
            email=token.email,
            email_verified=token.email_verified,
            last_seq=0,
            created_at=now(),
        )
        async with session.begin_nested():
            session.add(account)
        await audit(session, account.id, "account.created", None)
        if token.email_verified and token.email:
            await remember_address(session, account.id, token.email, account.created_at)
        return account
    previous = account.email
    if account.email != token.email or account.email_verified != token.email_verified:
        account.email = token.email
        account.email_verified = token.email_verified
    if token.email_verified and token.email:
        known = await known_addresses(session, account.id)
        moment = now()
        if await remember_address(session, account.id, token.email, moment):
            earlier = set(known)
            if previous and previous.strip().lower() != token.email.strip().lower():
                earlier.add(previous.strip().lower())
            if earlier:
                await audit(session, account.id, "account.email_changed", None)
                await lock_recovery(
                    session,
                    account,
                    "email-changed",
                    moment,
                    delay_seconds,
                    mails,
                    explanation=(
                        "A new e-mail address was verified for your Hushchat sync account "
                        f"at {moment:%Y-%m-%d %H:%M} UTC; this notice goes to every address "
                        "the account has used."
                    ),
                )
    return account


async def resolve_local(
    db: Database, hashed: str, device_id: str, jkt: str, device_name: str | None
) -> Principal:
    """Resolve a local access token (by hash) bound to ``device_id`` (DPoP key ``jkt``)."""
    principal, fresh = await db.run(check_local, hashed, device_id, jkt, device_name)
    if not fresh:
        async with db.write() as session:
            await _ensure_device(session, principal.account_id, device_id, jkt, device_name)
    return principal

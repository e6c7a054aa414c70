"""Local e-mail/password accounts (off by default; for small installs).

* Passwords: Argon2id (argon2-cffi), hashed off the event loop in a pool of
  ``ARGON2_MAX_CONCURRENT`` threads, so a burst of sign-ins can take neither every core
  nor more than that many times ``ARGON2_MEMORY_KIB``; at most ``ARGON2_MAX_WAITING`` more
  wait, the rest get 503. Unknown e-mails are checked against a dummy hash so timing does not reveal
  which addresses exist.
* Failed sign-ins back off per e-mail address (:class:`~sync_server.ratelimit.SignInBackoff`),
  known and unknown addresses alike; a locked address gets 429 before any hashing.
* E-mail codes (verification, password reset): 256-bit random, single use, expiring,
  stored as SHA-256 hashes, sent by mail.
* Tokens: opaque ``hcl_…`` strings stored hashed; access tokens are short-lived; refresh
  tokens rotate on every use, and presenting a used refresh token revokes its whole family
  (theft detection). Tokens are bound to the device they were issued for.
* Sign-up and reset answer identically for known and unknown addresses.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.accounts import (
    LOCAL_ISSUER,
    audit,
    device_revoked,
    new_id,
    now,
    unauthorized,
)
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.mailer import Mailer
from sync_server.models import Account, Device, EmailToken, LocalToken, LocalUser
from sync_server.protocol import Accepted, TokenResponse
from sync_server.ratelimit import SignInBackoff
from sync_server.recoveries import (
    PendingMails,
    RecoveryNotices,
    lock_recovery,
    remember_address,
)
from sync_server.settings import Settings

_T = TypeVar("_T")

LOCAL_TOKEN_PREFIX = "hcl_"  # noqa: S105 - a prefix, not a secret
ACCEPTED_SIGNUP = Accepted(detail="If the address can be used, a verification code is on its way.")
ACCEPTED_RESET = Accepted(detail="If an account uses this address, a reset code is on its way.")


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _new_token() -> str:
    return LOCAL_TOKEN_PREFIX + secrets.token_urlsafe(32)


def normalize_email(raw: str) -> str:
    """Validate and normalise an address (no DNS lookups); 422 problem when invalid."""
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ProblemError(422, "Invalid e-mail address", str(exc), slug="invalid-email") from exc


class HashPool:
    """Runs Argon2 computations on at most ``size`` threads, with at most ``max_waiting``
    more queued; beyond that :meth:`run` answers 503 instead of queueing without bound.

    A dedicated pool (rather than a semaphore around ``asyncio.to_thread``) keeps the bound
    exact even when a waiting request is cancelled: a computation that has started runs to
    its end on one of the ``size`` threads, a queued one is dropped.
    """

    def __init__(self, size: int, max_waiting: int) -> None:
        self.size = size
        self._max_pending = size + max_waiting
        self._pending = 0
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="argon2")

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on a pool thread."""
        if self._pending >= self._max_pending:
            raise ProblemError(
                503,
                "Server busy",
                "Too many sign-ins are being checked at once; try again in a moment.",
                slug="busy",
                headers={"Retry-After": "1"},
            )
        self._pending += 1
        try:
            return await asyncio.wrap_future(self._executor.submit(function, *args))
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Drop queued computations; running ones finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class LocalAccounts:
    """Sign-up, verification, sign-in, refresh and password reset."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        mailer: Mailer,
        backoff: SignInBackoff | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._mailer = mailer
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self.hashing = HashPool(settings.argon2_max_concurrent, settings.argon2_max_waiting)
        self._backoff = backoff
        self._dummy_hash: str | None = None

    def close(self) -> None:
        """Stop the hashing threads (queued work is dropped)."""
        self.hashing.close()

    async def _hash_password(self, password: str) -> str:
        return await self.hashing.run(self._hasher.hash, password)

    async def _verify_password(self, stored: str, password: str) -> bool:
        try:
            return await self.hashing.run(self._hasher.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _check_password(self, password: str) -> None:
        if len(password) < self._settings.password_min_length:
            raise ProblemError(
                422,
                "Password too short",
                f"Use at least {self._settings.password_min_length} characters.",
                slug="weak-password",
            )

    def _mail_code(self, to: str, purpose: str, code: str) -> None:
        where = self._settings.public_url or "your Hushchat sync server"
        hours = self._settings.email_token_ttl_seconds // 3600
        texts = {
            "verify": (
                "Confirm your Hushchat sync account",
                f"Enter this code in Hushchat to confirm your address for {where}:\n\n"
                f"{code}\n\nIt expires in {hours} h. If you did not sign up, ignore this mail.",
            ),
            "reset": (
                "Reset your Hushchat sync password",
                f"Enter this code in Hushchat to choose a new password for {where}:\n\n"
                f"{code}\n\nIt expires in {hours} h. If you did not ask, ignore this mail.",
            ),
            "exists": (
                "Hushchat sync sign-up attempt",
                f"Someone tried to sign up at {where} with this address, which already has "
                "an account. If it was you, sign in or reset your password.",
            ),
        }
        subject, body = texts[purpose]
        self._mailer.send_later(to, subject, body, purpose=purpose)

    async def _issue_code(self, session: AsyncSession, user_id: str, purpose: str) -> str:
        code = secrets.token_urlsafe(32)
        session.add(
            EmailToken(
                token_hash=_hash(code),
                local_user_id=user_id,
                purpose=purpose,
                expires_at=now() + timedelta(seconds=self._settings.email_token_ttl_seconds),
            )
        )
        return code

    async def signup(self, email: str, password: str) -> Accepted:
        """Create an unverified user and mail a code; same answer for known addresses."""
        address = normalize_email(email)
        self._check_password(password)
        password_hash = await self._hash_password(password)
        async with self._db.write() as session:
            existing = (
                await session.execute(select(LocalUser).where(LocalUser.email == address))
            ).scalar_one_or_none()
            if existing is not None:
                self._mail_code(address, "exists", "")
                return ACCEPTED_SIGNUP
            user = LocalUser(
                id=new_id(), email=address, password_hash=password_hash, created_at=now()
            )
            session.add(user)
            await session.flush()
            code = await self._issue_code(session, user.id, "verify")
        self._mail_code(address, "verify", code)
        return ACCEPTED_SIGNUP

    async def _consume_code(self, session: AsyncSession, code: str, purpose: str) -> LocalUser:
        row = await session.get(EmailToken, _hash(code))
        moment = now()
        if row is None or row.purpose != purpose or row.used_at or row.expires_at <= moment:
            raise ProblemError(
                400, "Invalid code", "The code is wrong, used or expired.", slug="invalid-code"
            )
        row.used_at = moment
        user = await session.get(LocalUser, row.local_user_id)
        assert user is not None  # FK with ON DELETE CASCADE
        return user

    async def _activate(self, session: AsyncSession, user: LocalUser) -> None:
        moment = now()
        if user.verified_at is None:
            user.verified_at = moment
        if user.account_id is None:
            account = Account(
                id=new_id(),
                issuer=LOCAL_ISSUER,
                subject=user.id,
                email=user.email,
                email_verified=True,
                last_seq=0,
                created_at=moment,
            )
            session.add(account)
            await session.flush()
            user.account_id = account.id
            await audit(session, account.id, "account.created", None, "local")
        assert user.account_id is not None
        await remember_address(session, user.account_id, user.email, moment)

    async def verify_email(self, code: str) -> Accepted:
        """Redeem a verification code; the account exists from now on."""
        async with self._db.write() as session:
            user = await self._consume_code(session, code, "verify")
            await self._activate(session, user)
        return Accepted(detail="E-mail address verified; you can sign in now.")

    async def sign_in(self, email: str, password: str, device_id: str) -> TokenResponse:
        """Password sign-in for one device; one answer for every kind of failure."""
        failure = unauthorized("Wrong e-mail or password, or the address is not verified.")
        try:
            address = normalize_email(email)
        except ProblemError as exc:
            raise failure from exc
        if self._backoff is not None:
            await self._backoff.refuse_if_locked(address)
        async with self._db.read() as session:
            user = (
                await session.execute(select(LocalUser).where(LocalUser.email == address))
            ).scalar_one_or_none()
        if user is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash_password(secrets.token_hex(16))
            await self._verify_password(self._dummy_hash, password)
            await self._failed(address)
            raise failure
        correct = await self._verify_password(user.password_hash, password)
        if not correct or user.verified_at is None or user.account_id is None:
            await self._failed(address)
            raise failure
        if self._backoff is not None:
            await self._backoff.succeeded(address)
        if self._hasher.check_needs_rehash(user.password_hash):
            new_hash = await self._hash_password(password)
        else:
            new_hash = None
        async with self._db.write() as session:
            if new_hash is not None:
                stored = await session.get(LocalUser, user.id)
                if stored is not None:
                    stored.password_hash = new_hash
            device = await session.get(Device, (user.account_id, device_id))
            moment = now()
            if device is None:
                try:
                    async with session.begin_nested():
                        session.add(
                            Device(
                                account_id=user.account_id,
                                id=device_id,
                                created_at=moment,
                                last_seen_at=moment,
                            )
                        )
                except IntegrityError:
                    # A concurrent sign-in of the same device registered it first.
                    device = await session.get(Device, (user.account_id, device_id))
                else:
                    await audit(session, user.account_id, "device.registered", device_id)
            if device is not None and device.revoked_at is not None:
                raise device_revoked()
            await audit(session, user.account_id, "account.signed_in", device_id)
            return await self._issue_pair(session, user.account_id, device_id, moment, new_id())

    async def _failed(self, address: str) -> None:
        if self._backoff is not None:
            await self._backoff.failed(address)

    async def _issue_pair(
        self,
        session: AsyncSession,
        account_id: str,
        device_id: str,
        auth_time: datetime,
        family_id: str,
    ) -> TokenResponse:
        moment = now()
        access, refresh = _new_token(), _new_token()
        settings = self._settings
        for token, kind, ttl in (
            (access, "access", settings.access_token_ttl_seconds),
            (refresh, "refresh", settings.refresh_token_ttl_seconds),
        ):
            session.add(
                LocalToken(
                    token_hash=_hash(token),
                    account_id=account_id,
                    device_id=device_id,
                    kind=kind,
                    family_id=family_id,
                    auth_time=auth_time,
                    expires_at=moment + timedelta(seconds=ttl),
                )
            )
        return TokenResponse(
            access_token=access,
            expires_in=settings.access_token_ttl_seconds,
            refresh_token=refresh,
        )

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """Rotate a refresh token; a reused one revokes its family."""
        failure = unauthorized("Invalid or expired refresh token.")
        async with self._db.write() as session:
            row = await session.get(LocalToken, _hash(refresh_token))
            moment = now()
            if row is None or row.kind != "refresh" or row.expires_at <= moment:
                raise failure
            if row.used_at is not None:
                await session.execute(
                    delete(LocalToken).where(LocalToken.family_id == row.family_id)
                )
                await audit(session, row.account_id, "token.reuse_detected", row.device_id)
                reuse = True
            else:
                reuse = False
                device = await session.get(Device, (row.account_id, row.device_id))
                if device is None or device.revoked_at is not None:
                    raise device_revoked()
                row.used_at = moment
                return await self._issue_pair(
                    session, row.account_id, row.device_id, row.auth_time, row.family_id
                )
        if reuse:
            raise failure
        raise AssertionError("unreachable")

    async def request_reset(self, email: str) -> Accepted:
        """Mail a reset code if the address has an account; same answer either way."""
        address = normalize_email(email)
        code = None
        async with self._db.write() as session:
            user = (
                await session.execute(select(LocalUser).where(LocalUser.email == address))
            ).scalar_one_or_none()
            if user is not None:
                code = await self._issue_code(session, user.id, "reset")
        if code is not None:
            self._mail_code(address, "reset", code)
        return ACCEPTED_RESET

    async def confirm_reset(self, code: str, password: str) -> Accepted:
        """Set a new password with a reset code; signs out every device's local tokens.

        The devices signed out could no longer cancel a recovery started by whoever reset
        the password, so a reset also cancels open recoveries, blocks new ones for
        ``RECOVERY_DELAY_SECONDS`` and tells every known address.
        """
        self._check_password(password)
        password_hash = await self._hash_password(password)
        mails = PendingMails()
        async with self._db.write() as session:
            user = await self._consume_code(session, code, "reset")
            user.password_hash = password_hash
            await self._activate(session, user)
            assert user.account_id is not None
            await session.execute(
                delete(LocalToken).where(LocalToken.account_id == user.account_id)
            )
            await audit(session, user.account_id, "account.password_reset", None)
            account = await session.get(Account, user.account_id)
            assert account is not None  # FK with ON DELETE CASCADE
            moment = now()
            await lock_recovery(
                session,
                account,
                "password-reset",
                moment,
                self._settings.recovery_delay_seconds,
                mails,
                explanation=(
                    "The password of your Hushchat sync account was reset at "
                    f"{moment:%Y-%m-%d %H:%M} UTC and every device was signed out."
                ),
            )
        RecoveryNotices(self._mailer, self._settings).send(mails)
        return Accepted(detail="Password changed; sign in again on every device.")

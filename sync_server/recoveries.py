"""What escrow recovery shares between the request path, sign-in and the escrow command.

* Every verified address ever seen for an account is remembered (``account_emails``);
  recovery notices go to each of them, so changing the address at the identity provider
  does not silence the old one.
* A new verified address (an e-mail change) or a local password reset *locks* recovery:
  pending and ready recoveries are cancelled, new ones are refused for
  ``RECOVERY_DELAY_SECONDS`` and every known address is told.
* Mails are composed here; :class:`RecoveryNotices` sends them after the transaction
  that caused them has committed (never the recovery's secrets, only ids and times).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sync_server.mailer import Mailer
from sync_server.models import Account, AccountEmail, AuditEvent, Recovery
from sync_server.settings import Settings

log = logging.getLogger(__name__)

#: Statuses a recovery can still move on from (the ones devices are shown).
OPEN_STATUSES = ("pending", "ready")
CANCEL_PATH = "/recovery/cancel"


def hash_token(token: str) -> str:
    """SHA-256 hex of a cancel-link token (only the hash is stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_cancel_token() -> tuple[str, str]:
    """A fresh 256-bit cancel-link token and its hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _normalise(address: str) -> str:
    return address.strip().lower()


async def known_addresses(session: AsyncSession, account_id: str) -> list[str]:
    """Every verified address ever seen for the account, oldest first."""
    rows = await session.execute(
        select(AccountEmail.email)
        .where(AccountEmail.account_id == account_id)
        .order_by(AccountEmail.first_seen_at, AccountEmail.email)
    )
    return list(rows.scalars())


async def remember_address(
    session: AsyncSession, account_id: str, address: str, moment: datetime
) -> bool:
    """Record a verified address; True when it was not known before."""
    address = _normalise(address)
    if not address:
        return False
    if await session.get(AccountEmail, (account_id, address)) is not None:
        return False
    async with session.begin_nested():
        session.add(AccountEmail(account_id=account_id, email=address, first_seen_at=moment))
    return True


@dataclass
class Mail:
    """One notice to every address in ``to`` (sent separately to each)."""

    to: list[str]
    subject: str
    body: str


@dataclass
class PendingMails:
    """Mails to send once the transaction that caused them has committed."""

    mails: list[Mail] = field(default_factory=list)

    def add(self, to: list[str], subject: str, body: str) -> None:
        """Queue one notice."""
        if to:
            self.mails.append(Mail(sorted(set(to)), subject, body))


class RecoveryNotices:
    """Sends recovery notices through the mailer, to every known address separately."""

    def __init__(self, mailer: Mailer, settings: Settings) -> None:
        self.mailer = mailer
        self.settings = settings

    def send(self, pending: PendingMails) -> None:
        """Queue every mail of ``pending`` (addresses are never logged)."""
        for mail in pending.mails:
            for address in mail.to:
                self.mailer.send_later(address, mail.subject, mail.body, purpose="recovery")

    def cancel_link(self, token: str) -> str | None:
        """``{PUBLIC_URL}/recovery/cancel?token=…``, or None without PUBLIC_URL."""
        base = self.settings.public_url
        if not base:
            return None
        return f"{base.rstrip('/')}{CANCEL_PATH}?token={token}"


def started_mail(recovery: Recovery, cancel_link: str | None) -> tuple[str, str]:
    """Subject and body of the "recovery started" notice.

    The device is named by its id only: its display name is chosen by whoever started
    the recovery and has no place in a security notice.
    """
    lines = [
        f"A device, {recovery.device_id}, started recovering the key of your Standard "
        f"synced chats at {_when(recovery.created_at)}.",
        f"Unless it is cancelled it can complete after {_when(recovery.not_before)}.",
        "",
        "If this was not you, cancel it now:",
    ]
    if cancel_link:
        lines.append(f"  {cancel_link}")
        lines.append("  (the page asks you to confirm; the link works once)")
        lines.append("or cancel it in Hushchat on any other signed-in device.")
    else:
        lines.append("cancel it in Hushchat on any other signed-in device.")
    lines += [
        "",
        "Then change your password at your sign-in provider: whoever started this could "
        "sign in as you.",
    ]
    return "Hushchat: recovery of your Standard chats started", "\n".join(lines)


def simple_mail(event: str, recovery: Recovery, moment: datetime) -> tuple[str, str]:
    """Subject and body of the approve/ready/cancel/complete/expire notices."""
    who = recovery.device_id
    texts = {
        "approved": (
            "Hushchat: recovery approved",
            f"The recovery started by device {who} was approved by device "
            f"{recovery.approved_by_device} at {_when(moment)}: it can complete now.",
        ),
        "ready": (
            "Hushchat: recovery ready",
            f"The recovery started by device {who} can be completed now ({_when(moment)}). "
            "If this was not you, cancel it at once from another signed-in device.",
        ),
        "cancelled": (
            "Hushchat: recovery cancelled",
            f"The recovery started by device {who} was cancelled at {_when(moment)}.",
        ),
        "completed": (
            "Hushchat: recovery completed",
            f"Device {who} recovered the key of your Standard synced chats at {_when(moment)}.",
        ),
        "failed": (
            "Hushchat: recovery failed",
            f"The recovery started by device {who} could not be completed: the escrowed key "
            "could not be opened (the server's escrow key was replaced?). Escrow the key "
            "again from a device that still has it.",
        ),
    }
    return texts[event]


async def cancel_open(
    session: AsyncSession,
    account_id: str,
    moment: datetime,
    reason: str,
    *,
    by_device: str | None = None,
    only_device: str | None = None,
) -> list[str]:
    """Cancel the account's pending and ready recoveries (their answers are wiped)."""
    where = [Recovery.account_id == account_id, Recovery.status.in_(OPEN_STATUSES)]
    if only_device is not None:
        where.append(Recovery.device_id == only_device)
    ids = list((await session.execute(select(Recovery.id).where(*where))).scalars())
    if ids:
        result = await session.execute(
            update(Recovery)
            .where(Recovery.id.in_(ids), Recovery.status.in_(OPEN_STATUSES))
            .values(
                status="cancelled",
                finished_at=moment,
                finished_by_device=by_device,
                cancel_reason=reason,
                sealed_answer=None,
            )
        )
        assert isinstance(result, CursorResult)
    return ids


async def lock_recovery(
    session: AsyncSession,
    account: Account,
    reason: str,
    moment: datetime,
    delay_seconds: int,
    mails: PendingMails,
    *,
    explanation: str,
) -> None:
    """Cancel open recoveries, block new ones for ``delay_seconds``, tell every address.

    ``reason`` is ``email-changed`` or ``password-reset``; ``explanation`` the sentence
    that starts the mail.
    """
    cancelled = await cancel_open(session, account.id, moment, reason)
    until = moment + timedelta(seconds=delay_seconds)
    if account.recovery_blocked_until is None or account.recovery_blocked_until < until:
        account.recovery_blocked_until = until
    session.add(
        AuditEvent(
            account_id=account.id,
            event="recovery.blocked",
            device_id=None,
            detail=f"{reason}; cancelled {len(cancelled)}",
            created_at=moment,
        )
    )
    log.info(
        "recovery_locked",
        extra={"account": account.id, "reason": reason, "cancelled": cancelled},
    )
    addresses = await known_addresses(session, account.id)
    lines = [explanation, ""]
    if cancelled:
        lines.append(f"{len(cancelled)} recovery request(s) in progress were cancelled.")
    lines.append(f"No key recovery can start before {_when(until)}.")
    lines.append(
        "If this was not you, secure the account at your sign-in provider and review your "
        "devices in Hushchat."
    )
    mails.add(addresses, "Hushchat: account security change", "\n".join(lines))

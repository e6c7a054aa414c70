"""``hushchat-sync escrow process``: the only code that opens escrowed keys.

The HTTP server holds the escrow *public* key only. This command holds the wrapped escrow
private key and its KEK (``ESCROW_PRIVATE_KEY`` / ``ESCROW_KEK`` or ``--key-file``), and in
each pass:

1. marks pending and ready recoveries past ``expires_at`` ``expired`` (answers wiped);
2. for each pending recovery past ``not_before`` (at most ``BATCH`` per transaction
   round), opens the account's escrow (associated data ``escrow_aad``), seals the key to
   the recovery's device key (``recovery_aad``), stores that answer in the row and sets
   it ``ready``; every address of the account is told. An escrow that does not open
   cancels its recovery (``escrow-unreadable``) and says so.

Logs carry ids only, never keys. Run it from a timer (``--once``) or as a service
(``--interval``); SIGTERM/SIGINT end the loop between passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from sync_server.accounts import audit, now
from sync_server.db import Database
from sync_server.errors import ConfigError
from sync_server.mailer import Mailer
from sync_server.models import Escrow, Recovery
from sync_server.recoveries import (
    OPEN_STATUSES,
    PendingMails,
    RecoveryNotices,
    known_addresses,
    simple_mail,
)
from sync_server.sealing import (
    EscrowKeyPair,
    EscrowPublicKey,
    SealingError,
    escrow_aad,
    open_sealed,
    parse_public_key,
    public_key_from_bytes,
    recovery_aad,
    seal,
    unwrap_private_key,
)
from sync_server.settings import Settings

log = logging.getLogger(__name__)

#: Recoveries sealed per round of one pass (a pass runs rounds until none is due).
BATCH = 100


@dataclass
class PassResult:
    """What one pass did (ids only)."""

    sealed: list[str]
    failed: list[str]
    expired: list[str]


def serve_escrow_key(settings: Settings) -> EscrowPublicKey:
    """The escrow public key ``serve`` publishes: ``ESCROW_PUBLIC_KEY``, or (older set-ups
    without it) derived once at start-up from the wrapped private key, which is then
    dropped — the request path never holds it."""
    if settings.escrow_public_key is not None:
        return parse_public_key(settings.escrow_public_key)
    if settings.escrow_private_key is None or settings.escrow_kek is None:
        raise ConfigError(
            "HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY is not set (run `hushchat-sync gen-keys`)."
        )
    pair = unwrap_private_key(settings.escrow_private_key.get_secret_value(), settings.kek_bytes())
    return pair.public


def load_escrow_keys(settings: Settings, key_file: Path | None = None) -> EscrowKeyPair:
    """The unwrapped escrow key pair for the escrow command; :class:`ConfigError` naming
    what is missing or wrong."""
    if key_file is not None:
        try:
            wrapped = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--key-file {key_file} cannot be read: {exc.strerror}") from exc
        settings = settings.model_copy(update={"escrow_private_key": SecretStr(wrapped)})
    problems = settings.escrow_process_problems()
    if problems:
        raise ConfigError("Cannot open escrows: " + " ".join(problems))
    assert settings.escrow_private_key is not None
    pair = unwrap_private_key(settings.escrow_private_key.get_secret_value(), settings.kek_bytes())
    configured = settings.escrow_public_key
    if configured is not None and parse_public_key(configured).key_id != pair.key_id:
        raise ConfigError(
            "HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY does not belong to the escrow private key: "
            "clients would seal to a key this command cannot open. Set it to the value "
            "`hushchat-sync escrow public-key` prints."
        )
    return pair


async def _expire(db: Database) -> list[str]:
    moment = now()
    async with db.write() as session:
        rows = (
            await session.execute(
                select(Recovery.id, Recovery.account_id).where(
                    Recovery.status.in_(OPEN_STATUSES), Recovery.expires_at < moment
                )
            )
        ).all()
        if rows:
            await session.execute(
                update(Recovery)
                .where(
                    Recovery.id.in_([row.id for row in rows]),
                    Recovery.status.in_(OPEN_STATUSES),
                )
                .values(status="expired", finished_at=moment, sealed_answer=None)
            )
            for row in rows:
                await audit(session, row.account_id, "recovery.expired", None, row.id)
    return [row.id for row in rows]


async def _due(db: Database, limit: int) -> list[str]:
    moment = now()
    async with db.read() as session:
        ids = await session.execute(
            select(Recovery.id)
            .where(
                Recovery.status == "pending",
                Recovery.not_before <= moment,
                Recovery.expires_at >= moment,
            )
            .order_by(Recovery.not_before)
            .limit(limit)
        )
        return list(ids.scalars())


async def _seal_one(
    db: Database, keys: EscrowKeyPair, recovery_id: str, mails: PendingMails
) -> bool | None:
    """Seal one recovery's answer: True sealed, False failed, None no longer due."""
    async with db.write() as session:
        # Locked (PostgreSQL; SQLite writers are serialised anyway), so two escrow passes
        # or a concurrent cancel cannot interleave with this one.
        row = await session.get(Recovery, recovery_id, with_for_update=True)
        moment = now()
        if row is None or row.status != "pending" or row.not_before > moment:
            return None  # cancelled or changed since it was listed
        escrow = await session.get(Escrow, row.account_id)
        try:
            if escrow is None:
                raise SealingError("nothing escrowed")
            key = open_sealed(
                keys.private_key, escrow.sealed_key, escrow_aad(row.account_id, escrow.key_id)
            )
            answer = seal(
                public_key_from_bytes(row.device_public_key),
                key,
                recovery_aad(row.account_id, row.id),
            )
        except SealingError as exc:
            row.status = "cancelled"
            row.finished_at = moment
            row.cancel_reason = "escrow-unreadable"
            await audit(session, row.account_id, "recovery.failed", None, row.id)
            log.error(
                "escrow_unreadable",
                extra={
                    "recovery": row.id,
                    "account": row.account_id,
                    "server_key_id": escrow.server_key_id if escrow else None,
                    "current_key_id": keys.key_id,
                    "error": str(exc),
                },
            )
            subject, text = simple_mail("failed", row, moment)
            mails.add(await known_addresses(session, row.account_id), subject, text)
            return False
        row.status = "ready"
        row.ready_at = moment
        row.sealed_answer = answer
        row.answer_key_id = escrow.key_id
        await audit(session, row.account_id, "recovery.ready", None, row.id)
        subject, text = simple_mail("ready", row, moment)
        mails.add(await known_addresses(session, row.account_id), subject, text)
    log.info("escrow_sealed", extra={"recovery": recovery_id, "account": row.account_id})
    return True


async def process_once(
    db: Database, keys: EscrowKeyPair, notices: RecoveryNotices | None = None
) -> PassResult:
    """One pass: expire, then seal every due recovery (in rounds of ``BATCH``)."""
    result = PassResult(sealed=[], failed=[], expired=await _expire(db))
    seen: set[str] = set()
    while True:
        due = [recovery for recovery in await _due(db, BATCH) if recovery not in seen]
        if not due:
            break
        for recovery_id in due:
            seen.add(recovery_id)
            mails = PendingMails()
            outcome = await _seal_one(db, keys, recovery_id, mails)
            if outcome is True:
                result.sealed.append(recovery_id)
            elif outcome is False:
                result.failed.append(recovery_id)
            if notices is not None:
                notices.send(mails)
    return result


async def run_in_server(
    db: Database, keys: EscrowKeyPair, notices: RecoveryNotices, interval: float
) -> None:
    """Escrow passes inside ``serve`` for older set-ups that give it the private key (a
    background task, never the request path), every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            outcome = await process_once(db, keys, notices)
        except SQLAlchemyError:
            log.exception("escrow_pass_failed")
        else:
            if outcome.sealed or outcome.failed or outcome.expired:
                log.info(
                    "escrow_pass_done",
                    extra={
                        "sealed": len(outcome.sealed),
                        "failed": len(outcome.failed),
                        "expired": len(outcome.expired),
                    },
                )


async def run(settings: Settings, keys: EscrowKeyPair, *, once: bool, interval: float) -> int:
    """``escrow process``: one pass (``once``) or a pass every ``interval`` seconds until
    SIGTERM/SIGINT. Returns the exit code."""
    db = Database(settings)
    mailer = Mailer(settings)
    notices = RecoveryNotices(mailer, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(number, stop.set)
            installed.append(number)
    try:
        await db.ensure_migrated()
        log.info("escrow_process_started", extra={"key_id": keys.key_id, "once": once})
        while not stop.is_set():
            try:
                outcome = await process_once(db, keys, notices)
            except SQLAlchemyError:
                log.exception("escrow_pass_failed")
                if once:
                    return 1
            else:
                log.info(
                    "escrow_pass_done",
                    extra={
                        "sealed": len(outcome.sealed),
                        "failed": len(outcome.failed),
                        "expired": len(outcome.expired),
                    },
                )
            await mailer.drain()
            if once:
                return 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
        log.info("escrow_process_stopped")
        return 0
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
        await mailer.drain()
        await db.close()

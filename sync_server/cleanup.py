"""Periodic clean-up of expired tokens, codes, CAPTCHA challenges and stale sign-ups."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import SQLAlchemyError

from sync_server.accounts import now
from sync_server.db import Database
from sync_server.models import (
    EmailToken,
    LocalToken,
    LocalUser,
    Recovery,
    TokenBinding,
    UsedChallenge,
)

log = logging.getLogger(__name__)


async def cleanup_once(db: Database, unverified_ttl_seconds: int) -> dict[str, int]:
    """Delete everything expired; returns how many rows of each kind went."""
    moment = now()
    removed: dict[str, int] = {}
    async with db.write() as session:
        statements = {
            "token_bindings": delete(TokenBinding).where(TokenBinding.expires_at < moment),
            "local_tokens": delete(LocalToken).where(LocalToken.expires_at < moment),
            "email_tokens": delete(EmailToken).where(EmailToken.expires_at < moment),
            "used_challenges": delete(UsedChallenge).where(UsedChallenge.expires_at < moment),
            "unverified_users": delete(LocalUser).where(
                LocalUser.verified_at.is_(None),
                LocalUser.created_at < moment - timedelta(seconds=unverified_ttl_seconds),
            ),
            "expired_recoveries": update(Recovery)
            .where(Recovery.status.in_(("pending", "ready")), Recovery.expires_at < moment)
            .values(status="expired", finished_at=moment, sealed_answer=None),
        }
        for name, statement in statements.items():
            result = await session.execute(statement)
            assert isinstance(result, CursorResult)
            removed[name] = result.rowcount or 0
    return removed


async def run_periodically(db: Database, interval: float, unverified_ttl_seconds: int) -> None:
    """Run :func:`cleanup_once` every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await cleanup_once(db, unverified_ttl_seconds)
        except SQLAlchemyError as exc:
            log.error("cleanup_failed", extra={"error": type(exc).__name__})
        else:
            log.info("cleanup_done", extra=removed)

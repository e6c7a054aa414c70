"""Migration 0003 on a database with accounts: verified addresses become known addresses,
and the revision downgrades and upgrades again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, text

from sync_server.db import Database, alembic_config
from tests.integration.sync_server.support import make_settings


def _to(revision: str, *, down: bool = False) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)

    return run


def _seed(connection: Connection) -> None:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    for account_id, email, verified in (
        ("a" * 32, "verified@example.org", True),
        ("b" * 32, "unverified@example.org", False),
        ("c" * 32, None, False),
    ):
        connection.execute(
            text(
                "INSERT INTO accounts (id, issuer, subject, email, email_verified, last_seq, "
                "created_at) VALUES (:id, 'iss', :id, :email, :verified, 0, :created)"
            ),
            {"id": account_id, "email": email, "verified": verified, "created": moment},
        )


def _known(connection: Connection) -> list[tuple[str, str]]:
    rows = connection.execute(text("SELECT account_id, email FROM account_emails ORDER BY 1"))
    return [(row[0], row[1]) for row in rows]


async def test_migration_remembers_verified_addresses(
    tmp_path: Path, database_url: str | None
) -> None:
    db = Database(make_settings(tmp_path, database_url))
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(_to("0002"))
            await connection.run_sync(_seed)
            await connection.run_sync(_to("0003"))
            assert await connection.run_sync(_known) == [("a" * 32, "verified@example.org")]
            await connection.run_sync(_to("0002", down=True))
            await connection.run_sync(_to("head"))
        await db.ensure_migrated()
    finally:
        await db.close()

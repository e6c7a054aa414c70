"""Migrations build exactly the ORM schema, from a blank database; boundaries hold."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from sync_server.db import Database, head_revision
from sync_server.models import Base
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_models(tmp_path: Path) -> None:
    settings = Settings(
        **{name.lower(): value for name, value in generate_secrets().items()},
        data_dir=tmp_path,
    )
    db = Database(settings)
    try:
        await db.migrate()
        await db.ensure_migrated()
        async with db.engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
        await db.migrate()  # idempotent
    finally:
        await db.close()
    assert head_revision() == "0004"


async def test_unmigrated_database_is_refused(tmp_path: Path) -> None:
    import pytest

    from sync_server.errors import DatabaseNotMigratedError

    settings = Settings(
        **{name.lower(): value for name, value in generate_secrets().items()},
        data_dir=tmp_path,
        auto_migrate=False,
    )
    db = Database(settings)
    try:
        with pytest.raises(DatabaseNotMigratedError, match="hushchat-sync migrate"):
            await db.ensure_migrated()
    finally:
        await db.close()


def test_sync_server_never_imports_app() -> None:
    code = (
        "import sys, sync_server.app, sync_server.cli;"
        "bad = [m for m in sys.modules if m == 'app' or m.startswith(('app.', 'PySide6'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alembic_files_ship_in_the_package() -> None:
    package = Path(__file__).parents[3] / "sync_server"
    assert (package / "alembic.ini").is_file()
    assert (package / "migrations" / "env.py").is_file()
    assert list((package / "migrations" / "versions").glob("0001_*.py"))


def _migrate(connection: Connection, revision: str, *, down: bool = False) -> None:
    from alembic import command

    from sync_server.db import alembic_config

    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


async def test_0002_keeps_devices_registered_before_it(tmp_path: Path) -> None:
    from sqlalchemy import text

    settings = Settings(
        **{name.lower(): value for name, value in generate_secrets().items()},
        data_dir=tmp_path,
    )
    db = Database(settings)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(_migrate, "0001")
            await connection.execute(
                text(
                    "INSERT INTO accounts (id, issuer, subject, email_verified, last_seq, "
                    "created_at) VALUES ('a', 'local', 'u', 0, 0, '2026-11-01 00:00:00')"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO devices (account_id, id, created_at, last_seen_at) "
                    "VALUES ('a', 'old-device-1', '2026-11-01 00:00:00', '2026-11-01 00:00:00')"
                )
            )
            await connection.run_sync(_migrate, "0002")
            row = (await connection.execute(text("SELECT id, jkt FROM devices"))).one()
            assert tuple(row) == ("old-device-1", None)  # bound by its first proof
            await connection.run_sync(functools.partial(_migrate, down=True), "0001")  # back
            assert (await connection.execute(text("SELECT id FROM devices"))).scalar_one()
    finally:
        await db.close()

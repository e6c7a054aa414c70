"""Database engine, sessions and schema migrations (SQLAlchemy 2 async + Alembic).

SQLite (default) runs in WAL mode with foreign keys on; because SQLite has one writer, write
transactions in this process take an asyncio lock (:meth:`Database.write`) instead of
spinning on SQLITE_BUSY. PostgreSQL needs no lock: pushes serialise per account on the
account row (``SELECT … FOR UPDATE``), which also keeps the per-user sequence in commit
order, so a cursor never skips a record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sync_server.errors import DatabaseNotMigratedError
from sync_server.settings import Settings


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration from the ``alembic.ini`` shipped inside the package."""
    ini = Path(str(resources.files("sync_server") / "alembic.ini"))
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent / "migrations"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine for the configured database."""
    url = make_url(settings.effective_database_url)
    kwargs: dict[str, Any]
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"pool_size": settings.db_pool_size, "max_overflow": 0}
    else:
        # No pre-ping round trip per checkout (it halves request throughput); connections
        # are recycled instead, and a connection broken by a database restart fails one
        # request, which the client retries.
        kwargs = {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_pool_size,
            "pool_recycle": 1800,
        }
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


class Database:
    """Engine, session factory and the SQLite write lock, owned by the app."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.is_sqlite = settings.is_sqlite
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock()

    async def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade)

    async def ensure_migrated(self) -> None:
        """Raise :class:`DatabaseNotMigratedError` unless the schema is at head."""
        async with self.engine.connect() as connection:
            current = await connection.run_sync(_current_revision)
        head = head_revision()
        if current != head:
            raise DatabaseNotMigratedError(
                f"Database schema is at {current or 'nothing (empty database)'} but this "
                f"server needs {head}: run `hushchat-sync migrate` (or set "
                "HUSHCHAT_SYNC_AUTO_MIGRATE=true)."
            )

    async def ping(self) -> None:
        """Round-trip to the database (readiness)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (no lock)."""
        async with self.sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction, committed on success, rolled back on error."""
        lock = self._write_lock if self.is_sqlite else contextlib.nullcontext()
        async with lock, self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        """Dispose of all connections."""
        await self.engine.dispose()

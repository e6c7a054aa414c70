"""Alembic environment: runs on a connection handed over by the server, or on its own.

The server passes a synchronous connection in ``config.attributes["connection"]`` (from
``AsyncConnection.run_sync``). The ``alembic`` command line instead reads the URL from
``sqlalchemy.url`` or the server settings and opens an async engine itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from sync_server.settings import load_settings

        url = load_settings().effective_database_url
    asyncio.run(_run_standalone(url))


_main()

"""Query plans of the push hot path that must not depend on table statistics.

"Which ids of this batch exist" (:func:`sync_server.records.existing_query`) must probe the
primary key ``(account_id, record_id)`` per id even on a fresh, never-ANALYZEd table: a
plain ``IN (…)`` there made PostgreSQL's planner pick ``ix_records_account_seq`` and read
the whole account on every batch of a large first upload (on the table this test builds,
PostgreSQL 15 plans ``IN (…)`` as a bitmap scan of ``ix_records_account_seq`` with the ids
as a filter).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert, text

from sync_server import records
from sync_server.db import Database
from sync_server.models import Account
from tests.integration.sync_server.conftest import POSTGRES_ENV, _reset_postgres
from tests.integration.sync_server.support import make_settings, skip_or_fail

ACCOUNT = "a" * 32
STORED = 20_000  # rows of the account already in the table
BATCH = 100


def _fill(connection: Connection) -> None:
    moment = datetime.now(UTC)
    connection.execute(
        insert(Account.__table__),
        [
            {
                "id": account,
                "issuer": "local",
                "subject": account,
                "email": None,
                "email_verified": False,
                "last_seq": STORED,
                "created_at": moment,
            }
            for account in (ACCOUNT, "b" * 32)
        ],
    )
    connection.execute(
        insert(records._records),
        [
            {
                "account_id": ACCOUNT,
                "record_id": f"rec-{n:06d}",
                "kind": "message",
                "revision": 1,
                "parent_revision": None,
                "deleted": False,
                "key_id": "k",
                "device_id": "d",
                "size": 16,
                "payload": b"p" * 16,
                "seq": n + 1,
                "updated_at": moment,
            }
            for n in range(STORED)
        ],
    )


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", ()):
        found += _nodes(child)
    return found


def _wanted() -> list[str]:
    # Half of the batch exists (spread over the account), half is new.
    return [f"rec-{n * 97:06d}" for n in range(BATCH // 2)] + [
        f"new-{n}" for n in range(BATCH // 2)
    ]


@pytest.mark.postgres
async def test_postgres_existing_ids_probe_the_primary_key_without_statistics(
    tmp_path: Path,
) -> None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        skip_or_fail(f"{POSTGRES_ENV} is not set (run .ci/setup-server-peers)")
    assert url is not None
    await _reset_postgres(url)
    db = Database(make_settings(tmp_path, url))
    try:
        await db.migrate()
        async with db.engine.begin() as connection:
            # Keep it fresh: no autovacuum ANALYZE while the test runs.
            await connection.execute(text("ALTER TABLE records SET (autovacuum_enabled = false)"))
            await connection.run_sync(_fill)
        query = records.existing_query("postgresql")
        parameters = {"account_id": ACCOUNT, "ids": _wanted()}
        async with db.engine.connect() as connection:
            reltuples = (
                await connection.execute(
                    text("SELECT reltuples FROM pg_class WHERE relname = 'records'")
                )
            ).scalar_one()
            assert reltuples < 0, "the table was analyzed; the test needs a fresh one"
            explained = (
                await connection.execute(text("EXPLAIN (FORMAT JSON) " + str(query)), parameters)
            ).scalar_one()
            found = (await connection.execute(query, parameters)).all()
    finally:
        await db.close()
    plan = explained if isinstance(explained, list) else json.loads(explained)
    nodes = _nodes(plan[0]["Plan"])
    on_records = [node for node in nodes if node.get("Relation Name") == "records"]
    assert on_records, plan
    for node in on_records:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), plan
        assert node["Index Name"] == "pk_records", plan
        assert "record_id" in node.get("Index Cond", ""), plan
    assert sorted(row.record_id for row in found) == sorted(_wanted()[: BATCH // 2])
    assert all(row.payload == b"p" * 16 for row in found)


def test_sqlite_existing_ids_use_the_primary_key(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'plans.db'}")
    try:
        records._records.metadata.create_all(engine)
        with engine.begin() as connection:
            _fill(connection)
        query = records.existing_query("sqlite")
        parameters = {"account_id": ACCOUNT, "ids": _wanted()}
        with engine.connect() as connection:
            literal = query.params(parameters).compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
            steps = connection.execute(text(f"EXPLAIN QUERY PLAN {literal}")).all()
            found = connection.execute(query, parameters).all()
    finally:
        engine.dispose()
    details = " | ".join(str(step[-1]) for step in steps)
    assert "sqlite_autoindex_records_1" in details, details
    assert "ix_records_account_seq" not in details, details
    assert sorted(row.record_id for row in found) == sorted(_wanted()[: BATCH // 2])


def test_postgres_statement_selects_the_stored_columns_in_wire_order() -> None:
    statement = str(records.existing_query("postgresql"))
    listed = ", ".join(column.name for column in records._COLUMNS)
    assert " ".join(statement.split()).count(listed) == 1, statement

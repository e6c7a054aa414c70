"""Query plans of the push hot path that must not depend on table statistics.

"Which ids of this batch exist" (:func:`sync_server.records.existing_query`) must probe the
primary key ``(account_id, record_id)`` per id even on a fresh, never-ANALYZEd table: a
plain ``IN (…)`` there made PostgreSQL's planner pick ``ix_records_account_seq`` and read
the whole account on every batch of a large first upload (on the table this test builds,
PostgreSQL 15 plans ``IN (…)`` as a bitmap scan of ``ix_records_account_seq`` with the ids
as a filter). The per-id probe alone was not enough: with 1,500 rows of one account the
planner costed that index the same as the primary key and took it for every probe (45 ms
a batch, growing); since migration 0004 the index is partial (``seq > 0``), so only the
pull, which says ``seq > 0``, can use it — checked here with a generic plan too.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
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


def _fill(connection: Connection, stored: int = STORED) -> None:
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
                "last_seq": stored,
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
            for n in range(stored)
        ],
    )


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", ()):
        found += _nodes(child)
    return found


def _wanted(stored: int = STORED) -> list[str]:
    # Half of the batch exists (spread over the account), half is new.
    step = max(1, stored // BATCH)
    return [f"rec-{n * step:06d}" for n in range(BATCH // 2)] + [
        f"new-{n}" for n in range(BATCH // 2)
    ]


def _on_records(explained: Any) -> list[dict[str, Any]]:
    plan = explained if isinstance(explained, list) else json.loads(explained)
    nodes = [node for node in _nodes(plan[0]["Plan"]) if node.get("Relation Name") == "records"]
    assert nodes, plan
    return nodes


#: The credential parameters of the checked page (accounts.fresh_parameters), local and OIDC.
_CREDENTIAL = {
    "token_hash": "h",
    "device_id": "d",
    "jkt": "d",
    "now": datetime.now(UTC),
    "seen_after": datetime.now(UTC) - timedelta(minutes=5),
    "device_name": "laptop",
    "issuer": "https://idp.example",
    "subject": "s",
    "email": "s@example.org",
    "email_verified": True,
}


# 1,500 rows: where the planner took ix_records_account_seq for the probe before 0004.
@pytest.mark.parametrize("stored", [1_500, STORED])
@pytest.mark.postgres
async def test_postgres_existing_ids_probe_the_primary_key_without_statistics(
    tmp_path: Path, stored: int
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
            await connection.run_sync(_fill, stored)
        query = records.existing_query("postgresql")
        parameters = {"account_id": ACCOUNT, "ids": _wanted(stored)}
        async with db.engine.connect() as connection:
            reltuples = (
                await connection.execute(
                    text("SELECT reltuples FROM pg_class WHERE relname = 'records'")
                )
            ).scalar_one()
            assert reltuples < 0, "the table was analyzed; the test needs a fresh one"
            plans = []
            checked_plans = []
            # asyncpg prepares statements: after five runs PostgreSQL may keep a generic
            # plan (parameters unknown), so both kinds are checked.
            for mode in ("force_custom_plan", "force_generic_plan"):
                await connection.execute(text(f"SET plan_cache_mode = {mode}"))
                explain = text("EXPLAIN (FORMAT JSON) " + str(query))
                plans.append((await connection.execute(explain, parameters)).scalar_one())
                # The pull's page on PostgreSQL: one statement over _CHANGES.
                pull = text("EXPLAIN (FORMAT JSON) " + str(records._CHANGES_FITTING))
                pulled = {
                    "account_id": ACCOUNT,
                    "cursor": stored // 2,
                    "limit": 101,
                    "max_bytes": records.MAX_PAGE_BYTES,
                }
                plans.append((await connection.execute(pull, pulled)).scalar_one())
                # The same page with the credential's check in its statement (a pull of a
                # known caller): still through the seq index, and not sorted again on top.
                for checked in (records._CHECKED_LOCAL_RUN, records._CHECKED_OIDC_RUN):
                    explain = text("EXPLAIN (FORMAT JSON) " + str(checked.statement))
                    answer = await connection.execute(explain, {**pulled, **_CREDENTIAL})
                    checked_plans.append(answer.scalar_one())
            found = (await connection.execute(query, parameters)).all()
    finally:
        await db.close()
    for probe in plans[0::2]:
        for node in _on_records(probe):
            assert node["Node Type"] in ("Index Scan", "Index Only Scan"), probe
            assert node["Index Name"] == "pk_records", probe
            assert "record_id" in node.get("Index Cond", ""), probe
    for pull_plan in plans[1::2]:
        # The pull still finds its page through the (partial) seq index.
        tree = pull_plan if isinstance(pull_plan, list) else json.loads(pull_plan)
        used = {node.get("Index Name") for node in _nodes(tree[0]["Plan"])}
        assert "ix_records_account_seq" in used, pull_plan
    for checked_plan in checked_plans:
        tree = checked_plan if isinstance(checked_plan, list) else json.loads(checked_plan)
        nodes = list(_nodes(tree[0]["Plan"]))
        assert "ix_records_account_seq" in {node.get("Index Name") for node in nodes}
        # Not sorted again over the page (the page's own plan may sort a bitmap scan).
        assert tree[0]["Plan"]["Node Type"] != "Sort", json.dumps(tree, indent=1)
    assert len(checked_plans) == 4
    assert sorted(row.record_id for row in found) == sorted(_wanted(stored)[: BATCH // 2])
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

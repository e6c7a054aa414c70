"""The per-request statements on SQLite's own cursor give what SQLAlchemy gives.

(:mod:`sync_server.prepared`.) Each hot statement runs both ways on the same seeded SQLite
file: the rows must be equal value for value and type for type (aware UTC datetimes,
booleans, bytes), and rows written with the prepared INSERT/UPDATE must read back exactly
as rows written by SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert

from sync_server import accounts, records
from sync_server.db import Database
from sync_server.models import Account, Device, LocalToken, Record, Recovery
from sync_server.prepared import Prepared, _Compiled, _empty_list
from tests.integration.sync_server.support import make_settings

MOMENT = datetime(2026, 11, 30, 12, 34, 56, 789012, tzinfo=UTC)


def _seed(connection: Connection) -> None:
    connection.execute(
        insert(Account),
        [
            {
                "id": account,
                "issuer": "local",
                "subject": account,
                "email": f"{account}@example.org" if account == "a1" else None,
                "email_verified": account == "a1",
                "last_seq": 3,
                "created_at": MOMENT,
            }
            for account in ("a1", "a2")
        ],
    )
    connection.execute(
        insert(Device),
        {
            "account_id": "a1",
            "id": "dev1",
            "name": "laptop",
            "created_at": MOMENT,
            "last_seen_at": MOMENT + timedelta(seconds=1),
            "jkt": "dev1",
        },
    )
    connection.execute(
        insert(LocalToken),
        {
            "token_hash": "h1",
            "account_id": "a1",
            "kind": "access",
            "family_id": "f1",
            "device_id": "dev1",
            "expires_at": MOMENT + timedelta(hours=1),
            "auth_time": MOMENT,
        },
    )
    connection.execute(
        insert(Record),
        [
            {
                "account_id": "a1",
                "record_id": f"r{n}",
                "kind": "message",
                "revision": n + 1,
                "parent_revision": n if n else None,
                "deleted": n == 2,
                "key_id": "k",
                "device_id": "dev1",
                "size": 3,
                "payload": bytes([n, 0, 255]),
                "seq": n + 1,
                "updated_at": MOMENT + timedelta(microseconds=n),
            }
            for n in range(3)
        ],
    )
    connection.execute(
        insert(Recovery),
        {
            "id": "rec1",
            "account_id": "a1",
            "device_id": "dev9",
            "device_public_key": b"key",
            "status": "pending",
            "created_at": MOMENT,
            "not_before": MOMENT + timedelta(days=1),
            "expires_at": MOMENT + timedelta(days=2),
        },
    )


def _compiled(prepared: Prepared) -> _Compiled:
    compiled = prepared._compiled
    assert compiled is not None
    return compiled


def _typed(rows: Sequence[Any]) -> list[list[tuple[type, Any]]]:
    return [[(type(value), value) for value in row] for row in rows]


def _both(connection: Connection, prepared: Prepared, params: dict[str, Any]) -> list[Any]:
    ours = prepared.all(connection, params)
    theirs = connection.execute(prepared.statement, params).all()
    assert _typed(ours) == _typed(theirs)
    for mine, row in zip(ours, theirs, strict=True):
        assert mine._asdict() == dict(row._mapping)
    return list(ours)


def _compare(connection: Connection) -> None:
    found = _both(
        connection,
        accounts._LOCAL_PRINCIPAL_RUN,
        {"token_hash": "h1", "device_id": "dev1"},
    )
    assert len(found) == 1
    assert found[0].expires_at == MOMENT + timedelta(hours=1)
    assert found[0].email_verified is True
    assert found[0].device_jkt == "dev1"
    # The outer join without a device row, and no token at all.
    assert _both(connection, accounts._LOCAL_PRINCIPAL_RUN, {"token_hash": "h1", "device_id": "x"})
    assert not _both(
        connection, accounts._LOCAL_PRINCIPAL_RUN, {"token_hash": "no", "device_id": "dev1"}
    )
    assert (
        accounts._LOCAL_PRINCIPAL_RUN.one_or_none(
            connection, {"token_hash": "no", "device_id": "dev1"}
        )
        is None
    )
    _both(
        connection,
        accounts._OIDC_PRINCIPAL_RUN,
        {"token_hash": "h1", "device_id": "dev1", "issuer": "local", "subject": "a1"},
    )
    assert records._LAST_SEQ_RUN.scalar_one_or_none(connection, {"account_id": "a1"}) == 3
    assert records._LAST_SEQ_RUN.scalar_one_or_none(connection, {"account_id": "zz"}) is None
    rows = _both(connection, records._EXISTING_RUN, {"account_id": "a1", "ids": ["r0", "r2", "x"]})
    assert sorted(row.record_id for row in rows) == ["r0", "r2"]
    assert [row.deleted for row in sorted(rows)] == [False, True]
    _both(connection, records._EXISTING_RUN, {"account_id": "a1", "ids": []})
    for cursor, limit in ((0, 10), (1, 1), (3, 5)):
        params = {"account_id": "a1", "cursor": cursor, "limit": limit}
        _both(connection, records._CHANGES_RUN, params)
        _both(connection, records._CHANGE_SIZES_RUN, params)
        assert records._CHANGE_SIZES_RUN.scalars(connection, params) == list(
            connection.execute(records._CHANGE_SIZES, params).scalars()
        )
    recoveries = _both(connection, records._OPEN_RECOVERIES_RUN, {"account_id": "a1"})
    # An IN list given by the statement itself is expanded on the cursor too.
    assert not _empty_list(_compiled(records._OPEN_RECOVERIES_RUN), {"account_id": "a1"})
    assert recoveries[0].not_before == MOMENT + timedelta(days=1)


def _write(connection: Connection, account: str, prepared: bool) -> None:
    row = {
        "kind": "message",
        "revision": 1,
        "parent_revision": None,
        "deleted": False,
        "key_id": "k",
        "device_id": "dev1",
        "size": 2,
        "payload": b"\x00\x01",
        "seq": 10,
        "updated_at": MOMENT,
    }
    inserts = [
        {**row, "account_id": account, "record_id": f"w{n}", "seq": 10 + n} for n in range(3)
    ]
    changed = {**row, "revision": 2, "deleted": True, "seq": 13, "updated_at": MOMENT}
    updates = [{**changed, "b_account_id": account, "b_record_id": "w1"}]
    seq = {"b_account_id": account, "last_seq": 13}
    if prepared:
        records._INSERT_RUN.executemany(connection, inserts)
        records._UPDATE_RUN.executemany(connection, updates)
        records._SET_LAST_SEQ_RUN.execute(connection, seq)
    else:
        connection.execute(records._INSERT, inserts)
        connection.execute(records._UPDATE, updates)
        connection.execute(records._SET_LAST_SEQ, seq)


def _written(connection: Connection, account: str) -> list[tuple[Any, ...]]:
    rows = connection.exec_driver_sql(
        "SELECT record_id, kind, revision, parent_revision, deleted, key_id, device_id, size,"
        " payload, seq, updated_at FROM records WHERE account_id = ? AND record_id LIKE 'w%'"
        " ORDER BY record_id",
        (account,),
    ).all()
    last = connection.exec_driver_sql(
        "SELECT last_seq FROM accounts WHERE id = ?", (account,)
    ).scalar_one()
    return [tuple(row) for row in rows] + [(last,)]


async def test_prepared_statements_give_what_sqlalchemy_gives(tmp_path: Path) -> None:
    db = Database(make_settings(tmp_path, None))
    await db.migrate()
    try:
        await db.run_write_short(_seed)
        await db.run_short(_compare)  # the inline connection
        await db.run(_compare)  # a reader thread's
        await db.run_write(_write, "a1", True)
        await db.run_write(_write, "a2", False)
        ours, theirs = await db.run(_written, "a1"), await db.run(_written, "a2")
        assert ours == theirs
        assert ours[1][4] == 1 and ours[1][10] == "2026-11-30 12:34:56.789012"
    finally:
        await db.close()


async def test_other_drivers_go_through_sqlalchemy(tmp_path: Path) -> None:
    """On aiosqlite (the async engine) the statements run through SQLAlchemy as before."""
    db = Database(make_settings(tmp_path, None))
    await db.migrate()
    try:

        def check(connection: Connection) -> None:
            assert connection.dialect.driver == "aiosqlite"
            _seed(connection)
            params = {"account_id": "a1", "cursor": 0, "limit": 10}
            rows = records._CHANGES_RUN.all(connection, params)
            assert [row.record_id for row in rows] == ["r0", "r1", "r2"]
            assert type(rows[0]).__name__ == "Row"

        async with db.engine.begin() as connection:
            await connection.run_sync(check)
    finally:
        await db.close()

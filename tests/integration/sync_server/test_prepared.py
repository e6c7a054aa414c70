"""The per-request statements on the driver's own connection give what SQLAlchemy gives.

(:mod:`sync_server.prepared`.) Each hot statement runs both ways on the same seeded SQLite
file: the rows must be equal value for value and type for type (aware UTC datetimes,
booleans, bytes), and rows written with the prepared INSERT/UPDATE must read back exactly
as rows written by SQLAlchemy. On PostgreSQL the reads outside a transaction run on asyncpg
directly: the same comparison there, and the one-statement pull page against the
two-statement one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, insert, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server import accounts, records
from sync_server.accounts import Credential
from sync_server.db import GENERIC_PLANS, Database
from sync_server.models import Account, Device, LocalToken, Record, Recovery
from sync_server.prepared import Prepared, _Compiled, _connection_spoilt, _empty_list
from tests.integration.sync_server.conftest import POSTGRES_ENV, _reset_postgres
from tests.integration.sync_server.support import make_settings, skip_or_fail

# What a read on a connection the server terminated can raise (asyncpg, or SQLAlchemy's
# wrapping of it when the statement went through SQLAlchemy's adapter).
_CONNECTION_GONE = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)
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


def _typed(rows: Sequence[Any]) -> list[list[tuple[type, Any]]]:
    return [[(type(value), value) for value in row] for row in rows]


def _both(connection: Connection, prepared: Prepared, params: dict[str, Any]) -> list[Any]:
    ours = prepared.all(connection, params)
    theirs = connection.execute(prepared.statement, params).all()
    assert _typed(ours) == _typed(theirs)
    for mine, row in zip(ours, theirs, strict=True):
        # By name too (named tuples on SQLite, asyncpg records with attributes on asyncpg).
        assert {key: getattr(mine, key) for key in row._mapping} == dict(row._mapping)
        assert len(mine) == len(row._mapping)
    return list(ours)


def _after(count: int) -> Callable[[Any], bool]:
    """For ``Prepared.until``: true at the ``count``-th row (never for 0)."""
    seen = 0

    def enough(_row: Any) -> bool:
        nonlocal seen
        seen += 1
        return seen == count

    return enough


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
    assert found[0].open_recoveries is True  # rec1 is pending
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
        page = _both(connection, records._CHANGES_RUN, params)
        # Stopped early: the rows up to the first taken, the same values and names.
        for stop in range(len(page) + 1):
            taken = records._CHANGES_RUN.until(connection, params, _after(stop))
            assert _typed(taken) == _typed(page[: stop or len(page)])
            assert [row.seq for row in taken] == [row.seq for row in page[: stop or len(page)]]
    # The credential's check (SQLite's pulls, every push), against SQLAlchemy's answers.
    for token_hash, device_id in (("h1", "dev1"), ("h1", "x"), ("no", "dev1")):
        check = {
            "account_id": "a1",
            "token_hash": token_hash,
            "device_id": device_id,
            "jkt": "dev1",
            "now": MOMENT,
            "seen_after": MOMENT - timedelta(minutes=5),
            "device_name": None,
        }
        _both(connection, records._FRESH_LOCAL_RUN, check)
        _both(connection, records._CHECKED_LAST_SEQ_RUNS[True], check)
        for ids in (["r0", "x"], ["x"], ["r0", "r1", "r2"]):
            counted = _both(
                connection, records._CHECKED_LAST_SEQ_COUNTED_RUNS[True], {**check, "ids": ids}
            )
            assert counted[0].stored == len(set(ids) - {"x"})
    recoveries = _both(connection, records._OPEN_RECOVERIES_RUN, {"account_id": "a1"})
    assert [row.id for row in recoveries] == ["rec1"]
    assert recoveries[0].not_before == MOMENT + timedelta(days=1)
    # Compiled here for this connection's dialect: a run of only the PostgreSQL tests has
    # no SQLite compilation of it to borrow.
    existing = _Compiled(records._EXISTING_RUN.statement, connection.dialect, None)
    assert not _empty_list(existing, {"account_id": "a1", "ids": ["x"]})


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


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        skip_or_fail(f"{POSTGRES_ENV} is not set (run .ci/setup-server-peers)")
    assert url is not None
    return url


def _on_asyncpg(connection: Connection) -> None:
    """The hot reads of a pull, on asyncpg directly, against SQLAlchemy's answers."""
    assert connection.dialect.driver == "asyncpg"
    for prepared in (
        accounts._LOCAL_PRINCIPAL_RUN,
        accounts._OIDC_PRINCIPAL_RUN,
        records._CHANGES_FITTING_RUN,
        records._OPEN_RECOVERIES_RUN,
    ):
        assert prepared._asyncpg(connection) is not None, prepared.statement
    _compare(connection)
    for cursor, limit in ((0, 10), (1, 1), (0, 2), (3, 5)):
        params = {"account_id": "a1", "cursor": cursor, "limit": limit, "max_bytes": 4}
        _both(connection, records._CHANGES_FITTING_RUN, params)
    # asyncpg makes the page's rows with their attributes itself (no named tuple per row).
    page = records._CHANGES_FITTING_RUN.all(
        connection, {"account_id": "a1", "cursor": 0, "limit": 10, "max_bytes": 100}
    )
    assert type(page[0]).__name__ == "PreparedRecord" and isinstance(page[0], asyncpg.Record)


def _in_transaction(connection: Connection) -> None:
    # Inside a transaction SQLAlchemy's adapter runs every statement (it sends BEGIN).
    assert records._CHANGES_FITTING_RUN._asyncpg(connection) is None
    rows = records._CHANGES_FITTING_RUN.all(
        connection, {"account_id": "a1", "cursor": 0, "limit": 10, "max_bytes": 100}
    )
    assert type(rows[0]).__name__ == "Row"
    assert [row.record_id for row in rows] == ["r0", "r1", "r2"]


@pytest.mark.postgres
async def test_postgres_reads_on_asyncpg_give_what_sqlalchemy_gives(tmp_path: Path) -> None:
    url = _postgres_url()
    await _reset_postgres(url)
    db = Database(make_settings(tmp_path, url))
    await db.migrate()
    try:
        await db.run_write(_seed)
        await db.run(_on_asyncpg)
        await db.run_short(_on_asyncpg)
        await db.run_write(_in_transaction)
    finally:
        await db.close()


def _sized(connection: Connection) -> None:
    sizes = [5, 1, 1, 9, 2, 2, 2, 30, 1, 0, 0, 4, 4, 4, 4]
    connection.execute(
        insert(Record),
        [
            {
                "account_id": "a2",
                "record_id": f"s{n}",
                "kind": "message",
                "revision": 1,
                "parent_revision": None,
                "deleted": False,
                "key_id": "k",
                "device_id": "dev1",
                "size": size,
                "payload": bytes(size),
                "seq": n + 1,
                "updated_at": MOMENT,
            }
            for n, size in enumerate(sizes)
        ],
    )


def _sizes_first(connection: Connection, cursor: int, limit: int) -> list[Any]:
    """The page as the rule reads (the two statements SQLite once ran): the sizes of the
    next ``limit + 1`` rows, where they fit (``_fitting``), then the rows that fit and one
    more (the client asks again)."""
    params = {"account_id": "a2", "cursor": cursor, "limit": limit + 1}
    rows = connection.execute(records._CHANGES, params).all()
    fits = records._fitting([row.size for row in rows], limit)
    return list(rows[: fits + 1] if fits < limit else rows)


def _pages_agree(connection: Connection, budgets: list[int]) -> int:
    compared = 0
    for budget in budgets:
        records.MAX_PAGE_BYTES = budget
        for cursor in range(16):
            for limit in (1, 2, 3, 5, 8, 20):
                one = records._changes(connection, "a2", cursor, limit)
                two = _sizes_first(connection, cursor, limit)
                assert _typed(one) == _typed(two), (budget, cursor, limit)
                assert records.changes_json(one, cursor, limit) == records.changes_json(
                    two, cursor, limit
                )
                compared += 1
    return compared


async def test_a_page_in_one_statement_is_the_sizes_first_page(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a page ends: the window-function statement (PostgreSQL) and the statement
    stepped until the page is full (SQLite) cut where reading the sizes first does."""
    db = Database(make_settings(tmp_path, database_url))
    await db.migrate()
    monkeypatch.setattr(records, "MAX_PAGE_BYTES", records.MAX_PAGE_BYTES)
    try:
        await db.run_write(_seed)
        await db.run_write(_sized)
        compared = await db.run(_pages_agree, [0, 1, 4, 5, 6, 10, 12, 30, 40, 100])
        assert compared == 10 * 16 * 6
    finally:
        await db.close()


@pytest.mark.postgres
async def test_postgres_connection_lost_under_a_direct_read_is_replaced(tmp_path: Path) -> None:
    """A server-side disconnect fails the read that meets it; the pool then reconnects."""
    url = _postgres_url()
    await _reset_postgres(url)
    settings = make_settings(tmp_path, url).model_copy(update={"db_pool_size": 1})
    db = Database(settings)
    await db.migrate()
    params = {"token_hash": "h1", "device_id": "dev1"}

    def backend(connection: Connection) -> int:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    def read(connection: Connection) -> list[Any]:
        return list(accounts._LOCAL_PRINCIPAL_RUN.all(connection, params))

    try:
        await db.run_write(_seed)
        first = await db.run(backend)
        other = create_async_engine(url)
        try:
            async with other.connect() as killer:
                await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        finally:
            await other.dispose()
        # The pool (one connection, no pre-ping) hands out the dead connection once. What
        # that read meets depends on timing: the closed socket, the terminate message, or
        # (between the two) asyncpg's "another operation is in progress".
        with pytest.raises(_CONNECTION_GONE):
            await db.run(read)
        assert len(await db.run(read)) == 1
        assert await db.run(backend) != first
    finally:
        await db.close()


class _Driver:
    def __init__(self, closed: bool) -> None:
        self.closed = closed

    def is_closed(self) -> bool:
        return self.closed


@pytest.mark.parametrize(
    ("error", "closed", "spoilt"),
    [
        # the server's answer to a statement on a live connection: the connection stays
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False, False),
        (asyncpg.exceptions.DataError("bad value"), False, False),
        # anything that says the connection is gone or in an unknown state: it leaves
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), True, True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), False, True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), False, True),
        (
            asyncpg.exceptions.InternalClientError("another operation (2) is in progress"),
            False,
            True,
        ),
        (asyncpg.InterfaceError("connection is closed"), False, True),
        (ConnectionResetError(), False, True),
        (TimeoutError(), False, True),
    ],
)
def test_which_errors_take_an_asyncpg_connection_out_of_the_pool(
    error: Exception, closed: bool, spoilt: bool
) -> None:
    """Kept only after the server's own answer on an open connection (the CI race of stop 24)."""
    assert _connection_spoilt(_Driver(closed), error) is spoilt


def _fresh_credential(connection: Connection) -> None:
    """A device seen just now, so a pull checks its credential without a write."""
    connection.execute(
        update(Device).where(Device.id == "dev1").values(last_seen_at=datetime.now(UTC))
    )
    connection.execute(
        update(LocalToken)
        .where(LocalToken.token_hash == "h1")
        .values(expires_at=datetime.now(UTC) + timedelta(hours=1))
    )


def _close_recoveries(connection: Connection) -> None:
    connection.execute(update(Recovery).values(status="cancelled"))


async def test_a_pull_asks_for_recoveries_only_when_the_credential_read_saw_one(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The credential query says whether a recovery is open; the pull's own query of them
    runs only then, and a pending one is still listed."""
    db = Database(make_settings(tmp_path, database_url))
    await db.migrate()
    credential = Credential("local", "h1", "dev1", "dev1", None, account_id="a1")
    try:
        await db.run_write(_seed)
        await db.run_write(_fresh_credential)
        found = await records.changes_as(db, credential, 0, 10)
        assert found is not None
        rows, recoveries = found
        assert [row.record_id for row in rows] == ["r0", "r1", "r2"]
        assert [recovery["id"] for recovery in recoveries] == ["rec1"]

        await db.run_write(_close_recoveries)
        asked: list[dict[str, Any]] = []
        real = records._OPEN_RECOVERIES_RUN

        class Counted:
            def all(self, connection: Connection, params: dict[str, Any]) -> Sequence[Any]:
                asked.append(params)
                return real.all(connection, params)

        monkeypatch.setattr(records, "_OPEN_RECOVERIES_RUN", Counted())
        found = await records.changes_as(db, credential, 0, 10)
        assert found is not None and found[1] == [] and len(found[0]) == 3
        assert asked == []
        # A caller resolved elsewhere (not checked in this read) is asked about as before.
        principal = await db.run(accounts.check_credential, credential)
        assert principal is not None and principal.open_recoveries is False
        unknown = dataclasses.replace(principal, open_recoveries=None)
        found = await records.changes_as(db, unknown, 0, 10)
        assert found is not None and found[1] == []
        assert asked == [{"account_id": "a1"}]
    finally:
        await db.close()


@pytest.mark.postgres
async def test_postgres_connections_plan_prepared_statements_generically_from_the_start(
    tmp_path: Path,
) -> None:
    """No planning per run for a statement's first five runs on each connection (their
    generic plans are checked in test_query_plans.py)."""
    url = _postgres_url()
    await _reset_postgres(url)
    db = Database(make_settings(tmp_path, url))
    try:

        def mode(connection: Connection) -> str:
            return str(connection.exec_driver_sql("SHOW plan_cache_mode").scalar_one())

        assert await db.run(mode) == GENERIC_PLANS == "force_generic_plan"
        assert await db.run_write(mode) == GENERIC_PLANS
    finally:
        await db.close()

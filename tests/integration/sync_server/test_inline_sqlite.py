"""Short transactions on a SQLite file served by one process run on the event loop's thread.

(:mod:`sync_server.db`.) What must hold: they really run inline there and nowhere else
(several processes, PostgreSQL); an inline write waits for a write session of the same
process instead of blocking the loop on SQLite's lock (which that session could then never
release); the request connections leave WAL checkpoints to the background task, which
does them; ``serve`` freezes its start-up objects out of the collector.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, text

from sync_server.app import create_app
from sync_server.db import Database
from sync_server.models import Account
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    make_settings,
    record,
    running,
)


def _thread(_connection: Connection) -> int:
    return threading.get_ident()


def _pragma(connection: Connection, name: str) -> int:
    value = connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
    return int(value)


async def _database(tmp_path: Path, workers: int = 1, synchronous: str = "NORMAL") -> Database:
    db = Database(make_settings(tmp_path, None, workers=workers, sqlite_synchronous=synchronous))
    await db.migrate()
    return db


async def test_short_transactions_run_on_the_loop_thread_of_a_single_process(
    tmp_path: Path,
) -> None:
    db = await _database(tmp_path)
    try:
        loop_thread = threading.get_ident()
        assert db.inline
        assert await db.run_short(_thread) == loop_thread
        assert await db.run_write_short(_thread) == loop_thread
        # The ordinary entry points still hop to a thread (large pushes, long-polls).
        assert await db.run(_thread) != loop_thread
        assert await db.run_write(_thread) != loop_thread
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("workers", "synchronous"),
    [
        # Another process may hold SQLite's write lock: waiting must not stop the loop.
        (2, "NORMAL"),
        # An fsync in every commit must not stop the loop either.
        (1, "FULL"),
    ],
)
async def test_several_processes_or_full_sync_keep_the_threads(
    tmp_path: Path, workers: int, synchronous: str
) -> None:
    db = await _database(tmp_path, workers, synchronous)
    try:
        assert not db.inline
        assert await db.run_write_short(_thread) != threading.get_ident()
        assert await db.run_short(_thread) != threading.get_ident()
    finally:
        await db.close()


def _insert_account(connection: Connection, account_id: str) -> str:
    connection.execute(
        text(
            "INSERT INTO accounts (id, issuer, subject, email_verified, last_seq, created_at)"
            " VALUES (:id, 'local', :id, 0, 0, '2026-01-01 00:00:00.000000')"
        ),
        {"id": account_id},
    )
    return account_id


async def test_an_inline_write_waits_for_a_write_session_of_the_same_process(
    tmp_path: Path,
) -> None:
    """The session holds SQLite's write lock across awaits; the inline write must wait
    on the asyncio lock, not inside SQLite (10 s busy timeout with the loop blocked, then
    "database is locked")."""
    db = await _database(tmp_path)
    try:
        session_has_lock = asyncio.Event()
        release = asyncio.Event()

        async def hold_a_write_session() -> None:
            async with db.write() as session:
                session.add(
                    Account(
                        id="a" * 32,
                        issuer="local",
                        subject="held",
                        email=None,
                        email_verified=False,
                        last_seq=0,
                        created_at=datetime.now(UTC),
                    )
                )
                await session.flush()  # SQLite's write lock is taken now
                session_has_lock.set()
                await release.wait()

        holder = asyncio.create_task(hold_a_write_session())
        await session_has_lock.wait()
        inline = asyncio.create_task(db.run_write_short(_insert_account, "b" * 32))
        await asyncio.sleep(0.05)
        assert not inline.done()  # waiting on the asyncio lock, the loop still runs
        release.set()
        await holder
        assert await asyncio.wait_for(inline, 5) == "b" * 32
        count = await db.run_short(
            lambda c: c.execute(text("SELECT count(*) FROM accounts")).scalar_one()
        )
        assert count == 2
    finally:
        await db.close()


async def test_request_connections_leave_checkpoints_to_the_background(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    try:
        assert await db.run_short(_pragma, "wal_autocheckpoint") == 0
        for n in range(20):
            await db.run_write_short(_insert_account, f"{n:032x}")
        busy, frames, done = await asyncio.to_thread(db.checkpoint)
        assert (busy, done) == (0, frames)
        assert frames > 0
        # The loop of the running server does it by itself.
        task = asyncio.create_task(db.checkpoint_periodically(0.01))
        await db.run_write_short(_insert_account, "c" * 32)
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        _, frames_after, done_after = await asyncio.to_thread(db.checkpoint)
        assert done_after == frames_after
    finally:
        await db.close()


async def test_several_processes_checkpoint_on_commit_as_usual(tmp_path: Path) -> None:
    db = await _database(tmp_path, workers=2)
    try:
        assert await db.run(_pragma, "wal_autocheckpoint") == 1000
        # Nothing to do in the background: returns at once.
        await asyncio.wait_for(db.checkpoint_periodically(0.01), 1)
    finally:
        await db.close()


async def test_pushes_and_pulls_of_the_fast_lane_run_inline(
    tmp_path: Path, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings(tmp_path, None), http_transport=issuer.transport())
    async with running(app) as client:
        db = app.state.server.db
        threads: list[int] = []
        original = Database.run_write_short

        async def spy(self: Database, fn: object, /, *args: object) -> object:
            threads.append(threading.get_ident())
            return await original(self, fn, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(Database, "run_write_short", spy)
        user = ApiUser(client, issuer.mint("inline"), "inline-device")
        await user.push(record("first"))  # the device's first request is resolved apart
        await user.push(record("second"))
        assert threads and db.inline
        pulled, _ = await user.pull_all()
        assert [r["id"] for r in pulled] == ["first", "second"]


async def test_serve_freezes_its_start_up_objects(tmp_path: Path, issuer: FakeIssuer) -> None:
    before = gc.get_freeze_count()
    app = create_app(
        make_settings(tmp_path, None), http_transport=issuer.transport(), freeze_gc=True
    )
    async with running(app):
        assert gc.get_freeze_count() > before
    plain = create_app(make_settings(tmp_path / "plain", None), http_transport=issuer.transport())
    gc.unfreeze()
    async with running(plain):
        assert gc.get_freeze_count() == 0


async def test_inline_transactions_commit_and_roll_back_on_the_driver(tmp_path: Path) -> None:
    """Inline transactions begin and end on ``sqlite3`` itself; statements run through
    SQLAlchemy inside them join the same transaction, and an error rolls all of it back."""
    db = await _database(tmp_path)
    moment = datetime(2026, 11, 30, tzinfo=UTC)

    def add(connection: Connection, name: str, fail: bool, through_sqlalchemy: bool) -> None:
        values = {"id": name, "issuer": "i", "subject": name, "created_at": "2026-11-30"}
        if through_sqlalchemy:
            connection.execute(insert(Account), {**values, "created_at": moment})
        else:
            raw = connection.connection.driver_connection
            assert raw is not None and raw.in_transaction
            raw.execute(
                "INSERT INTO accounts (id, issuer, subject, email_verified, last_seq,"
                " created_at) VALUES (:id, :issuer, :subject, 0, 0, :created_at)",
                values,
            )
        if fail:
            raise RuntimeError("refused")

    def names(connection: Connection) -> list[str]:
        return list(connection.execute(text("SELECT id FROM accounts ORDER BY id")).scalars())

    try:
        await db.run_write_short(add, "a", False, False)
        await db.run_write_short(add, "b", False, True)
        for through in (False, True):
            with pytest.raises(RuntimeError, match="refused"):
                await db.run_write_short(add, f"x{through}", True, through)
        assert await db.run_short(names) == ["a", "b"]  # no transaction left open either
        assert await db.run(names) == ["a", "b"]
        inline = db._inline()
        assert not inline.in_transaction()
        raw = inline.connection.driver_connection
        assert raw is not None and not raw.in_transaction
    finally:
        await db.close()

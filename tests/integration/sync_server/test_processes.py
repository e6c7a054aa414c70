"""Several server processes on one database: SQLite write transactions begin IMMEDIATE, so
processes that do not share the in-process write lock still hand out distinct, gap-free
sequence numbers; ``serve --workers N`` serves from N processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection

from sync_server.app import create_app
from sync_server.db import Database
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    auth_headers,
    device_key,
    make_settings,
    record,
    running,
    seed_local_token,
    stop_process,
)


def _write_lock_is_held(connection: Connection, path: str) -> bool:
    connection.exec_driver_sql("SELECT 1")  # the transaction has begun
    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc)
        other.execute("ROLLBACK")
        return False


async def test_sqlite_write_transactions_take_the_write_lock_first(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = settings.effective_database_url.split("///", 1)[1]
    db = Database(settings)
    try:
        await db.migrate()
        assert await db.run_write(_write_lock_is_held, path)
        assert not await db.run(_write_lock_is_held, path)
        async with db.write() as session:
            connection = await session.connection()
            assert await connection.run_sync(_write_lock_is_held, path)
    finally:
        await db.close()


async def test_two_processes_on_one_sqlite_file(tmp_path: Path, issuer: FakeIssuer) -> None:
    # Two apps = two Database objects with their own write locks, as two processes have.
    settings = make_settings(tmp_path)
    first, second = (create_app(settings, http_transport=issuer.transport()) for _ in "ab")
    token = issuer.mint("alice")
    async with running(first) as one, running(second) as two:
        a, b = ApiUser(one, token, "alice-device-1"), ApiUser(two, token, "alice-device-1")
        await a.push(record("warm-up"))
        await b.push(record("warm-up-2"))
        answers = await asyncio.gather(
            *[
                (a if n % 2 else b).push(*[record(f"p{n}-{i}") for i in range(10)])
                for n in range(12)
            ]
        )
        assert all(answer["applied"] for answer in answers)
        changes, cursor = await b.pull_all()
        assert cursor == 122
        assert sorted(change["seq"] for change in changes) == list(range(1, 123))
        conflict = await asyncio.gather(
            a.push(record("warm-up", 2, 1, payload=b"from a")),
            b.push(record("warm-up", 2, 1, payload=b"from b")),
        )
        statuses = sorted(answer["results"][0]["status"] for answer in conflict)
        assert statuses == ["conflict", "saved"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_with_two_workers(tmp_path: Path) -> None:
    values = generate_secrets()
    settings = Settings(**{k.lower(): v for k, v in values.items()}, data_dir=tmp_path / "data")
    token, key = "hcl_" + "w" * 40, device_key("workers-device")
    asyncio.run(seed_local_token(settings, token, key.device_id))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env_file = tmp_path / "sync.env"
    env_file.write_text("".join(f"HUSHCHAT_SYNC_{k}={v}\n" for k, v in values.items()))
    env.update(
        HUSHCHAT_SYNC_DATA_DIR=str(settings.data_dir),
        HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED="true",
        HUSHCHAT_SYNC_SMTP_HOST="127.0.0.1",
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "sync_server", "--env-file", str(env_file), "serve"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"

    def headers(method: str, path: str) -> dict[str, str]:
        return auth_headers(token, method, path, key, base_url=base_url)

    try:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)

            def push(n: int) -> int:
                body = {"records": [record(f"w{n}-{i}") for i in range(5)]}
                return http.post(
                    "/v1/sync/push", json=body, headers=headers("POST", "/v1/sync/push")
                ).status_code

            with ThreadPoolExecutor(max_workers=8) as pool:
                assert list(pool.map(push, range(20))) == [200] * 20, log.read_text()
            pulled = http.get(
                "/v1/sync/changes",
                params={"cursor": 0, "limit": 1000},
                headers=headers("GET", "/v1/sync/changes"),
            )
            seqs = [change["seq"] for change in pulled.json()["changes"]]
            assert seqs == list(range(1, 101))
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        if children.exists():  # the two workers (and multiprocessing's helper, if any)
            assert len(children.read_text(encoding="ascii").split()) >= 2
    finally:
        stop_process(process)
    assert process.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def _pragmas(connection: Connection) -> tuple[str, int, int, int]:
    return (
        connection.exec_driver_sql("PRAGMA journal_mode").scalar_one(),
        connection.exec_driver_sql("PRAGMA synchronous").scalar_one(),
        connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one(),
        connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one(),
    )


@pytest.mark.parametrize(("mode", "level"), [("NORMAL", 1), ("FULL", 2)])
async def test_sqlite_pragmas_on_both_drivers(tmp_path: Path, mode: str, level: int) -> None:
    db = Database(make_settings(tmp_path, sqlite_synchronous=mode))
    try:
        await db.migrate()
        expected = ("wal", level, 10000, 1)
        assert await db.run(_pragmas) == expected  # stdlib sqlite3, thread pool
        async with db.read() as session:  # aiosqlite, ORM sessions
            connection = await session.connection()
            assert await connection.run_sync(_pragmas) == expected
    finally:
        await db.close()

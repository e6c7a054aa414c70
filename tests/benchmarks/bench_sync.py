"""Sync-server throughput and latency (DESIGN §8): push/pull at 1, 10, 100 clients.

Starts ``hushchat-sync serve`` as a subprocess on loopback (SQLite in a temp dir, and
PostgreSQL too when ``HUSHCHAT_TEST_POSTGRES_URL`` is set), seeds one account + local
access token per simulated client directly in the database, then drives it from a bounded
async load generator: each client pushes batches of 100 records (256-byte payloads), then
pulls everything back in pages of 1,000. Figures: records/s and per-request p50/p99.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sync_server.auth.oidc import token_hash
from sync_server.db import Database
from sync_server.models import Account, LocalToken
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.benchmarks._table import BenchmarkUnavailableError, Row

LEVELS = (1, 10, 100)
BATCH = 100
PAYLOAD = base64.b64encode(os.urandom(256)).decode()
# Batches per client at each level: bounded total work (~2,000-10,000 records per level).
BATCHES_PER_CLIENT = {1: 20, 10: 5, 100: 1}
PUSH_BUDGET = 2000.0
PULL_BUDGET = 10000.0
P99_BUDGET_MS = 50.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def _seed(settings: Settings, clients: int) -> list[tuple[str, str]]:
    db = Database(settings)
    try:
        await db.migrate()
        now = datetime.now(UTC)
        credentials = []
        async with db.write() as session:
            for n in range(clients):
                account_id = f"{n:032x}"
                token, device = f"hcl_bench{n:04d}{'x' * 30}", f"bench-device-{n:04d}"
                session.add(
                    Account(
                        id=account_id,
                        issuer="local",
                        subject=f"bench-{n}",
                        email=None,
                        email_verified=False,
                        last_seq=0,
                        created_at=now,
                    )
                )
                await session.flush()
                session.add(
                    LocalToken(
                        token_hash=token_hash(token),
                        account_id=account_id,
                        device_id=device,
                        kind="access",
                        family_id=account_id,
                        auth_time=now,
                        expires_at=now + timedelta(hours=2),
                    )
                )
                credentials.append((token, device))
        return credentials
    finally:
        await db.close()


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


class _Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync_server", "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchmarkUnavailableError("sync server exited at start")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise BenchmarkUnavailableError("sync server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


async def _level(
    url: str, credentials: list[tuple[str, str]], clients: int, round_no: int
) -> tuple[float, list[float], float, list[float]]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    push_latency: list[float] = []
    pull_latency: list[float] = []
    # One connection pool per phase: uvicorn closes idle keep-alive connections after 5 s,
    # and reusing one of those races with the close.
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

        async def push_client(n: int) -> int:
            token, device = credentials[n]
            headers = {"Authorization": f"Bearer {token}", "X-Hushchat-Device": device}
            sent = 0
            for b in range(BATCHES_PER_CLIENT[clients]):
                records = [
                    {
                        "id": f"r{round_no}-{b}-{i}",
                        "kind": "message",
                        "revision": 1,
                        "key_id": "k",
                        "payload": PAYLOAD,
                    }
                    for i in range(BATCH)
                ]
                started = time.perf_counter()
                response = await http.post(
                    "/v1/sync/push", json={"records": records}, headers=headers
                )
                push_latency.append(time.perf_counter() - started)
                response.raise_for_status()
                sent += BATCH
            return sent

        async def pull_client(n: int) -> int:
            token, device = credentials[n]
            headers = {"Authorization": f"Bearer {token}", "X-Hushchat-Device": device}
            cursor, received = 0, 0
            while True:
                started = time.perf_counter()
                response = await http.get(
                    "/v1/sync/changes", params={"cursor": cursor, "limit": 1000}, headers=headers
                )
                pull_latency.append(time.perf_counter() - started)
                response.raise_for_status()
                page = response.json()
                received += len(page["changes"])
                cursor = page["cursor"]
                if not page["has_more"]:
                    return received

        started = time.perf_counter()
        pushed = sum(await asyncio.gather(*[push_client(n) for n in range(clients)]))
        push_rate = pushed / (time.perf_counter() - started)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        pulled = sum(await asyncio.gather(*[pull_client(n) for n in range(clients)]))
        pull_rate = pulled / (time.perf_counter() - started)
    return push_rate, push_latency, pull_rate, pull_latency


async def _backend(label: str, database_url: str | None, workdir: Path) -> list[Row]:
    values = generate_secrets()
    settings = Settings(
        **{k.lower(): v for k, v in values.items()},
        data_dir=workdir / label,
        database_url=database_url,
    )
    if database_url:
        await _reset_postgres(database_url)
    credentials = await _seed(settings, max(LEVELS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env.update({f"HUSHCHAT_SYNC_{k}": v for k, v in values.items()})
    env.update(
        HUSHCHAT_SYNC_DATA_DIR=str(settings.data_dir),
        HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED="true",
        HUSHCHAT_SYNC_SMTP_HOST="127.0.0.1",
        HUSHCHAT_SYNC_RATE_LIMITS_ENABLED="false",
        HUSHCHAT_SYNC_LOG_LEVEL="WARNING",
        HUSHCHAT_SYNC_DB_POOL_SIZE="20",
    )
    if database_url:
        env["HUSHCHAT_SYNC_DATABASE_URL"] = database_url
    server = _Server(env, workdir / f"{label}.log")
    rows: list[Row] = []
    try:
        await server.wait_ready()
        for round_no, clients in enumerate(LEVELS):
            push_rate, push_lat, pull_rate, pull_lat = await _level(
                server.url, credentials, clients, round_no
            )
            tag = f"sync {label}, {clients} client{'s' if clients > 1 else ''}"
            rows += [
                Row(
                    f"{tag}: push",
                    push_rate,
                    "records/s",
                    PUSH_BUDGET,
                    higher_is_better=True,
                    note=f"batches of {BATCH}",
                ),
                Row(f"{tag}: push p50", statistics.median(push_lat) * 1000, "ms"),
                Row(
                    f"{tag}: push p99",
                    _percentile(push_lat, 0.99) * 1000,
                    "ms",
                    P99_BUDGET_MS if clients == 100 else None,
                ),
                Row(
                    f"{tag}: pull",
                    pull_rate,
                    "records/s",
                    PULL_BUDGET,
                    higher_is_better=True,
                    note="pages of 1,000",
                ),
                Row(f"{tag}: pull p50", statistics.median(pull_lat) * 1000, "ms"),
                Row(
                    f"{tag}: pull p99",
                    _percentile(pull_lat, 0.99) * 1000,
                    "ms",
                    P99_BUDGET_MS if clients == 100 else None,
                ),
            ]
    finally:
        server.stop()
    return rows


async def _all() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-sync-") as tmp:
        rows = await _backend("SQLite", None, Path(tmp))
        postgres = os.environ.get("HUSHCHAT_TEST_POSTGRES_URL")
        if postgres:
            rows += await _backend("PostgreSQL", postgres, Path(tmp))
        else:
            rows.append(
                Row("sync PostgreSQL", 0.0, note="skipped: HUSHCHAT_TEST_POSTGRES_URL unset")
            )
        return rows


def run() -> list[Row]:
    """Measure push/pull on SQLite (and PostgreSQL when its URL is set)."""
    return asyncio.run(_all())

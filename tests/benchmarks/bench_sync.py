"""Sync-server throughput and latency (DESIGN §8).

Starts ``hushchat-sync serve`` as a subprocess on loopback (SQLite in a temp dir, and
PostgreSQL too when ``HUSHCHAT_TEST_POSTGRES_URL`` is set), seeds one account + local
access token per simulated client directly in the database, then drives it from a bounded
async load generator in this process: plain HTTP/1.1 on keep-alive sockets with a fresh
DPoP proof per request signed with ``cryptography`` (``_RawDevice``), because httpx cost the
generator more CPU per request than the server and the two share the machine's cores; it
parses answers with orjson (with one client the two take turns, so the generator's own
time is in every page: ``json.loads`` of a page took 0.13 ms of its 0.40).
Two kinds of figures:

* **Throughput (closed-loop bursts)** at 1, 10 and 100 clients: each client pushes batches
  of 100 records (256-byte payloads) back to back, then pulls everything back in pages of
  100. Set-up is not measured: before the pushes, each client makes one pull of an empty
  page (its device is registered, the server's statements prepared). Records/s is the
  budgeted figure (DESIGN §8 on SQLite; on PostgreSQL the server's own floors: push
  ≥ 12,000 records/s, pull ≥ 60,000 records/s). The per-request p50/p99 of
  these bursts measure queueing at saturation (100 clients x 100 records arrive at the same
  instant), not the latency a client sees; they are labelled "burst" and carry no budget.
* **Latency (open loop)**: 25 and 100 simulated devices, each running one sync cycle per second
  (push a batch of 10 records, then pull its changes) on a fixed schedule with a random
  phase, for ``LATENCY_SECONDS``. Cycles start on schedule whether or not earlier ones have
  finished, so a slow server is not hidden by clients waiting for it. The offered load is
  printed with the figures; p50/p99 per request of this run are what the DESIGN §8
  "p99 ≤ 50 ms at 100 concurrent clients" budget is about (tightened to 20 ms for SQLite
  with one process, docs/server.md "Performance"). Set-up is not measured: every device
  connects and is registered (one push + pull, all finished) before the schedule starts.
  The server's CPU time (its processes' user + system time, read with psutil before and
  after the run) divided by the requests it answered is the "CPU per request" figure
  (budget 0.8 ms at 100 devices on SQLite with one process).
* **Propagation (long-poll)**: a second device of one account waits on
  ``GET /v1/sync/changes?wait=30`` while the first pushes one record; the time from sending
  the push to the waiting pull's answer, ``PROPAGATION_ROUNDS`` times (DESIGN §8: a change
  is visible on another device within 2 s). With several workers the pull and the push
  may land on different processes, and the pull sees the change by re-checking the
  database (``LONG_POLL_INTERVAL_SECONDS``).

Bounded: a fixed number of requests per level, a timeout per request, loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.sync.dpop import DeviceKey, access_token_hash
from sync_server.auth.dpop import jwk_thumbprint
from sync_server.auth.oidc import token_hash
from sync_server.db import Database
from sync_server.models import Account, LocalToken
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.integration.sync_server.support import auth_headers

#: A simulated device: its access token and its DPoP key (proofs are made per request,
#: by the load generator, with the desktop client's own code).
Credentials = tuple[str, DeviceKey]

LEVELS = (1, 10, 100)
BATCH = 100
PAYLOAD = base64.b64encode(os.urandom(256)).decode()
# Batches per client at each level: 20,000 records per level, so that a phase lasts long
# enough for a steady figure (one client pulled 5,000 records in about 90 ms before).
BATCHES_PER_CLIENT = {1: 200, 10: 20, 100: 2}
PULL_PAGE = 100
#: A cursor past every record of a run: the set-up pull's page is empty.
WARM_CURSOR = 10**9
PUSH_BUDGET = {"SQLite": 2000.0, "PostgreSQL": 12000.0}
PULL_BUDGET = {"SQLite": 10000.0, "PostgreSQL": 60000.0}
P99_BUDGET_MS = 50.0
#: p99 of all requests at 100 devices on SQLite with one server process.
P99_ONE_PROCESS_BUDGET_MS = 20.0
#: Server CPU time per answered request at 100 devices on SQLite with one server process
#: (the configuration the budget was set for, side by side with a Rust record-sync server);
#: PostgreSQL and several processes print the figure without a budget.
CPU_PER_REQUEST_BUDGET_MS = 0.8
# Open-loop latency scenario.
LATENCY_LEVELS = (25, 100)  # devices; 100 is the budgeted level, 25 shows an unloaded server
LATENCY_PERIOD = 1.0  # seconds between two sync cycles of one device
LATENCY_SECONDS = 20.0  # schedule length: LATENCY_SECONDS / LATENCY_PERIOD cycles per device
LATENCY_BATCH = 10  # records pushed per cycle
LATENCY_TIMEOUT = 10.0  # per request; a timed-out request counts as an error
# Long-poll propagation: rounds of "B waits, A pushes one record".
PROPAGATION_ROUNDS = 30
PROPAGATION_BUDGET_MS = 2000.0
# Server processes for the runs (`serve --workers`); 1 is the default of `serve`. The
# second figure set is for SQLite only (PostgreSQL scales out with replicas anyway).
WORKERS = (1, 2)
#: Narrow a run (A/B comparisons on a shared machine): worker counts ("1", "1,2"), parts
#: ("throughput,latency,propagation"), open-loop device counts ("100") and databases
#: ("SQLite,PostgreSQL"; PostgreSQL needs HUSHCHAT_TEST_POSTGRES_URL), comma-separated.
WORKERS_ENV = "HUSHCHAT_BENCH_SYNC_WORKERS"
PARTS_ENV = "HUSHCHAT_BENCH_SYNC_PARTS"
DEVICES_ENV = "HUSHCHAT_BENCH_SYNC_DEVICES"
BACKENDS_ENV = "HUSHCHAT_BENCH_SYNC_BACKENDS"


def _chosen(name: str, default: tuple[Any, ...]) -> tuple[Any, ...]:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    kind = type(default[0])
    return tuple(kind(part.strip()) for part in value.split(",") if part.strip())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def _seed(settings: Settings, clients: int) -> list[Credentials]:
    db = Database(settings)
    try:
        await db.migrate()
        now = datetime.now(UTC)
        credentials = []
        async with db.write() as session:
            for n in range(clients):
                account_id = f"{n:032x}"
                token, key = f"hcl_bench{n:04d}{'x' * 30}", DeviceKey.generate()
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
                        device_id=key.device_id,
                        kind="access",
                        family_id=account_id,
                        auth_time=now,
                        expires_at=now + timedelta(hours=2),
                    )
                )
                credentials.append((token, key))
        return credentials
    finally:
        await db.close()


async def _seed_second_device(settings: Settings) -> Credentials:
    """Another device (token and key) of the first seeded account."""
    db = Database(settings)
    try:
        now = datetime.now(UTC)
        token, key = f"hcl_second{'y' * 34}", DeviceKey.generate()
        async with db.write() as session:
            session.add(
                LocalToken(
                    token_hash=token_hash(token),
                    account_id=f"{0:032x}",
                    device_id=key.device_id,
                    kind="access",
                    family_id="second-device",
                    auth_time=now,
                    expires_at=now + timedelta(hours=2),
                )
            )
        return token, key
    finally:
        await db.close()


async def _propagation(url: str, pusher: Credentials, waiter: Credentials, tag: str) -> list[float]:
    """Seconds from sending a push to the other device's waiting pull answering."""
    delays: list[float] = []
    async with _clients(url, 2, 60) as (push_http, pull_http):

        async def pull(cursor: int, wait: int) -> dict[str, Any]:
            headers = auth_headers(waiter[0], "GET", "/v1/sync/changes", waiter[1], base_url=url)
            params = {"cursor": cursor, "limit": 1000, "wait": wait}
            response = await pull_http.get("/v1/sync/changes", params=params, headers=headers)
            response.raise_for_status()
            page: dict[str, Any] = response.json()
            return page

        cursor = 0
        while True:
            page = await pull(cursor, 0)
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        for number in range(PROPAGATION_ROUNDS):
            waiting = asyncio.create_task(pull(cursor, 30))
            await asyncio.sleep(0.3)  # the pull is waiting on the server now
            body = {"records": [_one_record(f"{tag}-{number}")]}
            headers = auth_headers(pusher[0], "POST", "/v1/sync/push", pusher[1], base_url=url)
            started = time.perf_counter()
            (await push_http.post("/v1/sync/push", json=body, headers=headers)).raise_for_status()
            page = await waiting
            delays.append(time.perf_counter() - started)
            if not page["changes"]:
                raise BenchmarkUnavailableError("a waiting pull answered without the change")
            cursor = page["cursor"]
    return delays


def _one_record(record_id: str) -> dict[str, Any]:
    return {"id": record_id, "kind": "message", "revision": 1, "key_id": "k", "payload": PAYLOAD}


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


class _Server:
    def __init__(self, env: dict[str, str], log: Path, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        command = [sys.executable, "-m", "sync_server", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--workers", str(workers)],
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

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its worker processes so far.

        A worker that exited is not counted; the workers of ``serve --workers N`` live as
        long as the server.
        """
        total = 0.0
        root = psutil.Process(self.process.pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@contextlib.asynccontextmanager
async def _clients(url: str, count: int, seconds: float) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client (own connection pool) per simulated device.

    A single pool shared by 100 busy tasks costs the load generator time quadratic in the
    number of waiting requests (httpcore assigns queued requests to connections on every
    event), which would be measured as server latency.
    """
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    timeout=seconds,
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
                )
            )
            for _ in range(count)
        ]


async def _level(
    url: str, credentials: list[Credentials], clients: int, round_no: str
) -> tuple[float, list[float], float, list[float]]:
    push_latency: list[float] = []
    pull_latency: list[float] = []

    async def push_client(device: _RawDevice, n: int) -> int:
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
            body = json.dumps({"records": records}).encode()
            started = time.perf_counter()
            await device.call("POST", "/v1/sync/push", body=body)
            push_latency.append(time.perf_counter() - started)
            sent += BATCH
        return sent

    async def pull_client(device: _RawDevice, n: int) -> int:
        cursor, received = 0, 0
        while True:
            started = time.perf_counter()
            page = await device.call(
                "GET", "/v1/sync/changes", f"?cursor={cursor}&limit={PULL_PAGE}"
            )
            pull_latency.append(time.perf_counter() - started)
            received += len(page["changes"])
            cursor = page["cursor"]
            if not page["has_more"]:
                return received

    # Set-up, not measured (as in the open loop): every client's first request registers
    # its device (a write), and the server prepares its statements on first use. An empty
    # page (a cursor past everything) does both without adding records to the phases.
    devices = [_RawDevice(url, credentials[n], timeout=120) for n in range(clients)]
    try:
        await asyncio.gather(
            *[
                device.call("GET", "/v1/sync/changes", f"?cursor={WARM_CURSOR}")
                for device in devices
            ]
        )
    finally:
        for device in devices:
            device.close()
    # The same lean client as the open loop (see _RawDevice); fresh connections per phase.
    devices = [_RawDevice(url, credentials[n], timeout=120) for n in range(clients)]
    try:
        started = time.perf_counter()
        pushed = sum(await asyncio.gather(*[push_client(devices[n], n) for n in range(clients)]))
        push_rate = pushed / (time.perf_counter() - started)
    finally:
        for device in devices:
            device.close()
    devices = [_RawDevice(url, credentials[n], timeout=120) for n in range(clients)]
    try:
        started = time.perf_counter()
        pulled = sum(await asyncio.gather(*[pull_client(devices[n], n) for n in range(clients)]))
        pull_rate = pulled / (time.perf_counter() - started)
    finally:
        for device in devices:
            device.close()
    return push_rate, push_latency, pull_rate, pull_latency


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _ProofSigner:
    """Fresh DPoP proofs for one device key, made with ``cryptography`` directly.

    The same proofs as :meth:`DeviceKey.proof` (a new ``jti`` and ``iat`` per request),
    at a fraction of the load generator's CPU: the open loop must measure the server,
    and on two shared cores a costly load generator takes the server's CPU.
    """

    def __init__(self, key: DeviceKey, token: str) -> None:
        private = serialization.load_pem_private_key(key.to_pem(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise TypeError("a device key is an EC key")
        self._key = private
        jwk = key.public_jwk
        if jwk_thumbprint(jwk) != key.device_id:
            raise ValueError("the key's thumbprint is not its device id")
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
        self._header = _b64url(json.dumps(header, separators=(",", ":")).encode())
        self._ath = access_token_hash(token)
        self.headers = f"Authorization: Bearer {token}\r\nX-Hushchat-Device: {key.device_id}\r\n"

    def proof(self, method: str, url: str) -> str:
        """A proof for ``method`` on ``url`` (no query)."""
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
            "ath": self._ath,
        }
        signing = self._header + "." + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        r, s = decode_dss_signature(self._key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return signing + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class _RawConnection:
    """One keep-alive HTTP/1.1 connection, with just enough client for the open loop.

    httpx cost the load generator about 6 ms of CPU per request here, more than the
    server; this costs a tenth of that, so the two cores go to the server.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._host = f"{host}:{port}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, headers: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(*self._address)
        head = f"{method} {target} HTTP/1.1\r\nHost: ".encode() + self._host + b"\r\n"
        head += headers.encode()
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        self._writer.write(head + b"\r\n" + (body or b""))
        answer = await self._reader.readuntil(b"\r\n\r\n")
        status = int(answer[9:12])
        length, close = 0, False
        for line in answer.lower().split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
            elif line.startswith(b"connection:") and b"close" in line:
                close = True
        content = await self._reader.readexactly(length)
        if close:
            self.close()
        return status, content

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class _RawDevice:
    """A device's connections (the open loop's cycles may overlap)."""

    def __init__(
        self, url: str, credentials: Credentials, timeout: float = LATENCY_TIMEOUT
    ) -> None:
        parts = urlsplit(url)
        self._timeout = timeout
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._url = url.rstrip("/")
        self.signer = _ProofSigner(credentials[1], credentials[0])
        self._idle: list[_RawConnection] = []
        # At most 4 connections per device, as the httpx clients had: a device whose
        # cycles pile up waits for one (counted in its latency) instead of opening more.
        self._slots = asyncio.Semaphore(4)

    async def call(self, method: str, path: str, query: str = "", body: bytes | None = None) -> Any:
        """One request; the JSON answer, or ``httpx.HTTPError`` on failure or timeout."""
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                connection = self._idle.pop() if self._idle else _RawConnection(*self._address)
                proof = self.signer.proof(method, self._url + path)
                headers = f"{self.signer.headers}DPoP: {proof}\r\n"
                try:
                    status, content = await connection.request(method, path + query, headers, body)
                except BaseException:
                    connection.close()
                    raise
                self._idle.append(connection)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise httpx.TransportError(f"{method} {path}: {exc!r}") from exc
        if status != 200:
            raise httpx.HTTPError(f"{method} {path}: HTTP {status}")
        return orjson.loads(content)  # the server's own JSON library: the least overhead

    def close(self) -> None:
        """Close the idle connections."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class _OpenLoop:
    """Result of the open-loop latency run."""

    def __init__(self) -> None:
        self.push: list[float] = []
        self.pull: list[float] = []
        self.errors = 0
        self.requests = 0
        self.answered = 0  # answered requests of the schedule (set-up cycles not counted)
        self.cpu = 0.0  # server CPU seconds over the run
        self.client_cpu = 0.0  # the load generator's (this process's) CPU seconds
        self.elapsed = 0.0
        self.finished = 0  # cycles that completed or failed
        self.error_kinds: dict[str, int] = {}


async def _open_loop(
    server: _Server, credentials: list[Credentials], devices: int, tag: str
) -> _OpenLoop:
    """``devices`` devices, one push+pull cycle per ``LATENCY_PERIOD`` each."""
    url = server.url
    result = _OpenLoop()
    cycles = round(LATENCY_SECONDS / LATENCY_PERIOD)
    rng = random.Random(20261125)
    raw = [_RawDevice(url, credentials[n]) for n in range(devices)]
    try:

        async def cycle(device: int, number: int, cursor: list[int], counted: bool = True) -> None:
            client = raw[device]
            records = [
                {
                    "id": f"{tag}-{number}-{i}",
                    "kind": "message",
                    "revision": 1,
                    "key_id": "k",
                    "payload": PAYLOAD,
                }
                for i in range(LATENCY_BATCH)
            ]
            try:
                body = json.dumps({"records": records}).encode()
                started = time.perf_counter()
                await client.call("POST", "/v1/sync/push", body=body)
                result.answered += counted
                pushed = time.perf_counter()
                pull_started = time.perf_counter()
                page = await client.call("GET", "/v1/sync/changes", f"?cursor={cursor[0]}")
                result.answered += counted
                done = time.perf_counter()
                cursor[0] = max(cursor[0], page["cursor"])
            except httpx.HTTPError as exc:
                kind = str(exc).split(":", 2)[-1].strip()[:40]
                result.error_kinds[kind] = result.error_kinds.get(kind, 0) + 1
                result.errors += 1
                result.finished += counted
                return
            if counted:
                result.finished += 1
                result.push.append(pushed - started)
                result.pull.append(done - pull_started)
                result.requests += 2

        async def device(n: int) -> None:
            phase = rng.random() * LATENCY_PERIOD
            cursor = cursors[n]
            tasks = []
            for number in range(cycles):
                delay = start + phase + number * LATENCY_PERIOD - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Open loop: the next cycle starts on schedule even if this one is slow.
                tasks.append(asyncio.create_task(cycle(n, number, cursor)))
            await asyncio.gather(*tasks)

        # Set-up, not measured: every device opens its connection and is registered (its
        # first request writes the device row) before the schedule starts, so the backlog
        # of 100 registrations at once does not land in the first measured seconds.
        cursors = [[0] for _ in range(devices)]
        await asyncio.gather(*(cycle(n, -1, cursors[n], counted=False) for n in range(devices)))
        start = time.perf_counter() + 0.5
        cpu_before = server.cpu_seconds()
        client_before = time.process_time()
        runs = [asyncio.create_task(device(n)) for n in range(devices)]
        _, late = await asyncio.wait(runs, timeout=LATENCY_SECONDS + 4 * LATENCY_TIMEOUT)
        for run in late:  # a server that fell this far behind: its unfinished cycles fail
            run.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        result.errors += devices * cycles - result.finished
        result.cpu = server.cpu_seconds() - cpu_before
        result.client_cpu = time.process_time() - client_before
        result.elapsed = time.perf_counter() - start
    finally:
        for client in raw:
            client.close()
    return result


def _throughput_rows(
    label: str, tag: str, clients: int, figures: tuple[float, list[float], float, list[float]]
) -> list[Row]:
    push_rate, push_lat, pull_rate, pull_lat = figures
    burst = "burst " if clients > 1 else ""
    return [
        Row(
            f"{tag}: push",
            push_rate,
            "records/s",
            PUSH_BUDGET[label],
            higher_is_better=True,
            note=f"batches of {BATCH}",
        ),
        Row(f"{tag}: push {burst}p50", statistics.median(push_lat) * 1000, "ms"),
        Row(f"{tag}: push {burst}p99", _percentile(push_lat, 0.99) * 1000, "ms"),
        Row(
            f"{tag}: pull",
            pull_rate,
            "records/s",
            PULL_BUDGET[label],
            higher_is_better=True,
            note=f"pages of {PULL_PAGE}",
        ),
        Row(f"{tag}: pull {burst}p50", statistics.median(pull_lat) * 1000, "ms"),
        Row(f"{tag}: pull {burst}p99", _percentile(pull_lat, 0.99) * 1000, "ms"),
    ]


def _latency_rows(tag: str, devices: int, run: _OpenLoop, *, tight: bool) -> list[Row]:
    """``tight``: SQLite with one process, where the issue's budgets of CPU per request
    (0.8 ms) and p99 (20 ms instead of DESIGN's 50 ms) apply."""
    rate = devices / LATENCY_PERIOD
    budget = P99_BUDGET_MS if devices == 100 else None
    all_budget = P99_ONE_PROCESS_BUDGET_MS if tight and devices == 100 else budget
    offered = (
        f"offered {2 * rate:,.0f} req/s = {rate:,.0f} pushes of {LATENCY_BATCH} "
        f"+ {rate:,.0f} pulls/s"
    )
    both = run.push + run.pull
    if not both:
        return [Row(f"{tag}: no request completed", float(run.errors), "errors")]
    return [
        Row(f"{tag}: offered load", 2 * rate, "req/s", note=offered),
        Row(f"{tag}: achieved", run.requests / run.elapsed, "req/s"),
        Row(f"{tag}: push p50", statistics.median(run.push) * 1000, "ms"),
        Row(f"{tag}: push p99", _percentile(run.push, 0.99) * 1000, "ms", budget),
        Row(f"{tag}: pull p50", statistics.median(run.pull) * 1000, "ms"),
        Row(f"{tag}: pull p99", _percentile(run.pull, 0.99) * 1000, "ms", budget),
        Row(f"{tag}: all requests p99", _percentile(both, 0.99) * 1000, "ms", all_budget),
        Row(
            f"{tag}: errors (timeouts, failures)",
            float(run.errors),
            "requests",
            note=", ".join(f"{n} {kind}" for kind, n in sorted(run.error_kinds.items())),
        ),
        Row(
            f"{tag}: server CPU per request",
            run.cpu / run.answered * 1000 if run.answered else float("inf"),
            "ms",
            CPU_PER_REQUEST_BUDGET_MS if tight and devices == 100 else None,
            note=f"{run.cpu:.1f} s CPU / {run.answered} requests",
        ),
        Row(
            f"{tag}: load generator CPU per request",
            run.client_cpu / run.answered * 1000 if run.answered else float("inf"),
            "ms",
            note=f"{run.client_cpu:.1f} s CPU over {run.elapsed:.1f} s",
        ),
    ]


def server_env(values: dict[str, str], settings: Settings) -> dict[str, str]:
    """The environment of a benchmark's ``serve``: this process's, without its
    ``HUSHCHAT_SYNC_*``, plus the generated secrets ``values``, ``settings``' data folder and
    database, local accounts on, rate limits off, warnings only, a pool of 20."""
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
    if settings.database_url:
        env["HUSHCHAT_SYNC_DATABASE_URL"] = settings.database_url
    return env


async def _backend(label: str, database_url: str | None, workdir: Path) -> list[Row]:
    values = generate_secrets()
    settings = Settings(
        **{k.lower(): v for k, v in values.items()},
        data_dir=workdir / label,
        database_url=database_url,
    )
    if database_url:
        await _reset_postgres(database_url)
    credentials = await _seed(settings, max(*LEVELS, *LATENCY_LEVELS))
    second = await _seed_second_device(settings)
    env = server_env(values, settings)
    rows: list[Row] = []
    parts = _chosen(PARTS_ENV, ("throughput", "latency", "propagation"))
    workers_chosen = _chosen(WORKERS_ENV, WORKERS)
    for workers in workers_chosen if database_url is None else workers_chosen[:1]:
        server = _Server(env, workdir / f"{label}.log", workers)
        process = f"{workers} worker{'s' if workers > 1 else ''}"
        try:
            await server.wait_ready()
            for clients in LEVELS if "throughput" in parts else ():
                figures = await _level(server.url, credentials, clients, f"w{workers}c{clients}")
                many = "s" if clients > 1 else ""
                tag = f"sync {label} ({process}), {clients} client{many}"
                rows += _throughput_rows(label, tag, clients, figures)
            for devices in _chosen(DEVICES_ENV, LATENCY_LEVELS) if "latency" in parts else ():
                tag = (
                    f"sync {label} ({process}), open loop, {devices} devices "
                    f"x 1 cycle/{LATENCY_PERIOD:g} s"
                )
                run = await _open_loop(server, credentials, devices, f"w{workers}d{devices}")
                tight = database_url is None and workers == 1
                rows += _latency_rows(tag, devices, run, tight=tight)
            if "propagation" not in parts:
                continue
            delays = await _propagation(server.url, credentials[0], second, f"w{workers}p")
            tag = f"sync {label} ({process}), change on A seen by B's long-poll"
            rows += [
                Row(f"{tag}: p50", statistics.median(delays) * 1000, "ms"),
                Row(
                    f"{tag}: p99",
                    _percentile(delays, 0.99) * 1000,
                    "ms",
                    PROPAGATION_BUDGET_MS,
                    note=f"{PROPAGATION_ROUNDS} rounds",
                ),
            ]
        finally:
            server.stop()
    return rows


async def _all() -> list[Row]:
    backends = _chosen(BACKENDS_ENV, ("SQLite", "PostgreSQL"))
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-sync-") as tmp:
        rows = await _backend("SQLite", None, Path(tmp)) if "SQLite" in backends else []
        postgres = os.environ.get("HUSHCHAT_TEST_POSTGRES_URL")
        if "PostgreSQL" in backends and postgres:
            rows += await _backend("PostgreSQL", postgres, Path(tmp))
        elif "PostgreSQL" in backends:
            rows.append(
                Row("sync PostgreSQL", 0.0, note="skipped: HUSHCHAT_TEST_POSTGRES_URL unset")
            )
        return rows


def run() -> list[Row]:
    """Measure push/pull on SQLite (and PostgreSQL when its URL is set)."""
    return asyncio.run(_all())

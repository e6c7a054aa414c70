"""Two ``hushchat-sync serve`` processes on different ports behind one public URL, sharing
one PostgreSQL database and one real Redis (docs/server.md, "Running several processes"):

* a change pushed through one process reaches a long-poll waiting on the other within 2 s
  (the waiting process re-checks the database; no in-process wake crosses processes);
* a DPoP proof accepted by one process is refused by the other (the jti replay cache
  lives in Redis, not in each process);
* the per-account rate limit is one budget for both processes (counted in Redis).

Redis is started by the test on a free loopback port, with persistence off, and stopped
at the end; CI installs Debian's ``redis-server`` (.ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.integration.sync_server.conftest import POSTGRES_ENV, _reset_postgres
from tests.integration.sync_server.support import (
    auth_headers,
    device_key,
    record,
    seed_local_token,
    skip_or_fail,
    stop_process,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PUBLIC_URL = "https://sync.example.test"  # what a load balancer in front of both answers to
USER_LIMIT = 12  # requests per account per minute, shared by both processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway Redis on loopback (no persistence), stopped after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server is not installed (Debian package redis-server)")
    assert binary is not None
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "redis-server exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"async+redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


@dataclass
class Deployment:
    token: str
    urls: tuple[str, str]
    logs: tuple[Path, Path]

    def headers(self, method: str, path: str) -> dict[str, str]:
        return auth_headers(
            self.token, method, path, device_key("shared-deployment"), base_url=PUBLIC_URL
        )

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs)


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str) -> Iterator[Deployment]:
    database_url = os.environ.get(POSTGRES_ENV)
    if not database_url:
        skip_or_fail(f"{POSTGRES_ENV} is not set (run .ci/setup-server-peers)")
    assert database_url is not None
    asyncio.run(_reset_postgres(database_url))
    values = generate_secrets()
    settings = Settings(
        **{k.lower(): v for k, v in values.items()},
        data_dir=tmp_path / "data",
        database_url=database_url,
    )
    token = "hcl_" + "s" * 40
    asyncio.run(seed_local_token(settings, token, device_key("shared-deployment").device_id))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env.update({f"HUSHCHAT_SYNC_{k}": v for k, v in values.items()})
    env.update(
        HUSHCHAT_SYNC_DATA_DIR=str(settings.data_dir),
        HUSHCHAT_SYNC_DATABASE_URL=database_url,
        HUSHCHAT_SYNC_PUBLIC_URL=PUBLIC_URL,
        HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED="true",
        HUSHCHAT_SYNC_SMTP_HOST="127.0.0.1",
        HUSHCHAT_SYNC_RATE_LIMIT_STORAGE_URL=redis_url,
        HUSHCHAT_SYNC_RATE_LIMIT_USER=f"{USER_LIMIT}/minute",
    )
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    logs: list[Path] = []
    try:
        for name in ("one", "two"):
            port = _free_port()
            log = tmp_path / f"serve-{name}.log"
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "sync_server", "serve", "--port", str(port)],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
            logs.append(log)
        found = Deployment(token, (urls[0], urls[1]), (logs[0], logs[1]))
        deadline = time.monotonic() + 60
        for process, url in zip(processes, urls, strict=True):
            while True:
                assert process.poll() is None, found.log_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                        break
                assert time.monotonic() < deadline, found.log_text()
                time.sleep(0.2)
        yield found
        for process in processes:
            stop_process(process)
            # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
            assert process.returncode in (0, -signal.SIGTERM), found.log_text()
        assert found.log_text().count("Application shutdown complete") == 2
        assert "Traceback" not in found.log_text()
    finally:
        for process in processes:
            if process.poll() is None:
                stop_process(process)


def test_two_processes_share_the_database_the_replay_cache_and_the_limits(
    deployment: Deployment,
) -> None:
    one, two = deployment.urls
    with (
        httpx.Client(base_url=one, timeout=30) as first,
        httpx.Client(base_url=two, timeout=30) as second,
    ):
        # 1. A long-poll on the second process sees a push through the first in ≤ 2 s.
        def long_poll() -> tuple[float, list[str]]:
            answer = second.get(
                "/v1/sync/changes",
                params={"cursor": 0, "wait": 20},
                headers=deployment.headers("GET", "/v1/sync/changes"),
            )
            assert answer.status_code == 200, answer.text
            return time.monotonic(), [c["id"] for c in answer.json()["changes"]]

        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(long_poll)
            time.sleep(1.0)  # the poll is parked on the second process
            assert not waiting.done()
            sent = time.monotonic()
            pushed = first.post(
                "/v1/sync/push",
                json={"records": [record("shared-1")]},
                headers=deployment.headers("POST", "/v1/sync/push"),
            )
            assert pushed.status_code == 200, pushed.text
            answered, ids = waiting.result(timeout=30)
        assert ids == ["shared-1"]
        assert answered - sent <= 2.0, f"seen after {answered - sent:.2f} s"

        # 2. A proof used once on the first process is a replay on the second.
        headers = deployment.headers("GET", "/v1/sync/changes")
        assert first.get("/v1/sync/changes", headers=headers).status_code == 200
        replayed = second.get("/v1/sync/changes", headers=headers)
        assert replayed.status_code == 401, replayed.text
        assert "already used" in replayed.text

        # 3. One per-account budget: requests alternate between the processes. Three
        # were counted above (long-poll, push, first changes); with a budget per process
        # every one of these would pass.
        statuses = [
            (first if n % 2 else second)
            .get("/v1/sync/changes", headers=deployment.headers("GET", "/v1/sync/changes"))
            .status_code
            for n in range(USER_LIMIT)
        ]
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) <= USER_LIMIT - 3, statuses

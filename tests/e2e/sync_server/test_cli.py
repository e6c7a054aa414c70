"""``hushchat-sync`` as a subprocess: gen-keys → check-config → migrate → serve → healthz,
and a server SIGKILLed during a batch push keeps the batch whole or not at all."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sync_server.auth.oidc import token_hash
from tests.integration.sync_server.support import auth_headers, device_key

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync_server", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env["HUSHCHAT_SYNC_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.fixture
def keyed_env(tmp_path: Path) -> dict[str, str]:
    """Environment with only what gen-keys printed (plus the data dir)."""
    env = _base_env(tmp_path)
    generated = _cli("gen-keys", env=env)
    assert generated.returncode == 0, generated.stderr
    lines = generated.stdout.strip().splitlines()
    assert {line.split("=", 1)[0] for line in lines} == {
        "HUSHCHAT_SYNC_SECRET_KEY",
        "HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY",
        "HUSHCHAT_SYNC_ESCROW_KEK",
        "HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY",
    }
    env.update(line.split("=", 1) for line in lines)
    return env


class Server:
    """``hushchat-sync serve`` on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync_server",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("server did not start: " + log.read_text())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[Server]]:
    """Started servers are stopped at the end."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.stop()


def test_missing_secret_is_named(tmp_path: Path) -> None:
    result = _cli("serve", "--port", "0", env=_base_env(tmp_path))
    assert result.returncode == 2
    assert "HUSHCHAT_SYNC_SECRET_KEY" in result.stderr
    assert "HUSHCHAT_SYNC_ESCROW_KEK" in result.stderr
    placeholder = {**_base_env(tmp_path), "HUSHCHAT_SYNC_SECRET_KEY": "change-me"}
    checked = _cli("check-config", env=placeholder)
    assert checked.returncode == 1
    assert "SECRET_KEY is a placeholder" in checked.stdout


def test_gen_keys_then_serve_healthz(
    keyed_env: dict[str, str], tmp_path: Path, serve: list[Server]
) -> None:
    checked = _cli("check-config", env=keyed_env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "escrow key unwraps" in checked.stdout
    migrated = _cli("migrate", env=keyed_env)
    assert migrated.returncode == 0, migrated.stderr
    serve.append(Server(keyed_env, tmp_path / "server.log"))
    server = serve[0]
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert httpx.get(server.url + "/v1/meta").json()["escrow"]["key_id"]
    server.stop()
    log = (tmp_path / "server.log").read_text()
    assert '"logger": "sync_server.access"' in log
    assert (tmp_path / "data" / "hushchat-sync.sqlite3").exists()


def test_secrets_from_files(keyed_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(keyed_env)
    secret_file = tmp_path / "kek"
    secret_file.write_text(env.pop("HUSHCHAT_SYNC_ESCROW_KEK") + "\n")
    env["HUSHCHAT_SYNC_ESCROW_KEK_FILE"] = str(secret_file)
    checked = _cli("check-config", env=env)
    assert checked.returncode == 0, checked.stdout


def _seed_local_token(env: dict[str, str], token: str, device: str) -> None:
    """Create an account and a local access token directly in the database."""
    code = f"""
import asyncio
from datetime import UTC, datetime, timedelta
from sync_server.db import Database
from sync_server.models import Account, LocalToken
from sync_server.settings import load_settings

async def main():
    db = Database(load_settings())
    await db.migrate()
    now = datetime.now(UTC)
    async with db.write() as s:
        s.add(Account(id="a" * 32, issuer="local", subject="u", email="u@example.org",
                      email_verified=True, last_seq=0, created_at=now))
        await s.flush()
        s.add(LocalToken(token_hash="{token_hash(token)}", account_id="a" * 32,
                         device_id="{device}", kind="access", family_id="f" * 32,
                         auth_time=now, expires_at=now + timedelta(hours=1)))
    await db.close()

asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def _count_records(data_dir: Path) -> int:
    """Records in the SQLite file (read directly, as a recovering server would)."""
    with contextlib.closing(sqlite3.connect(data_dir / "hushchat-sync.sqlite3")) as db:
        count = db.execute("SELECT count(*) FROM records").fetchone()[0]
        seq = db.execute("SELECT coalesce(max(last_seq), 0) FROM accounts").fetchone()[0]
    assert count == seq, "records and sequence must agree"
    return int(count)


def test_sigkill_during_batch_push_is_all_or_nothing(
    keyed_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **keyed_env,
        "HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED": "true",
        "HUSHCHAT_SYNC_SMTP_HOST": "127.0.0.1",
        "HUSHCHAT_SYNC_MAX_BATCH_RECORDS": "2000",
        "HUSHCHAT_SYNC_MAX_REQUEST_BYTES": str(64 << 20),
        "HUSHCHAT_SYNC_LOG_LEVEL": "WARNING",
    }
    token, key = "hcl_" + "t" * 43, device_key("kill-test-device")
    _seed_local_token(env, token, key.device_id)
    batch_size = 2000
    payload = base64.b64encode(os.urandom(4096)).decode()
    outcomes: list[int] = []
    for attempt, delay in enumerate((0.1, 0.4, 0.9)):
        server = Server(env, tmp_path / f"kill-{attempt}.log")
        records = [
            {
                "id": f"r{attempt}-{i}",
                "kind": "message",
                "revision": 1,
                "key_id": "k",
                "payload": payload,
            }
            for i in range(batch_size)
        ]
        before = _count_records(tmp_path / "data")
        with httpx.Client(timeout=30) as client:
            # The device is let in (token and DPoP proof): a refused push would "survive"
            # every kill without testing anything.
            me = client.get(
                server.url + "/v1/me",
                headers=auth_headers(token, "GET", server.url + "/v1/me", key),
            )
            assert me.status_code == 200, me.text
            headers = auth_headers(token, "POST", server.url + "/v1/sync/push", key)
            request = client.build_request(
                "POST", server.url + "/v1/sync/push", json={"records": records}, headers=headers
            )
            sender = threading.Thread(target=_send_quietly, args=(client, request))
            sender.start()
            time.sleep(delay)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=10)
            sender.join(timeout=30)
        server.log.close()
        added = _count_records(tmp_path / "data") - before
        assert added in (0, batch_size), f"partial batch: {added} of {batch_size}"
        outcomes.append(added)
    # The kill landed before the commit at least once; otherwise the test proved nothing.
    assert 0 in outcomes, outcomes


def _send_quietly(client: httpx.Client, request: httpx.Request) -> None:
    try:
        client.send(request)
    except httpx.HTTPError:
        return

"""Escrow off the request path: the server stores uploads it cannot open, runs without the
escrow private key, and only ``hushchat-sync escrow process`` seals recovery answers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync_server.app import create_app
from sync_server.db import Database
from sync_server.escrow_worker import load_escrow_keys
from sync_server.models import Recovery
from sync_server.sealing import escrow_aad, open_sealed, recovery_aad, seal
from sync_server.settings import Settings
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    b64,
    escrow_pass,
    make_settings,
    run_escrow_once,
    running,
    server_settings,
    settings_env,
    stop_process,
    upload_escrow,
    x25519_keypair,
)

STANDARD_KEY = bytes(range(100, 132))


@contextlib.asynccontextmanager
async def served(settings: Settings, issuer: FakeIssuer) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the escrow public key only (no private key, no KEK)."""
    app = create_app(server_settings(settings), http_transport=issuer.transport())
    async with running(app) as client:
        yield client


async def test_upload_is_checked_by_shape_not_opened(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url)
    async with served(settings, issuer) as api:
        alice = ApiUser(api, issuer.mint("alice"), "alice-device-1")
        meta = (await api.get("/v1/meta")).json()["escrow"]
        account_id = (await alice.get("/v1/me")).json()["id"]
        # Sealed to a key that is not the server's: well formed, so stored as is.
        stranger = X25519PrivateKey.generate().public_key()
        foreign = seal(stranger, STANDARD_KEY, escrow_aad(account_id, "std-key-0001"))
        body = {
            "tier": "standard",
            "key_id": "std-key-0001",
            "server_key_id": meta["key_id"],
            "sealed_key": b64(foreign),
        }
        accepted = await alice.put("/v1/escrow", json=body)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["escrowed"] is True
        # 256 bytes of key material is the most a sealed key may carry.
        biggest = seal(stranger, bytes(256), escrow_aad(account_id, "std-key-0001"))
        assert len(biggest) == 317
        assert (await alice.put("/v1/escrow", json={**body, "sealed_key": b64(biggest)})).is_success
        refused = {
            "version 2": b"\x02" + foreign[1:],
            "too short": foreign[:76],
            "too long": seal(stranger, bytes(257), b""),
            "empty": b"",
        }
        for name, sealed in refused.items():
            answer = await alice.put("/v1/escrow", json={**body, "sealed_key": b64(sealed)})
            assert answer.status_code == 422, name
            assert answer.json()["type"].endswith("escrow-malformed"), name
        for key_id in ("short", "has.dot.in-it", "x" * 65):
            answer = await alice.put("/v1/escrow", json={**body, "key_id": key_id})
            assert answer.status_code == 422, key_id
        stale = await alice.put("/v1/escrow", json={**body, "server_key_id": "0" * 16})
        assert stale.status_code == 409
        assert stale.json()["type"].endswith("escrow-key-changed")


async def test_escrow_command_seals_an_answer_the_device_opens(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url, recovery_delay_seconds=0)
    async with served(settings, issuer) as api:
        old = ApiUser(api, issuer.mint("alice"), "alice-old-1")
        assert (await upload_escrow(old, STANDARD_KEY, "std-key-0001")).status_code == 200
        new = ApiUser(api, issuer.mint("alice"), "alice-new-1")
        private, public = x25519_keypair()
        started = await new.post("/v1/recovery/start", json={"device_public_key": public})
        assert started.status_code == 202, started.text
        recovery_id = started.json()["id"]
        waiting = await new.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert waiting.status_code == 409
        assert waiting.json()["type"].endswith("recovery-waiting")
        assert waiting.headers["Retry-After"] == "5"

        result = run_escrow_once(settings)  # the real command, in its own process
        assert recovery_id in result.stdout + result.stderr  # logged by id
        assert b64(STANDARD_KEY) not in result.stdout + result.stderr

        done = await new.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert done.status_code == 200, done.text
        answer = done.json()
        assert answer["key_id"] == "std-key-0001"
        account_id = (await new.get("/v1/me")).json()["id"]
        opened = open_sealed(
            private, base64.b64decode(answer["sealed_key"]), recovery_aad(account_id, recovery_id)
        )
        assert opened == STANDARD_KEY
        again = await new.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert again.status_code == 409
        # Nothing left for the next pass.
        assert (await escrow_pass(settings)).sealed == []


async def test_approval_from_another_device_skips_the_delay(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url, recovery_delay_seconds=86400)
    async with served(settings, issuer) as api:
        old = ApiUser(api, issuer.mint("alice"), "alice-old-1")
        assert (await upload_escrow(old, STANDARD_KEY)).status_code == 200
        new = ApiUser(api, issuer.mint("alice"), "alice-new-1")
        _, public = x25519_keypair()
        recovery = (await new.post("/v1/recovery/start", json={"device_public_key": public})).json()
        early = await new.post("/v1/recovery/complete", json={"recovery_id": recovery["id"]})
        assert early.json()["type"].endswith("recovery-delay")
        assert int(early.headers["Retry-After"]) > 80000
        assert (await escrow_pass(settings)).sealed == []  # not due yet

        itself = await new.post("/v1/recovery/approve", json={"recovery_id": recovery["id"]})
        assert itself.status_code == 403
        assert itself.json()["type"].endswith("wrong-device")
        bob = ApiUser(api, issuer.mint("bob"), "bob-device-1")
        other_account = await bob.post("/v1/recovery/approve", json={"recovery_id": recovery["id"]})
        assert other_account.status_code == 404

        approved = await old.post("/v1/recovery/approve", json={"recovery_id": recovery["id"]})
        assert approved.status_code == 200, approved.text
        assert approved.json()["not_before"] < recovery["not_before"]
        assert approved.json()["status"] == "pending"
        assert (await escrow_pass(settings)).sealed == [recovery["id"]]
        done = await new.post("/v1/recovery/complete", json={"recovery_id": recovery["id"]})
        assert done.status_code == 200, done.text
        events = [e["event"] for e in (await old.get("/v1/escrow")).json()["audit"]]
        assert events[:4] == [
            "recovery.completed",
            "recovery.ready",
            "recovery.approved",
            "recovery.started",
        ]
        late = await old.post("/v1/recovery/approve", json={"recovery_id": recovery["id"]})
        assert late.status_code == 409


async def test_recoveries_are_in_every_changes_answer(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url, recovery_delay_seconds=0)
    async with served(settings, issuer) as api:
        old = ApiUser(api, issuer.mint("alice"), "alice-old-1")
        await upload_escrow(old)
        assert (await old.get("/v1/sync/changes")).json()["recoveries"] == []
        new = ApiUser(api, issuer.mint("alice"), "alice-new-1")
        _, public = x25519_keypair()
        recovery = (await new.post("/v1/recovery/start", json={"device_public_key": public})).json()
        listed = (await old.get("/v1/sync/changes")).json()["recoveries"]
        assert [(r["id"], r["status"], r["device_id"]) for r in listed] == [
            (recovery["id"], "pending", new.device)
        ]
        await escrow_pass(settings)
        listed = (await old.get("/v1/sync/changes", params={"cursor": 5})).json()["recoveries"]
        assert [(r["id"], r["status"]) for r in listed] == [(recovery["id"], "ready")]
        cancelled = await old.post("/v1/recovery/cancel", json={"recovery_id": recovery["id"]})
        assert cancelled.json()["status"] == "cancelled"
        assert (await old.get("/v1/sync/changes")).json()["recoveries"] == []
        bob = ApiUser(api, issuer.mint("bob"), "bob-device-1")
        assert (await bob.get("/v1/sync/changes")).json()["recoveries"] == []


async def test_a_waiting_pull_answers_when_a_recovery_starts(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url)
    async with served(settings, issuer) as api:
        old = ApiUser(api, issuer.mint("alice"), "alice-old-1")
        await upload_escrow(old)
        new = ApiUser(api, issuer.mint("alice"), "alice-new-1")
        await new.get("/v1/me")
        pull = asyncio.create_task(old.get("/v1/sync/changes", params={"wait": 20}))
        await asyncio.sleep(0.3)
        assert not pull.done()
        started = time.monotonic()
        _, public = x25519_keypair()
        await new.post("/v1/recovery/start", json={"device_public_key": public})
        answer = await asyncio.wait_for(pull, 10)
        assert time.monotonic() - started < 5
        assert [r["status"] for r in answer.json()["recoveries"]] == ["pending"]


def test_escrow_command_needs_the_private_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    env = settings_env(server_settings(settings))
    result = run_escrow_once(env, check=False)
    assert result.returncode == 2
    assert "HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY" in result.stderr
    # A public key that is not the private key's half is refused too.
    other = make_settings(tmp_path)
    mismatched = {
        **settings_env(settings),
        "HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY": other.escrow_public_key,
    }
    result = run_escrow_once({k: v for k, v in mismatched.items() if v is not None}, check=False)
    assert result.returncode == 2
    assert "does not belong" in result.stderr
    # `escrow public-key` prints the server's setting, from the env or from --key-file.
    assert settings.escrow_private_key is not None
    key_file = tmp_path / "escrow-key"
    key_file.write_text(settings.escrow_private_key.get_secret_value() + "\n")
    without_key = {
        k: v for k, v in settings_env(settings).items() if k != "HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY"
    }
    printed = subprocess.run(
        [sys.executable, "-m", "sync_server", "escrow", "public-key", "--key-file", str(key_file)],
        env=without_key,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == f"HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY={settings.escrow_public_key}\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_runs_with_the_public_key_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, oidc_issuer=None, oidc_audience=None, oidc_client_id=None)
    env = settings_env(server_settings(settings))
    assert "HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY" not in env and "HUSHCHAT_SYNC_ESCROW_KEK" not in env
    checked = subprocess.run(
        [sys.executable, "-m", "sync_server", "check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ESCROW_PRIVATE_KEY" not in checked.stdout
    legacy = subprocess.run(
        [sys.executable, "-m", "sync_server", "check-config"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "warning: ESCROW_PRIVATE_KEY/ESCROW_KEK are set for the server" in legacy.stdout
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_server", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            meta = http.get("/v1/meta").json()["escrow"]
            assert meta["public_key"] == settings.escrow_public_key
            page = http.get("/recovery/cancel", params={"token": "x" * 43})
            assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    finally:
        stop_process(process)
    # One uvicorn process re-raises the SIGTERM it handled after a graceful shutdown.
    assert process.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_escrow_loop_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    env = settings_env(settings)
    migrated = subprocess.run(
        [sys.executable, "-m", "sync_server", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "escrow.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_server", "escrow", "process", "--interval", "0.2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("escrow_pass_done") < 2:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    text = log.read_text()
    assert "escrow_process_stopped" in text
    assert "Traceback" not in text


async def test_an_older_server_given_the_private_key_still_completes_recoveries(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    # Settings from before ESCROW_PUBLIC_KEY: serve derives the public key and runs the
    # escrow passes in a background task, so such deployments keep working.
    settings = make_settings(
        tmp_path, database_url, recovery_delay_seconds=0, escrow_process_interval_seconds=0.1
    ).model_copy(update={"escrow_public_key": None})
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        meta = (await api.get("/v1/meta")).json()["escrow"]
        assert meta["key_id"] == load_escrow_keys(settings).key_id
        old = ApiUser(api, issuer.mint("alice"), "alice-old-1")
        assert (await upload_escrow(old, STANDARD_KEY)).status_code == 200
        new = ApiUser(api, issuer.mint("alice"), "alice-new-1")
        private, public = x25519_keypair()
        recovery = (await new.post("/v1/recovery/start", json={"device_public_key": public})).json()
        deadline = time.monotonic() + 10
        while True:
            done = await new.post("/v1/recovery/complete", json={"recovery_id": recovery["id"]})
            if done.status_code == 200:
                break
            assert done.json()["type"].endswith("recovery-waiting"), done.text
            assert time.monotonic() < deadline, "the background escrow pass never ran"
            await asyncio.sleep(0.1)
        account_id = (await new.get("/v1/me")).json()["id"]
        opened = open_sealed(
            private,
            base64.b64decode(done.json()["sealed_key"]),
            recovery_aad(account_id, recovery["id"]),
        )
        assert opened == STANDARD_KEY


async def test_expired_recoveries_are_expired_and_their_answers_wiped(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url, recovery_delay_seconds=0)
    async with served(settings, issuer) as api:
        old = ApiUser(api, issuer.mint("alice"), "alice-old-1")
        await upload_escrow(old)
        new = ApiUser(api, issuer.mint("alice"), "alice-new-1")
        _, public = x25519_keypair()
        recovery = (await new.post("/v1/recovery/start", json={"device_public_key": public})).json()
        assert (await escrow_pass(settings)).sealed == [recovery["id"]]
        db = Database(settings)
        try:
            async with db.write() as session:
                row = await session.get(Recovery, recovery["id"])
                assert row is not None and row.sealed_answer is not None
                row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            assert (await escrow_pass(settings)).expired == [recovery["id"]]
            async with db.read() as session:
                row = await session.get(Recovery, recovery["id"])
                assert row is not None
                assert (row.status, row.sealed_answer) == ("expired", None)
        finally:
            await db.close()
        late = await new.post("/v1/recovery/complete", json={"recovery_id": recovery["id"]})
        assert late.status_code == 409
        assert late.json()["type"].endswith("recovery-expired")
        assert (await old.get("/v1/sync/changes")).json()["recoveries"] == []

"""Recovery notices reach every address the account ever verified; the mailed cancel link
needs a POST; an e-mail change or a password reset cancels and blocks recovery."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_server.app import create_app
from sync_server.routers.recovery_page import CSP
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    Mailbox,
    auth_headers,
    device_key,
    escrow_pass,
    make_settings,
    running,
    server_settings,
    smtp_capture,
    solve_altcha,
    upload_escrow,
    x25519_keypair,
)

PUBLIC_URL = "http://testserver"  # DPoP proofs name this URL too
OLD, NEW = "alice@old.example", "alice@new.example"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on loopback capturing mail."""
    with smtp_capture() as capture:
        yield capture


def _settings(tmp_path: Path, database_url: str | None, port: int, **overrides: Any) -> Any:
    return make_settings(
        tmp_path,
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        public_url=PUBLIC_URL,
        **overrides,
    )


def _cancel_token(body: str) -> str:
    match = re.search(re.escape(PUBLIC_URL) + r"/recovery/cancel\?token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def _status(user: ApiUser, recovery_id: str) -> str | None:
    listed = (await user.get("/v1/sync/changes")).json()["recoveries"]
    return next((r["status"] for r in listed if r["id"] == recovery_id), None)


async def test_cancel_link_needs_a_post_and_works_once(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    settings = _settings(tmp_path, database_url, port)
    async with running(
        create_app(server_settings(settings), http_transport=issuer.transport())
    ) as api:
        old = ApiUser(api, issuer.mint("alice", email=OLD), "alice-old-1")
        await upload_escrow(old)
        new = ApiUser(api, issuer.mint("alice", email=OLD), "alice-new-1")
        _, public = x25519_keypair()
        recovery = (await new.post("/v1/recovery/start", json={"device_public_key": public})).json()
        _, _, body = await mailbox.wait_for(OLD, "recovery of your Standard chats started")
        token = _cancel_token(body)
        assert new.device in body

        page = await api.get("/recovery/cancel", params={"token": token})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["Content-Security-Policy"] == CSP
        assert "script-src" not in CSP and "default-src 'none'" in CSP
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "<script" not in page.text
        assert 'method="post"' in page.text and "Cancel this recovery" in page.text
        # A link scanner fetching the page twice cancels nothing.
        assert (await api.get("/recovery/cancel", params={"token": token})).status_code == 200
        assert await _status(old, recovery["id"]) == "pending"

        cancelled = await api.post("/recovery/cancel", data={"token": token})
        assert cancelled.status_code == 200, cancelled.text
        assert "Recovery cancelled" in cancelled.text
        assert cancelled.headers["Cache-Control"] == "no-store"
        assert await _status(old, recovery["id"]) is None
        refused = await new.post("/v1/recovery/complete", json={"recovery_id": recovery["id"]})
        assert refused.status_code == 409
        assert "link" in refused.json()["detail"]
        await mailbox.wait_for(OLD, "recovery cancelled")

        again = await api.post("/recovery/cancel", data={"token": token})
        assert again.status_code == 410 and "already" in again.text
        assert (await api.get("/recovery/cancel", params={"token": token})).status_code == 410
        for unknown in ({"token": "A" * 43}, {"token": "<script>"}, {}):
            answer = await api.post("/recovery/cancel", data=unknown)
            assert answer.status_code == 404 and "not valid" in answer.text
            assert "<script>" not in answer.text
        assert (await api.get("/recovery/cancel")).status_code == 404


async def test_email_change_cancels_blocks_and_tells_the_old_address(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    settings = _settings(tmp_path, database_url, port, recovery_delay_seconds=3600)
    async with running(
        create_app(server_settings(settings), http_transport=issuer.transport())
    ) as api:
        old = ApiUser(api, issuer.mint("alice", email=OLD), "alice-old-1")
        await upload_escrow(old)
        thief = ApiUser(api, issuer.mint("alice", email=OLD), "alice-new-1")
        _, public = x25519_keypair()
        first = (await thief.post("/v1/recovery/start", json={"device_public_key": public})).json()
        await mailbox.wait_for(OLD, "started")

        # The address is changed at the issuer; the next request with such a token notices.
        thief.token = issuer.mint("alice", email=NEW)
        assert (await thief.get("/v1/me")).json()["email"] == NEW
        assert await _status(old, first["id"]) is None
        _, _, warning = await mailbox.wait_for(OLD, "account security change")
        assert "new e-mail address" in warning
        await mailbox.wait_for(NEW, "account security change")

        blocked = await thief.post("/v1/recovery/start", json={"device_public_key": public})
        assert blocked.status_code == 409
        assert blocked.json()["type"].endswith("recovery-blocked")
        assert 3500 < int(blocked.headers["Retry-After"]) <= 3601
        cancelled = await thief.post("/v1/recovery/complete", json={"recovery_id": first["id"]})
        assert "e-mail address changed" in cancelled.json()["detail"]
        events = [e["event"] for e in (await old.get("/v1/escrow")).json()["audit"]]
        assert "recovery.blocked" in events and "account.email_changed" in events
        # Switching back to a known address is no change.
        old.token = issuer.mint("alice", email=OLD)
        await old.get("/v1/me")
        thief.token = issuer.mint("alice", email=NEW)
        await thief.get("/v1/me")
        assert events == [e["event"] for e in (await old.get("/v1/escrow")).json()["audit"]]


async def test_notices_go_to_every_known_address(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    # No delay: the block an address change sets ends at once, so a recovery can start.
    settings = _settings(tmp_path, database_url, port, recovery_delay_seconds=0)
    async with running(
        create_app(server_settings(settings), http_transport=issuer.transport())
    ) as api:
        old = ApiUser(api, issuer.mint("alice", email=OLD), "alice-old-1")
        await upload_escrow(old)
        new = ApiUser(api, issuer.mint("alice", email=NEW), "alice-new-1")
        await new.get("/v1/me")
        _, public = x25519_keypair()
        recovery = (await new.post("/v1/recovery/start", json={"device_public_key": public})).json()
        assert recovery["status"] == "pending"
        for address in (OLD, NEW):
            _, _, body = await mailbox.wait_for(address, "recovery of your Standard chats")
            assert _cancel_token(body)
        await escrow_pass(settings)
        done = await new.post("/v1/recovery/complete", json={"recovery_id": recovery["id"]})
        assert done.status_code == 200, done.text
        for address in (OLD, NEW):
            await mailbox.wait_for(address, "recovery completed")
        bob = ApiUser(api, issuer.mint("bob"), "bob-device-1")
        await bob.get("/v1/me")
        assert not mailbox.to("bob@example.org", "recovery")


async def test_password_reset_cancels_and_blocks_recovery(
    tmp_path: Path, database_url: str | None, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    settings = _settings(
        tmp_path,
        database_url,
        port,
        local_accounts_enabled=True,
        argon2_time_cost=1,
        argon2_memory_kib=8192,
        argon2_parallelism=1,
        altcha_max_number=5000,
        recovery_delay_seconds=3600,
    )
    address, password = "dana@example.org", "correct horse battery"
    async with running(create_app(server_settings(settings))) as api:
        signup = {"email": address, "password": password, "altcha": await solve_altcha(api)}
        assert (await api.post("/v1/account/signup", json=signup)).status_code == 202
        _, _, body = await mailbox.wait_for(address, "Confirm")
        code = re.search(r"^([A-Za-z0-9_-]{40,})\r?$", body, re.MULTILINE)
        assert code
        await api.post("/v1/account/verify-email", json={"token": code.group(1)})

        async def sign_in(label: str) -> ApiUser:
            key = device_key(label)
            answer = await api.post(
                "/v1/account/token",
                json={"email": address, "password": password, "device_id": key.device_id},
            )
            assert answer.status_code == 200, answer.text
            return ApiUser(api, answer.json()["access_token"], key)

        owner = await sign_in("dana-laptop-1")
        assert (await upload_escrow(owner)).status_code == 200
        attacker = await sign_in("dana-stolen-1")
        _, public = x25519_keypair()
        started = await attacker.post("/v1/recovery/start", json={"device_public_key": public})
        assert started.status_code == 202, started.text
        recovery_id = started.json()["id"]

        reset = {"email": address, "altcha": await solve_altcha(api)}
        assert (await api.post("/v1/account/password-reset", json=reset)).status_code == 202
        _, _, reset_body = await mailbox.wait_for(address, "Reset")
        reset_code = re.search(r"^([A-Za-z0-9_-]{40,})\r?$", reset_body, re.MULTILINE)
        assert reset_code
        password = "a brand new passphrase"
        confirmed = await api.post(
            "/v1/account/password-reset/confirm",
            json={"token": reset_code.group(1), "password": password},
        )
        assert confirmed.status_code == 200
        _, _, notice = await mailbox.wait_for(address, "account security change")
        assert "password" in notice and "1 recovery" in notice

        attacker = await sign_in("dana-stolen-1")
        refused = await attacker.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert refused.status_code == 409
        assert "password was reset" in refused.json()["detail"]
        blocked = await attacker.post("/v1/recovery/start", json={"device_public_key": public})
        assert blocked.status_code == 409
        assert blocked.json()["type"].endswith("recovery-blocked")
        headers = auth_headers(attacker.token, "GET", "/v1/sync/changes", attacker.key)
        listed = await api.get("/v1/sync/changes", headers=headers)
        assert listed.json()["recoveries"] == []
        assert isinstance(api, httpx.AsyncClient)

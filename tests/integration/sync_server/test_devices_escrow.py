"""Devices (list, revoke), escrow and the recovery flow with its delay and audit trail.

The server holds the escrow public key only; ``escrow_pass`` plays the escrow command."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync_server.app import create_app
from sync_server.sealing import escrow_aad, open_sealed, public_key_from_bytes, recovery_aad, seal
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    b64,
    device_key,
    escrow_pass,
    make_settings,
    record,
    running,
    server_settings,
)

UserFactory = Callable[..., ApiUser]
STANDARD_KEY = bytes(range(32))


async def escrow_key(user: ApiUser) -> dict[str, Any]:
    meta = (await user.http.get("/v1/meta")).json()
    account_id = (await user.get("/v1/me")).json()["id"]
    public = public_key_from_bytes(base64.b64decode(meta["escrow"]["public_key"]))
    response = await user.put(
        "/v1/escrow",
        json={
            "tier": "standard",
            "key_id": "std-key-1",
            "server_key_id": meta["escrow"]["key_id"],
            "sealed_key": b64(seal(public, STANDARD_KEY, escrow_aad(account_id, "std-key-1"))),
        },
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def device_keypair() -> tuple[X25519PrivateKey, str]:
    private = X25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, b64(raw)


async def test_devices_listed_and_revoked(user: UserFactory) -> None:
    laptop = user("alice", "laptop-0001")
    phone = user("alice", "phone-00001")
    await laptop.get("/v1/me")
    await phone.post("/v1/sync/push", json={"records": [record("m1")]})
    listing = (await laptop.get("/v1/devices")).json()["devices"]
    assert {d["id"]: d["current"] for d in listing} == {laptop.device: True, phone.device: False}
    revoked = phone.device
    assert (await laptop.delete(f"/v1/devices/{revoked}")).status_code == 204
    for call in (
        phone.get("/v1/sync/changes"),
        phone.post("/v1/sync/push", json={"records": [record("m2")]}),
    ):
        response = await call
        assert response.status_code == 403
        assert response.json()["type"].endswith("device-revoked")
    # Same token under a new device id does not help: it is bound to the revoked device.
    phone.key = device_key("phone-00002")
    assert (await phone.get("/v1/sync/changes")).status_code == 401
    listing = (await laptop.get("/v1/devices")).json()["devices"]
    assert next(d for d in listing if d["id"] == revoked)["revoked_at"] is not None
    assert (await laptop.delete("/v1/devices/no-such-device")).status_code == 404


async def test_escrow_put_get_delete(user: UserFactory) -> None:
    alice = user("alice")
    assert (await alice.get("/v1/escrow")).json()["escrowed"] is False
    status = await escrow_key(alice)
    assert status["escrowed"] is True and status["key_id"] == "std-key-1"
    assert status["audit"][0]["event"] == "escrow.stored"
    private_tier = await alice.put(
        "/v1/escrow",
        json={"tier": "private", "key_id": "p", "server_key_id": "x", "sealed_key": b64(b"x")},
    )
    assert private_tier.status_code == 422
    for malformed in (b"\x02" + b"\x00" * 80, b"\x01" + b"\x00" * 75, b"\x01" * 318):
        garbage = await alice.put(
            "/v1/escrow",
            json={
                "tier": "standard",
                "key_id": "std-key-1",
                "server_key_id": status["server_key_id"],
                "sealed_key": b64(malformed),
            },
        )
        assert garbage.status_code == 422, len(malformed)
        assert garbage.json()["type"].endswith("escrow-malformed")
    short_id = await alice.put(
        "/v1/escrow",
        json={
            "tier": "standard",
            "key_id": "k",
            "server_key_id": status["server_key_id"],
            "sealed_key": b64(b"\x01" + b"\x00" * 80),
        },
    )
    assert short_id.status_code == 422
    assert (await alice.delete("/v1/escrow")).status_code == 204
    assert (await alice.get("/v1/escrow")).json()["escrowed"] is False


async def test_recovery_complete_after_delay(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, database_url, recovery_delay_seconds=0)
    served = server_settings(settings)
    async with running(create_app(served, http_transport=issuer.transport())) as api:
        old = ApiUser(api, issuer.mint("alice"), "old-laptop-1")
        await escrow_key(old)
        new = ApiUser(api, issuer.mint("alice"), "new-laptop-1")
        private, public_b64 = device_keypair()
        started = await new.post("/v1/recovery/start", json={"device_public_key": public_b64})
        assert started.status_code == 202, started.text
        recovery_id = started.json()["id"]
        pending = (await old.get("/v1/escrow")).json()["pending_recoveries"]
        assert [p["id"] for p in pending] == [recovery_id]
        # Only the device that started it may complete it.
        wrong = await old.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert wrong.status_code == 403
        # The delay is over but the escrow command has not run: the server cannot answer.
        waiting = await new.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert waiting.status_code == 409, waiting.text
        assert waiting.json()["type"].endswith("recovery-waiting")
        assert waiting.headers["Retry-After"] == "5"
        assert (await escrow_pass(settings)).sealed == [recovery_id]
        ready = (await old.get("/v1/escrow")).json()["pending_recoveries"]
        assert [(p["id"], p["status"]) for p in ready] == [(recovery_id, "ready")]
        done = await new.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert done.status_code == 200, done.text
        body = done.json()
        account_id = (await new.get("/v1/me")).json()["id"]
        key = open_sealed(
            private, base64.b64decode(body["sealed_key"]), recovery_aad(account_id, recovery_id)
        )
        assert key == STANDARD_KEY
        again = await new.post("/v1/recovery/complete", json={"recovery_id": recovery_id})
        assert again.status_code == 409
        events = [e["event"] for e in (await old.get("/v1/escrow")).json()["audit"]]
        assert events[:3] == ["recovery.completed", "recovery.ready", "recovery.started"]


async def test_recovery_waits_and_can_be_cancelled_from_another_device(user: UserFactory) -> None:
    old = user("alice", "old-laptop-1")
    await escrow_key(old)
    new = user("alice", "new-laptop-1")
    _, public_b64 = device_keypair()
    started = (await new.post("/v1/recovery/start", json={"device_public_key": public_b64})).json()
    early = await new.post("/v1/recovery/complete", json={"recovery_id": started["id"]})
    assert early.status_code == 409
    assert int(early.headers["Retry-After"]) > 3600
    cancelled = await old.post("/v1/recovery/cancel", json={"recovery_id": started["id"]})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    late = await new.post("/v1/recovery/complete", json={"recovery_id": started["id"]})
    assert late.status_code == 409
    events = [e["event"] for e in (await old.get("/v1/escrow")).json()["audit"]]
    assert "recovery.cancelled" in events


async def test_recovery_needs_verified_email_and_fresh_login(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    _, public_b64 = device_keypair()
    owner = ApiUser(api, issuer.mint("alice"), "old-laptop-1")
    await escrow_key(owner)
    import time

    stale = ApiUser(api, issuer.mint("alice", auth_time=int(time.time()) - 7200), "new-laptop-1")
    response = await stale.post("/v1/recovery/start", json={"device_public_key": public_b64})
    assert response.status_code == 401
    assert "insufficient_user_authentication" in response.headers["WWW-Authenticate"]
    no_email = ApiUser(api, issuer.mint("alice", email=""), "new-laptop-2")
    response = await no_email.post("/v1/recovery/start", json={"device_public_key": public_b64})
    assert response.status_code == 403
    bad_key = ApiUser(api, issuer.mint("alice"), "new-laptop-3")
    response = await bad_key.post("/v1/recovery/start", json={"device_public_key": b64(b"short")})
    assert response.status_code == 422

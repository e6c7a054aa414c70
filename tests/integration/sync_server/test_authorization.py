"""Authorization matrix: user A can neither read, write, delete nor recover B's data."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync_server.app import create_app
from sync_server.sealing import escrow_aad, public_key_from_bytes, seal
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    b64,
    escrow_pass,
    make_settings,
    record,
    running,
    server_settings,
    x25519_keypair,
)

UserFactory = Callable[..., ApiUser]


async def _escrow(user: ApiUser, key: bytes) -> None:
    meta = (await user.http.get("/v1/meta")).json()
    me = (await user.get("/v1/me")).json()
    public = public_key_from_bytes(base64.b64decode(meta["escrow"]["public_key"]))
    sealed = seal(public, key, escrow_aad(me["id"], "std-key-1"))
    response = await user.put(
        "/v1/escrow",
        json={
            "tier": "standard",
            "key_id": "std-key-1",
            "server_key_id": meta["escrow"]["key_id"],
            "sealed_key": b64(sealed),
        },
    )
    assert response.status_code == 200, response.text


async def test_records_are_per_account(user: UserFactory) -> None:
    alice, bob = user("alice"), user("bob")
    await alice.push(record("shared-id", payload=b"alice secret"))
    bob_changes, bob_cursor = await bob.pull_all()
    assert bob_changes == [] and bob_cursor == 0
    # Same record id in B's space is B's own record, not a write to A's.
    answer = await bob.push(record("shared-id", 2, 1, payload=b"bob overwrite"))
    assert answer["results"][0]["status"] == "conflict"
    assert answer["results"][0]["server_record"] is None
    await bob.push(record("shared-id", payload=b"bob's own"))
    alice_changes, _ = await alice.pull_all()
    assert [c["payload"] for c in alice_changes] == [b64(b"alice secret")]
    # Tombstoning from B does not touch A's record.
    await bob.push(record("shared-id", 2, 1, deleted=True))
    alice_changes, _ = await alice.pull_all()
    assert alice_changes[0]["deleted"] is False


async def test_devices_are_per_account(user: UserFactory) -> None:
    alice, bob = user("alice"), user("bob")
    await alice.get("/v1/me")
    await bob.get("/v1/me")
    bob_devices = (await bob.get("/v1/devices")).json()["devices"]
    assert [d["id"] for d in bob_devices] == [bob.device]
    response = await bob.delete(f"/v1/devices/{alice.device}")
    assert response.status_code == 404
    assert (await alice.get("/v1/me")).status_code == 200


async def test_escrow_and_recovery_are_per_account(user: UserFactory) -> None:
    alice, bob = user("alice"), user("bob")
    await _escrow(alice, b"A" * 32)
    bob_status = (await bob.get("/v1/escrow")).json()
    assert bob_status["escrowed"] is False
    device_key = X25519PrivateKey.generate().public_key()
    raw = device_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    started = await bob.post("/v1/recovery/start", json={"device_public_key": b64(raw)})
    assert started.status_code == 404  # nothing escrowed for B
    # B cannot see, cancel or complete A's recovery.
    alice_recovery = await alice.post("/v1/recovery/start", json={"device_public_key": b64(raw)})
    assert alice_recovery.status_code == 202
    recovery_id = alice_recovery.json()["id"]
    for path in ("/v1/recovery/cancel", "/v1/recovery/complete"):
        response = await bob.post(path, json={"recovery_id": recovery_id})
        assert response.status_code == 404, path
    # B deleting "its" escrow leaves A's alone.
    assert (await bob.delete("/v1/escrow")).status_code == 204
    assert (await alice.get("/v1/escrow")).json()["escrowed"] is True


async def test_a_sealed_key_of_another_account_never_opens_for_it(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    # The server cannot open uploads, so it stores B's copy of A's sealed key; the escrow
    # command refuses it (the associated data names A's account) and cancels B's recovery.
    settings = make_settings(tmp_path, database_url, recovery_delay_seconds=0)
    async with running(
        create_app(server_settings(settings), http_transport=issuer.transport())
    ) as api:
        alice = ApiUser(api, issuer.mint("alice"), "alice-device-1")
        bob = ApiUser(api, issuer.mint("bob"), "bob-device-1")
        meta = (await alice.http.get("/v1/meta")).json()
        alice_id = (await alice.get("/v1/me")).json()["id"]
        public = public_key_from_bytes(base64.b64decode(meta["escrow"]["public_key"]))
        sealed_for_alice = seal(public, b"K" * 32, escrow_aad(alice_id, "std-key-1"))
        response = await bob.put(
            "/v1/escrow",
            json={
                "tier": "standard",
                "key_id": "std-key-1",
                "server_key_id": meta["escrow"]["key_id"],
                "sealed_key": b64(sealed_for_alice),
            },
        )
        assert response.status_code == 200, response.text
        _, device_public = x25519_keypair()
        started = await bob.post("/v1/recovery/start", json={"device_public_key": device_public})
        assert started.status_code == 202, started.text
        outcome = await escrow_pass(settings)
        assert outcome.failed == [started.json()["id"]] and outcome.sealed == []
        done = await bob.post("/v1/recovery/complete", json={"recovery_id": started.json()["id"]})
        assert done.status_code == 409
        assert "could not be opened" in done.json()["detail"]


async def test_deleting_an_account_removes_only_its_data(user: UserFactory) -> None:
    alice, bob = user("alice"), user("bob")
    await alice.push(record("a1"))
    await bob.push(record("b1"))
    assert (await alice.delete("/v1/me")).status_code == 204
    assert (await bob.pull_all())[0][0]["id"] == "b1"
    fresh = (await alice.get("/v1/me")).json()
    assert fresh["cursor"] == 0
    assert (await alice.pull_all())[0] == []

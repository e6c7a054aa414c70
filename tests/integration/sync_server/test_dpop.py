"""Device identity by DPoP (RFC 9449): proofs on every call, the device bound to its key,
revocation by key."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, select, update

from app.sync.dpop import DeviceKey
from sync_server.app import create_app
from sync_server.models import Device
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    auth_headers,
    crafted_proof,
    device_key,
    make_settings,
    running,
)

UserFactory = Callable[..., ApiUser]
PROBLEM = "application/problem+json"


def _with_alg(proof: str, alg: str) -> str:
    """``proof`` with another ``alg`` in its header (the signature no longer matters)."""
    encoded, _, rest = proof.partition(".")
    header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    header["alg"] = alg
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{rest}"


def _assert_invalid_proof(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP error="invalid_dpop_proof", error_description="')
    assert 'algs="ES256"' in challenge
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("invalid-dpop-proof")
    assert detail in response.json()["detail"]


async def test_every_call_needs_a_proof_for_itself(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.mint("alice")
    key = device_key("alice-laptop")
    good = auth_headers(token, "GET", "/v1/me", key)
    assert (await api.get("/v1/me", headers=good)).status_code == 200
    # The same proof again: a replay.
    _assert_invalid_proof(await api.get("/v1/me", headers=good), "already used")
    # No proof at all.
    missing = {k: v for k, v in auth_headers(token, "GET", "/v1/me", key).items() if k != "DPoP"}
    _assert_invalid_proof(await api.get("/v1/me", headers=missing), "required")
    # A proof for another method, URL or token.
    for method, url, other_token, detail in [
        ("POST", "/v1/me", token, "htm"),
        ("GET", "/v1/devices", token, "htu"),
        ("GET", "https://testserver/v1/me", token, "htu"),
        ("GET", "http://elsewhere/v1/me", token, "htu"),
        ("GET", "/v1/me", issuer.mint("alice"), "ath"),
    ]:
        headers = auth_headers(token, "GET", "/v1/me", key)
        headers["DPoP"] = key.proof(
            method, "http://testserver" + url if "://" not in url else url, other_token
        )
        _assert_invalid_proof(await api.get("/v1/me", headers=headers), detail)
    # The query string is not part of htu; scheme and host compare case-insensitively.
    headers = auth_headers(token, "GET", "/v1/sync/changes", key)
    headers["DPoP"] = crafted_proof(key, "GET", "HTTP://TestServer:80/v1/sync/changes", token)
    answer = await api.get("/v1/sync/changes", params={"cursor": 0}, headers=headers)
    assert answer.status_code == 200, answer.text


async def test_malformed_and_stale_proofs(api: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    token = issuer.mint("alice")
    key = device_key("alice-laptop")
    other = DeviceKey.generate()
    now = int(time.time())
    cases = [
        (crafted_proof(key, "GET", "/v1/me", token, iat=now - 300), "too old"),
        (crafted_proof(key, "GET", "/v1/me", token, iat=now + 120), "future"),
        (crafted_proof(key, "GET", "/v1/me", token, header={"typ": "JWT"}), "typ"),
        (_with_alg(crafted_proof(key, "GET", "/v1/me", token), "ES384"), "algorithm"),
        (_with_alg(crafted_proof(key, "GET", "/v1/me", token), "none"), "algorithm"),
        (crafted_proof(key, "GET", "/v1/me", token, jti=None), "jti"),
        (crafted_proof(key, "GET", "/v1/me", token, ath=None), "ath"),
        (crafted_proof(key, "GET", "/v1/me", token, iat="now"), "iat"),
        # The header's key is another device's: it does not hash to the device id.
        (crafted_proof(key, "GET", "/v1/me", token, header={"jwk": other.public_jwk}), "device"),
        # A private key in the header.
        (
            crafted_proof(
                key, "GET", "/v1/me", token, header={"jwk": {**key.public_jwk, "d": "AAAA"}}
            ),
            "public key",
        ),
        ("e30.e30.", "typ"),
    ]
    for proof, detail in cases:
        headers = {**auth_headers(token, "GET", "/v1/me", key), "DPoP": proof}
        _assert_invalid_proof(await api.get("/v1/me", headers=headers), detail)
    # Signed by another key than the one its header names.
    forged = crafted_proof(other, "GET", "/v1/me", token, header={"jwk": key.public_jwk})
    headers = {**auth_headers(token, "GET", "/v1/me", key), "DPoP": forged}
    _assert_invalid_proof(await api.get("/v1/me", headers=headers), "signature")


async def test_a_device_id_with_another_keys_proof_is_refused(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.mint("mallory")
    victim, attacker = device_key("victim-phone"), device_key("attacker-pc")
    headers = auth_headers(token, "GET", "/v1/me", attacker)
    headers["X-Hushchat-Device"] = victim.device_id
    _assert_invalid_proof(await api.get("/v1/me", headers=headers), "device id")


def _jkt(connection: Connection, device_id: str) -> str | None:
    return connection.execute(select(Device.jkt).where(Device.id == device_id)).scalar_one()


def _rebind(connection: Connection, device_id: str, jkt: str | None) -> None:
    connection.execute(update(Device).where(Device.id == device_id).values(jkt=jkt))


async def test_registration_binds_the_key_and_refuses_another(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> None:
    app = create_app(make_settings(tmp_path, database_url), http_transport=issuer.transport())
    async with running(app) as api:
        db = app.state.server.db
        alice = ApiUser(api, issuer.mint("alice"), "alice-laptop")
        assert (await alice.get("/v1/me")).status_code == 200
        assert await db.run(_jkt, alice.device) == alice.device
        # A row bound to another key (impossible through the API): refused, for OIDC ...
        await db.run_write(_rebind, alice.device, "B" * 43)
        _assert_invalid_proof(await alice.get("/v1/me"), "another key")
        fresh = ApiUser(api, issuer.mint("alice"), alice.key)
        _assert_invalid_proof(await fresh.get("/v1/me"), "another key")
        # ... a row from before DPoP (no thumbprint) is bound by its first proof.
        await db.run_write(_rebind, alice.device, None)
        assert (await alice.get("/v1/me")).status_code == 200
        assert await db.run(_jkt, alice.device) == alice.device


async def test_revocation_is_by_key(user: UserFactory) -> None:
    a, b = user("alice", "alice-laptop"), user("alice", "alice-phone")
    assert (await a.get("/v1/me")).status_code == 200
    assert (await b.get("/v1/me")).status_code == 200
    assert (await a.delete(f"/v1/devices/{b.device}")).status_code == 204
    # B's next call fails ...
    refused = await b.get("/v1/sync/changes")
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("device-revoked")
    # ... and B's key cannot register again, with a fresh sign-in either.
    again = user("alice", b.key)
    assert (await again.get("/v1/me")).status_code == 403
    devices = (await a.get("/v1/devices")).json()["devices"]
    assert [d["id"] for d in devices if d["revoked_at"] is None] == [a.device]
    # A new key is a new device.
    assert (await user("alice", "alice-phone-2").get("/v1/me")).status_code == 200


async def test_failed_proofs_count_as_failed_authentications(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, rate_limit_auth_failures="3/minute")
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        token = issuer.mint("alice")
        key = device_key("alice-laptop")
        replayed = auth_headers(token, "GET", "/v1/me", key)
        assert (await api.get("/v1/me", headers=replayed)).status_code == 200
        statuses = [(await api.get("/v1/me", headers=replayed)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        fresh = auth_headers(token, "GET", "/v1/me", key)
        assert (await api.get("/v1/me", headers=fresh)).status_code == 429


async def test_behind_a_proxy_proofs_name_the_public_url(
    tmp_path: Path, issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, public_url="https://sync.example.org/hushchat")
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        token = issuer.mint("alice")
        public = auth_headers(
            token, "GET", "/v1/me", "alice-laptop", base_url="https://sync.example.org/hushchat"
        )
        assert (await api.get("/v1/me", headers=public)).status_code == 200
        internal = auth_headers(token, "GET", "/v1/me", "alice-laptop")
        with caplog.at_level(logging.INFO, logger="sync_server.auth.dpop"):
            _assert_invalid_proof(await api.get("/v1/me", headers=internal), "htu")
        [mismatch] = [r for r in caplog.records if r.message == "dpop_origin_mismatch"]
        assert mismatch.__dict__["claimed_origin"] == "http://testserver"
        assert mismatch.__dict__["expected_origin"] == "https://sync.example.org"


def test_public_url_must_be_a_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, public_url="sync.example.org")
    assert any("PUBLIC_URL" in problem for problem in settings.problems())


@pytest.mark.parametrize("clock_skew", [0, 30])
async def test_clock_skew_is_a_setting(tmp_path: Path, issuer: FakeIssuer, clock_skew: int) -> None:
    settings = make_settings(tmp_path, dpop_clock_skew_seconds=clock_skew)
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        token = issuer.mint("alice")
        key = device_key("alice-laptop")
        ahead = crafted_proof(key, "GET", "/v1/me", token, iat=int(time.time()) + 15)
        headers = {**auth_headers(token, "GET", "/v1/me", key), "DPoP": ahead}
        status = (await api.get("/v1/me", headers=headers)).status_code
        assert status == (200 if clock_skew else 401)

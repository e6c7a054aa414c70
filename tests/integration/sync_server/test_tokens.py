"""Token attacks and key rotation against the JWKS-validating verifier."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from sync_server.app import create_app
from tests.integration.sync_server.support import (
    AUDIENCE,
    ISSUER,
    ApiUser,
    FakeIssuer,
    auth_headers,
    device_key,
    make_settings,
    running,
)

UserFactory = Callable[..., ApiUser]
DEVICE = "attacker-device"


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _status(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.get("/v1/me", headers=auth_headers(token, "GET", "/v1/me", DEVICE))


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "mallory",
        "iat": now,
        "exp": now + 300,
        "email": "m@example.org",
        "email_verified": True,
    }
    claims.update(overrides)
    return claims


async def test_valid_token_accepted(api: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    response = await _status(api, issuer.mint("alice"))
    assert response.status_code == 200
    assert response.json()["subject"] == "alice"
    assert response.json()["issuer"] == ISSUER
    assert "RateLimit-Remaining" in response.headers


async def test_alg_none_rejected(api: httpx.AsyncClient) -> None:
    token = (
        _segment({"alg": "none", "typ": "JWT", "kid": "key-1"}) + "." + _segment(_claims()) + "."
    )
    response = await _status(api, token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


async def test_hs256_signed_with_public_key_rejected(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    pem = (
        issuer.keys["key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # PyJWT refuses PEM keys as HMAC secrets, so build the HS256 signature by hand.
    import hashlib
    import hmac

    header = _segment({"alg": "HS256", "typ": "JWT", "kid": "key-1"})
    body = _segment(_claims())
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert (await _status(api, token)).status_code == 401


async def test_wrong_issuer_audience_expired_rejected(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    now = int(time.time())
    for claims in (
        {"iss": "https://evil.test/"},
        {"aud": "some-other-api"},
        {"exp": now - 120, "iat": now - 600},
        {"nbf": now + 600},
    ):
        token = issuer.mint("mallory", **claims)
        response = await _status(api, token)
        assert response.status_code == 401, claims
    missing_sub = jwt.encode(
        {k: v for k, v in _claims().items() if k != "sub"},
        issuer.keys["key-1"],
        algorithm="RS256",
        headers={"kid": "key-1"},
    )
    assert (await _status(api, missing_sub)).status_code == 401


async def test_unknown_kid_rejected_and_refetch_is_rate_limited(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    assert (await _status(api, issuer.mint("alice"))).status_code == 200
    issuer.add_key("rogue", publish=False)
    fetches = issuer.fetches
    for _ in range(5):
        response = await _status(api, issuer.mint("mallory", kid="rogue"))
        assert response.status_code == 401
        assert response.json()["detail"] == "unknown signing key"
    assert issuer.fetches - fetches <= 1


async def test_signature_by_other_key_with_known_kid_rejected(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    issuer.add_key("forger", publish=False)
    token = jwt.encode(
        _claims(), issuer.keys["forger"], algorithm="RS256", headers={"kid": "key-1"}
    )
    assert (await _status(api, token)).status_code == 401


async def test_unverified_email_rejected(api: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    response = await _status(api, issuer.mint("mallory", verified=False))
    assert response.status_code == 403
    assert response.json()["type"].endswith("email-not-verified")
    string_true = issuer.mint("carol", email_verified="true")
    assert (await _status(api, string_true)).status_code == 200


async def test_key_rotation(tmp_path: Path, database_url: str | None, issuer: FakeIssuer) -> None:
    settings = make_settings(tmp_path, database_url, oidc_jwks_min_refresh_seconds=1)
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        await _rotate(api, issuer)


async def _rotate(api: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    old = issuer.mint("alice")
    assert (await _status(api, old)).status_code == 200
    issuer.add_key("key-2")  # new key signs; old one still published
    await asyncio.sleep(1.1)  # past the unknown-kid refetch interval
    new = issuer.mint("alice")
    assert jwt.get_unverified_header(new)["kid"] == "key-2"
    response = await api.get("/v1/me", headers=auth_headers(new, "GET", "/v1/me", "dev-rotated"))
    assert response.status_code == 200
    assert (await _status(api, old)).status_code == 200


async def test_token_is_bound_to_its_first_device(
    api: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.mint("alice")
    ok = await api.get("/v1/me", headers=auth_headers(token, "GET", "/v1/me", "laptop-01"))
    assert ok.status_code == 200
    other = await api.get("/v1/me", headers=auth_headers(token, "GET", "/v1/me", "phone-0001"))
    assert other.status_code == 401


async def test_garbage_tokens(api: httpx.AsyncClient) -> None:
    for token in ("x", "a.b.c", "hcl_nothing", "Bearer", "ey" * 5000):
        response = await _status(api, token)
        assert response.status_code == 401, token
    basic = {
        "Authorization": "Basic Zm9vOmJhcg==",
        "X-Hushchat-Device": device_key(DEVICE).device_id,
    }
    response = await api.get("/v1/me", headers=basic)
    assert response.status_code == 401

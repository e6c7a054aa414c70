"""Against a real OpenID provider (npm ``oidc-provider`` under Node, on loopback)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from sync_server.app import create_app
from tests.integration.sync_server.support import (
    auth_headers,
    make_settings,
    running,
    skip_or_fail,
)
from tests.peers.oidc_provider import (
    AUDIENCE,
    CLIENT_ID,
    REDIRECT_URI,
    OidcProvider,
    unavailable_reason,
)

pytestmark = [pytest.mark.oidc, pytest.mark.slow]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One oidc-provider process for the module."""
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as peer:
        yield peer


def _headers(token: str, device: str, method: str = "GET", path: str = "/v1/me") -> dict[str, str]:
    return auth_headers(token, method, path, device)


async def test_real_provider_tokens_and_key_rotation(
    provider: OidcProvider, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        oidc_jwks_min_refresh_seconds=1,
    )
    async with running(create_app(settings)) as api:
        meta = (await api.get("/v1/meta")).json()["oidc"]
        assert meta["issuer"] == provider.issuer and meta["client_id"] == CLIENT_ID
        assert "openid" in meta["scopes"]

        alice = await asyncio.to_thread(provider.login, "alice")
        assert jwt.get_unverified_header(alice)["kid"] == "kid-1"
        me = await api.get("/v1/me", headers=_headers(alice, "alice-laptop"))
        assert me.status_code == 200, me.text
        assert me.json()["email"] == "alice@example.org" and me.json()["email_verified"]
        bob = await asyncio.to_thread(provider.login, "bob")
        bob_me = await api.get("/v1/me", headers=_headers(bob, "bob-laptop1"))
        assert bob_me.json()["id"] != me.json()["id"]
        mallory = await asyncio.to_thread(provider.login, "mallory")
        denied = await api.get("/v1/me", headers=_headers(mallory, "mallory-pc"))
        assert denied.status_code == 403  # email_verified is false

        push = await api.post(
            "/v1/sync/push",
            headers=_headers(alice, "alice-laptop", "POST", "/v1/sync/push"),
            json={
                "records": [
                    {
                        "id": "m1",
                        "kind": "message",
                        "revision": 1,
                        "key_id": "k",
                        "payload": base64.b64encode(b"ct").decode(),
                    }
                ]
            },
        )
        assert push.status_code == 200

        # Rotation: the provider signs with a new key, the old one is still published.
        await asyncio.to_thread(provider.rotate)
        await asyncio.sleep(1.1)
        rotated = await asyncio.to_thread(provider.login, "alice")
        assert jwt.get_unverified_header(rotated)["kid"] == "kid-2"
        again = await api.get("/v1/me", headers=_headers(rotated, "alice-phone1"))
        assert again.status_code == 200, again.text
        assert again.json()["id"] == me.json()["id"]
        still = await api.get("/v1/me", headers=_headers(alice, "alice-laptop"))
        assert still.status_code == 200

        # Old key retired by the provider: tokens from the newest key still work.
        await asyncio.to_thread(provider.rotate, keep_old=False)
        await asyncio.sleep(1.1)
        newest = await asyncio.to_thread(provider.login, "alice")
        ok = await api.get("/v1/me", headers=_headers(newest, "alice-tablet"))
        assert ok.status_code == 200, ok.text
        assert jwt.get_unverified_header(newest)["kid"] == "kid-3"


def test_pkce_is_required(provider: OidcProvider) -> None:
    response = httpx.get(
        provider.issuer + "/auth",
        params={
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "login_hint": "alice",
        },
    )
    location = response.headers.get("location", "")
    assert response.status_code in (302, 303)
    assert location.startswith(REDIRECT_URI) and "error=invalid_request" in location
    assert "PKCE" in httpx.URL(location).params.get("error_description", "")

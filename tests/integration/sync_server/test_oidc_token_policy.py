"""Token policy and issuer outages against the real ``oidc-provider`` (Node, loopback).

* ``OIDC_REQUIRE_TOKEN_TYPE=at+jwt``: oidc-provider's RFC 9068 access tokens pass, the
  same provider set to stamp ``typ: JWT`` is refused;
* ``OIDC_MAX_TOKEN_LIFETIME_SECONDS``: a provider issuing two-hour tokens is refused by a
  server that accepts one hour;
* the provider stopped: after ``OIDC_JWKS_CACHE_SECONDS`` the cached keys keep working
  for the grace period (and without one, the server answers 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tests.peers.oidc_provider import AUDIENCE, CLIENT_ID, OidcProvider, unavailable_reason

pytestmark = [pytest.mark.oidc, pytest.mark.slow]


def _peer(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[OidcProvider]:
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    with OidcProvider(tmp_path_factory.mktemp("oidc"), **options) as peer:
        yield peer


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """Default oidc-provider access tokens: typ at+jwt, five minutes."""
    yield from _peer(tmp_path_factory)


@pytest.fixture(scope="module")
def lax(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A provider issuing two-hour access tokens with ``typ: JWT``."""
    yield from _peer(tmp_path_factory, access_token_ttl=7200, access_token_typ="JWT")


def _settings(tmp_path: Path, provider: OidcProvider, **overrides: Any) -> Any:
    return make_settings(
        tmp_path,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        **overrides,
    )


async def _me(api: httpx.AsyncClient, token: str, device: str) -> httpx.Response:
    return await api.get("/v1/me", headers=auth_headers(token, "GET", "/v1/me", device))


async def test_strict_server_accepts_rfc9068_tokens(standard: OidcProvider, tmp_path: Path) -> None:
    token = await asyncio.to_thread(standard.login, "alice")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["typ"] == "at+jwt" and claims["exp"] - claims["iat"] == 300
    settings = _settings(
        tmp_path,
        standard,
        oidc_require_token_type="at+jwt",
        oidc_max_token_lifetime_seconds=3600,
    )
    async with running(create_app(settings)) as api:
        answer = await _me(api, token, "alice-laptop")
        assert answer.status_code == 200, answer.text


async def test_strict_server_refuses_other_types_and_long_lifetimes(
    lax: OidcProvider, tmp_path: Path
) -> None:
    token = await asyncio.to_thread(lax.login, "alice")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert jwt.get_unverified_header(token)["typ"] == "JWT"
    assert claims["exp"] - claims["iat"] == 7200
    cases = [
        ({"oidc_require_token_type": "at+jwt"}, 401, "token type not accepted"),
        (
            {"oidc_max_token_lifetime_seconds": 3600},
            401,
            "token lifetime longer than this server accepts",
        ),
        ({}, 200, None),  # the defaults: any typ, lifetimes up to a day
    ]
    for n, (overrides, status, detail) in enumerate(cases):
        settings = _settings(tmp_path / str(n), lax, **overrides)
        async with running(create_app(settings)) as api:
            answer = await _me(api, token, f"alice-device-{n}")
        assert answer.status_code == status, (overrides, answer.text)
        if detail is not None:
            assert answer.json()["detail"] == detail


async def test_cached_keys_outlive_a_stopped_issuer_for_the_grace_period(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    peer = OidcProvider(tmp_path_factory.mktemp("oidc"))
    peer.start()
    try:
        token = await asyncio.to_thread(peer.login, "alice")
        ttl = 10  # the shortest OIDC_JWKS_CACHE_SECONDS allowed
        graceful = create_app(_settings(tmp_path / "grace", peer, oidc_jwks_cache_seconds=ttl))
        strict = create_app(
            _settings(
                tmp_path / "strict",
                peer,
                oidc_jwks_cache_seconds=ttl,
                oidc_jwks_grace_seconds=0,
            )
        )
        async with running(graceful) as grace_api, running(strict) as strict_api:
            assert (await _me(grace_api, token, "alice-laptop")).status_code == 200
            assert (await _me(strict_api, token, "alice-laptop")).status_code == 200
            await asyncio.to_thread(peer.stop)  # the issuer goes away
            await asyncio.sleep(ttl + 0.5)  # the cached keys are now stale
            answers = [await _me(grace_api, token, "alice-laptop") for _ in range(5)]
            assert [a.status_code for a in answers] == [200] * 5
            down = await _me(strict_api, token, "alice-laptop")
            assert down.status_code == 503
            assert down.json()["type"].endswith("issuer-unavailable")
            assert int(down.headers["Retry-After"]) >= 1
    finally:
        peer.stop()

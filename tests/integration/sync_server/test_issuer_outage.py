"""The server while its OIDC issuer is down: signed-in users keep working from the cached
keys, and unknown key ids cost one fetch per backoff step, not one per request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sync_server.app import create_app
from tests.integration.sync_server.support import FakeIssuer, auth_headers, make_settings, running


def _auth(token: str, device: str = "device-0001") -> dict[str, str]:
    return auth_headers(token, "GET", "/v1/me", device)


async def test_unknown_kids_during_an_outage_cost_one_fetch(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, oidc_jwks_min_refresh_seconds=0)
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        alice = issuer.mint("alice")
        assert (await api.get("/v1/me", headers=_auth(alice))).status_code == 200
        assert issuer.fetches == 1
        issuer.failing = True
        issuer.add_key("rogue", publish=False)
        answers = [
            await api.get("/v1/me", headers=_auth(issuer.mint(f"m{n}", kid="rogue")))
            for n in range(30)
        ]
        assert {answer.status_code for answer in answers} == {503}
        assert issuer.fetches == 2  # one attempt, then backing off
        assert all(int(answer.headers["Retry-After"]) >= 1 for answer in answers)
        assert answers[-1].json()["type"].endswith("issuer-unavailable")
        # Known keys are still served from the cache meanwhile.
        assert (await api.get("/v1/me", headers=_auth(alice))).status_code == 200
        # Concurrent unknown kids after the backoff: still one fetch between them.
        await asyncio.sleep(1.1)
        tokens = [issuer.mint(f"c{n}", kid="rogue") for n in range(10)]
        await asyncio.gather(*(api.get("/v1/me", headers=_auth(t)) for t in tokens))
        assert issuer.fetches == 3


async def test_an_issuer_down_from_the_start_is_asked_once_per_backoff_step(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    issuer.failing = True
    settings = make_settings(tmp_path)
    async with running(create_app(settings, http_transport=issuer.transport())) as api:
        statuses = [
            (await api.get("/v1/me", headers=_auth(issuer.mint(f"u{n}")))).status_code
            for n in range(20)
        ]
        assert statuses == [503] * 20
        assert issuer.requests == 1  # the discovery document, once
        issuer.failing = False
        await asyncio.sleep(1.1)
        answer = await api.get("/v1/me", headers=_auth(issuer.mint("alice")))
        assert answer.status_code == 200
        assert issuer.requests == 3  # discovery and JWKS

"""The JWKS cache under an issuer that fails, hangs or is slow: backoff after failed
fetches, one shared fetch that cached lookups never wait for, and the grace period."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from sync_server.auth.oidc import IssuerUnavailableError, JwksCache
from tests.unit.sync_server.test_oidc import ISSUER, JWKS_URL, Issuer


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """The issuer's JWKS endpoint that can be switched to failing, hanging or slow."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.failing = False
        self.delay = 0.0
        self.fetches = 0
        self.gate: asyncio.Event | None = None

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failing:
            return httpx.Response(503)
        return httpx.Response(200, json=self.issuer.jwks())


def make_cache(
    outage: Outage,
    clock: Clock,
    *,
    ttl: float = 3600,
    min_refresh: float = 10,
    grace: float = 600,
    retry_max: float = 300,
) -> JwksCache:
    http = httpx.AsyncClient(transport=httpx.MockTransport(outage.handler))
    return JwksCache(
        http,
        ISSUER,
        JWKS_URL,
        ttl=ttl,
        min_refresh=min_refresh,
        grace=grace,
        retry_max=retry_max,
        clock=clock,
    )


@pytest.fixture
def issuer() -> Issuer:
    fake = Issuer()
    fake.add_key("key-1")
    return fake


async def test_a_failing_issuer_is_not_refetched_for_every_unknown_kid(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    outage, clock = Outage(issuer), Clock()
    outage.failing = True
    jwks = make_cache(outage, clock)
    with caplog.at_level(logging.WARNING, logger="sync_server.auth.oidc"):
        for n in range(50):
            with pytest.raises(IssuerUnavailableError):
                await jwks.get(f"garbage-{n}")
    assert outage.fetches == 1
    assert [r.message for r in caplog.records] == ["jwks_fetch_failed"]
    # The wait doubles: 1 s, 2 s, 4 s, ... up to retry_max.
    for expected_wait in (1, 2, 4, 8):
        clock.now += expected_wait - 0.5
        with pytest.raises(IssuerUnavailableError) as refused:
            await jwks.get("garbage")
        assert refused.value.retry_after == 1
        before = outage.fetches
        clock.now += 0.5
        with pytest.raises(IssuerUnavailableError):
            await jwks.get("garbage")
        assert outage.fetches == before + 1
    # Back up: the next attempt after the wait succeeds and resets the backoff.
    outage.failing = False
    clock.now += 16
    assert await jwks.get("key-1") is not None
    assert await jwks.get("garbage") is None
    assert outage.fetches == 6


async def test_the_backoff_is_capped(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    outage.failing = True
    jwks = make_cache(outage, clock, retry_max=5)
    for _ in range(6):
        with pytest.raises(IssuerUnavailableError):
            await jwks.get("key-1")
        clock.now += 5
    assert outage.fetches == 6  # one per 5 s: the wait stopped doubling at retry_max


async def test_concurrent_unknown_kids_share_one_fetch(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock, min_refresh=0)
    assert await jwks.get("key-1") is not None
    issuer.add_key("rotated")
    outage.delay = 0.05
    results = await asyncio.gather(*(jwks.get("rotated") for _ in range(20)))
    assert all(result is not None for result in results)
    assert outage.fetches == 2  # the first fill, then one fetch for all twenty


async def test_cached_keys_do_not_wait_for_a_fetch(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock, min_refresh=0)
    assert await jwks.get("key-1") is not None
    outage.gate = asyncio.Event()  # the issuer hangs
    pending = asyncio.create_task(jwks.get("unknown"))
    await asyncio.sleep(0.01)
    assert outage.fetches == 2  # the fetch for "unknown" is in flight ...
    # ... and a known key is answered at once, without waiting for it.
    key = await asyncio.wait_for(jwks.get("key-1"), timeout=1)
    assert key is not None
    outage.gate.set()
    assert await pending is None


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock)
    outage.gate = asyncio.Event()
    first = asyncio.create_task(jwks.get("key-1"))
    second = asyncio.create_task(jwks.get("key-1"))
    await asyncio.sleep(0.01)
    first.cancel()
    outage.gate.set()
    assert await second is not None
    assert first.cancelled()
    assert outage.fetches == 1


async def test_stale_keys_are_used_within_the_grace_period(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock, ttl=100, grace=600)
    assert await jwks.get("key-1") is not None
    outage.failing = True
    clock.now += 150  # stale: refetched in the background, the cached key still answers
    assert await jwks.get("key-1") is not None
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert outage.fetches == 2
    for _ in range(10):  # backing off: no fetch per request, the key still answers
        assert await jwks.get("key-1") is not None
    assert outage.fetches == 2
    clock.now += 100 + 600 - 150 + 1  # past ttl + grace
    with pytest.raises(IssuerUnavailableError):
        await jwks.get("key-1")


async def test_without_grace_a_stale_cache_needs_the_issuer(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock, ttl=100, grace=0)
    assert await jwks.get("key-1") is not None
    outage.failing = True
    clock.now += 101
    with pytest.raises(IssuerUnavailableError):
        await jwks.get("key-1")


async def test_a_successful_background_refresh_drops_retired_keys(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock, ttl=100, grace=600, min_refresh=3600)
    assert await jwks.get("key-1") is not None
    issuer.keys.pop("key-1")
    issuer.add_key("key-2")
    clock.now += 101
    assert await jwks.get("key-1") is not None  # stale answer while refreshing
    await asyncio.sleep(0.01)
    assert outage.fetches == 2
    assert await jwks.get("key-1") is None  # retired by the issuer
    assert await jwks.get("key-2") is not None


async def test_closing_cancels_a_fetch_in_flight(issuer: Issuer) -> None:
    outage, clock = Outage(issuer), Clock()
    jwks = make_cache(outage, clock)
    outage.gate = asyncio.Event()
    waiting = asyncio.create_task(jwks.get("key-1"))
    await asyncio.sleep(0.01)
    await jwks.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await jwks.aclose()  # nothing in flight: a no-op

"""The rate limiter's address buckets, remembered per client host."""

from __future__ import annotations

from typing import Any

from sync_server import ratelimit
from sync_server.ratelimit import RateLimiter, address_key
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings


def _limiter(**overrides: Any) -> RateLimiter:
    values: dict[str, Any] = {name.lower(): value for name, value in generate_secrets().items()}
    values.update(overrides)
    return RateLimiter(Settings(**values))


def test_a_remembered_bucket_is_the_computed_one() -> None:
    limiter = _limiter(rate_limit_ipv6_prefix=56)
    hosts = ["198.51.100.7", "2001:db8:0:1::1", "2001:db8:0:ff::9", "::ffff:10.0.0.1", "unknown"]
    for _ in range(2):  # computed, then remembered
        assert [limiter.address(host) for host in hosts] == [
            address_key(host, 56) for host in hosts
        ]
    assert limiter.address("2001:db8:0:1::1") == limiter.address("2001:db8:0:ff::9")


def test_the_memory_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(ratelimit, "ADDRESSES_KEPT", 8)
    limiter = _limiter()
    for n in range(100):
        assert limiter.address(f"192.0.2.{n}") == f"192.0.2.{n}"
        assert len(limiter._buckets) <= 8

"""Rate limits with the ``limits`` library: per account, per client address and global,
plus the sign-in backoff per e-mail address.

Storage is in memory by default (one process) or Redis (``async+redis://…``) shared by all
replicas. A hit over the limit answers 429 with ``Retry-After``; every limited response
carries ``RateLimit-Limit``/``RateLimit-Remaining``/``RateLimit-Reset`` (IETF draft).

Client addresses are counted by :func:`address_key`: an IPv4 address on its own, an IPv6
address by its network (``/64`` by default), because one customer usually gets a whole
``/64`` and could otherwise rotate through it. Failed authentications have their own
per-address counter (:meth:`RateLimiter.refuse_if_failing`, :meth:`RateLimiter.count_failure`).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from sync_server.errors import ConfigError, ProblemError
from sync_server.settings import Settings

#: Client hosts whose bucket :meth:`RateLimiter.address` remembers (all forgotten at once
#: when full: the host is the client's to choose).
ADDRESSES_KEPT = 4096


def address_key(host: str, ipv6_prefix: int = 64) -> str:
    """The bucket a client address is counted in: IPv4 /32, IPv6 /``ipv6_prefix``.

    IPv4-mapped IPv6 addresses count as their IPv4 address; anything that is not an IP
    address (a Unix socket peer, ``unknown``) is its own bucket.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)


def _too_many(item: RateLimitItem, reset: int, detail: str) -> ProblemError:
    wait = str(max(reset, 1))
    return ProblemError(
        429,
        "Too many requests",
        detail,
        slug="rate-limited",
        headers={
            "Retry-After": wait,
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": wait,
        },
    )


class RateLimiter:
    """Checks the configured limits; :meth:`hit` raises a 429 problem when one is exceeded."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits_enabled
        self.ipv6_prefix = settings.rate_limit_ipv6_prefix
        url = settings.rate_limit_storage_url
        if not url.startswith("async+"):
            url = "async+" + url
        try:
            storage = storage_from_string(url)
            self.user = parse(settings.rate_limit_user)
            self.global_ = parse(settings.rate_limit_global)
            self.anonymous = parse(settings.rate_limit_anonymous)
            self.sign_in = parse(settings.rate_limit_sign_in)
            self.auth_failures = parse(settings.rate_limit_auth_failures)
        except ValueError as exc:
            raise ConfigError(f"Invalid rate-limit setting: {exc}") from exc
        if not isinstance(storage, Storage):
            raise ConfigError("HUSHCHAT_SYNC_RATE_LIMIT_STORAGE_URL must name an async storage")
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._buckets: dict[str, str] = {}

    def address(self, host: str) -> str:
        """The counting bucket of a client address (see :func:`address_key`).

        Remembered for the last :data:`ADDRESSES_KEPT` hosts: parsing an address took
        15 µs of a request's CPU under load, for the same few clients again and again.
        """
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = address_key(host, self.ipv6_prefix)
            if len(self._buckets) >= ADDRESSES_KEPT:
                self._buckets.clear()
            self._buckets[host] = bucket
        return bucket

    async def _reset_in(self, item: RateLimitItem, key: str) -> int:
        stats = await self._limiter.get_window_stats(item, key)
        return max(0, math.ceil(stats.reset_time - time.time()))

    async def hit(self, checks: list[tuple[RateLimitItem, str]]) -> dict[str, str]:
        """Count one request against each (limit, key); return headers for the tightest."""
        if not self.enabled:
            return {}
        headers: dict[str, str] = {}
        tightest: float | None = None
        for item, key in checks:
            allowed = await self._limiter.hit(item, key)
            stats = await self._limiter.get_window_stats(item, key)
            reset = max(0, math.ceil(stats.reset_time - time.time()))
            if not allowed:
                raise _too_many(item, reset, f"Limit of {item} exceeded; retry in {reset} s.")
            share = stats.remaining / item.amount
            if tightest is None or share < tightest:
                tightest = share
                headers = {
                    "RateLimit-Limit": str(item.amount),
                    "RateLimit-Remaining": str(stats.remaining),
                    "RateLimit-Reset": str(reset),
                }
        return headers

    async def refuse_if_failing(self, address: str) -> None:
        """429 when ``address`` used up its failed authentications (checked before any work)."""
        if not self.enabled:
            return
        key = "authfail:" + address
        if not await self._limiter.test(self.auth_failures, key):
            reset = await self._reset_in(self.auth_failures, key)
            raise _too_many(
                self.auth_failures,
                reset,
                f"Too many failed authentications from this address; retry in {reset} s.",
            )

    async def count_failure(self, address: str) -> None:
        """Count one failed authentication; 429 when it was one too many."""
        if not self.enabled:
            return
        key = "authfail:" + address
        if not await self._limiter.hit(self.auth_failures, key):
            reset = await self._reset_in(self.auth_failures, key)
            raise _too_many(
                self.auth_failures,
                reset,
                f"Too many failed authentications from this address; retry in {reset} s.",
            )

    async def check_storage(self) -> bool:
        """True when the limits storage answers (readiness)."""
        return bool(await self.storage.check())


class SignInBackoff:
    """Exponential backoff per e-mail address after failed password sign-ins.

    After ``free_attempts`` failures, each further failure locks the address for 1 s,
    2 s, 4 s, … up to ``max_seconds``; a successful sign-in clears it, and the count is
    forgotten a day after the first failure. The state lives in the rate-limit storage
    (shared by replicas with Redis) under an HMAC of the address, so the storage holds
    no e-mail addresses. Unknown addresses back off exactly like known ones: the answer
    does not reveal which addresses have accounts.
    """

    _COUNT_TTL = 86400

    def __init__(
        self,
        storage: Storage,
        secret: str,
        *,
        free_attempts: int,
        max_seconds: int,
        enabled: bool = True,
    ) -> None:
        self._storage = storage
        self._key = hmac.new(secret.encode(), b"hushchat-sync sign-in backoff v1", "sha256")
        self._free = free_attempts
        self._max = max_seconds
        self.enabled = enabled

    def _name(self, address: str) -> str:
        mac = self._key.copy()
        mac.update(address.encode())
        return mac.hexdigest()[:32]

    async def wait_seconds(self, address: str) -> int:
        """Seconds until ``address`` may try again (0: now)."""
        if not self.enabled:
            return 0
        lock = "signin-lock:" + self._name(address)
        if await self._storage.get(lock) <= 0:
            return 0
        return max(0, math.ceil(await self._storage.get_expiry(lock) - time.time()))

    async def refuse_if_locked(self, address: str) -> None:
        """429 with ``Retry-After`` while ``address`` is backing off."""
        wait = await self.wait_seconds(address)
        if wait > 0:
            raise ProblemError(
                429,
                "Too many failed sign-ins",
                f"Too many failed sign-ins for this address; retry in {wait} s.",
                slug="sign-in-backoff",
                headers={"Retry-After": str(wait)},
            )

    async def failed(self, address: str) -> int:
        """Record a failed sign-in; returns the lock it started (seconds, 0 for none)."""
        if not self.enabled:
            return 0
        name = self._name(address)
        count = int(await self._storage.incr("signin-fail:" + name, self._COUNT_TTL))
        beyond = count - self._free
        if beyond <= 0:
            return 0
        seconds = min(self._max, 1 << min(beyond - 1, 30))
        lock = "signin-lock:" + name
        await self._storage.clear(lock)
        await self._storage.incr(lock, seconds)
        return seconds

    async def succeeded(self, address: str) -> None:
        """Forget the failures of ``address``."""
        if not self.enabled:
            return
        name = self._name(address)
        await self._storage.clear("signin-fail:" + name)
        await self._storage.clear("signin-lock:" + name)

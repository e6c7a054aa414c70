"""Rate limits with the ``limits`` library: per account, per client address and global.

Storage is in memory by default (one process) or Redis (``async+redis://…``) shared by all
replicas. A hit over the limit answers 429 with ``Retry-After``; every limited response
carries ``RateLimit-Limit``/``RateLimit-Remaining``/``RateLimit-Reset`` (IETF draft).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from sync_server.errors import ConfigError, ProblemError
from sync_server.settings import Settings


class RateLimiter:
    """Checks the configured limits; :meth:`hit` raises a 429 problem when one is exceeded."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits_enabled
        url = settings.rate_limit_storage_url
        if not url.startswith("async+"):
            url = "async+" + url
        try:
            storage = storage_from_string(url)
            self.user = parse(settings.rate_limit_user)
            self.global_ = parse(settings.rate_limit_global)
            self.anonymous = parse(settings.rate_limit_anonymous)
            self.sign_in = parse(settings.rate_limit_sign_in)
        except ValueError as exc:
            raise ConfigError(f"Invalid rate-limit setting: {exc}") from exc
        if not isinstance(storage, Storage):
            raise ConfigError("HUSHCHAT_SYNC_RATE_LIMIT_STORAGE_URL must name an async storage")
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)

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
                raise ProblemError(
                    429,
                    "Too many requests",
                    f"Limit of {item} exceeded; retry in {reset} s.",
                    slug="rate-limited",
                    headers={
                        "Retry-After": str(max(reset, 1)),
                        "RateLimit-Limit": str(item.amount),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(max(reset, 1)),
                    },
                )
            share = stats.remaining / item.amount
            if tightest is None or share < tightest:
                tightest = share
                headers = {
                    "RateLimit-Limit": str(item.amount),
                    "RateLimit-Remaining": str(stats.remaining),
                    "RateLimit-Reset": str(reset),
                }
        return headers

    async def check_storage(self) -> bool:
        """True when the limits storage answers (readiness)."""
        return bool(await self._storage.check())

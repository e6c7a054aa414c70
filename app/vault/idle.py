"""Idle auto-lock: a clock abstraction and a timer the UI or CLI drives.

The vault does not start threads. The UI calls ``Vault.lock_if_idle()`` from a timer
(``seconds_until_idle_lock()`` says when next to look) and reports user activity with
``record_activity()``; tests drive a :class:`ManualClock`.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "IdleTimer", "ManualClock", "MonotonicClock"]


class Clock(Protocol):
    """A monotonic time source in seconds."""

    def now(self) -> float:
        """Return the current monotonic time."""


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests, simulations)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the current fake time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the fake time forward."""
        self._now += seconds


class IdleTimer:
    """Tracks the last activity and says when an idle timeout has elapsed."""

    def __init__(self, timeout_seconds: float | None, clock: Clock) -> None:
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise ValueError("the idle timeout must be positive (or None for never)")
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._last_activity = clock.now()

    def record_activity(self) -> None:
        """Restart the idle period."""
        self._last_activity = self._clock.now()

    def seconds_left(self) -> float | None:
        """Seconds until the timeout (0 when elapsed), or None when there is no timeout."""
        if self.timeout_seconds is None:
            return None
        return max(0.0, self._last_activity + self.timeout_seconds - self._clock.now())

    def is_expired(self) -> bool:
        """Whether the idle period has elapsed."""
        left = self.seconds_left()
        return left is not None and left <= 0.0

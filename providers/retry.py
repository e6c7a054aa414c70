"""When a failed request may be sent again, and how long to wait first.

Only failures where the server cannot have started on the request are
retried: connection refused or unresolvable hosts, and 429/503 answers that
arrive before the first event of a stream. Nothing is retried once an event
has reached the caller, so a retry can never duplicate part of an answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the server's ``Retry-After``.

    ``base_delay`` doubles per attempt up to ``max_delay``; the actual wait is
    drawn from the upper half of that window so that clients that failed
    together do not retry together. A ``Retry-After`` of at most
    ``retry_after_cap`` seconds is honoured as given; a longer one is not slept
    through (the caller gets a ``RateLimitedError`` to show instead).
    """

    base_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up now."""
        if retry_after is not None:
            return retry_after if retry_after <= self.retry_after_cap else None
        window = min(self.max_delay, self.base_delay * (2.0**attempt))
        # Jitter spreads retries out; it is not a security measure.
        return window / 2 + random.uniform(0, window / 2)  # noqa: S311

"""Answer statistics: time to first token, tokens, tokens/s, model, as one line.

The rate is defined so that it cannot contradict the numbers beside it: the line
always names the interval it was taken over.

* Normally the rate is that of the tokens *after the first* over the time from the
  first token to the end: ``(tokens - 1) / (end - first_token)``; the time to first
  token (prompt processing, queueing, network) is shown separately, so the line reads
  "312 tokens in 8.57 s (time to first token 0.41 s), 38.2 tokens/s after the first
  token": 311 tokens in 8.16 s.
* When the server delivered the whole answer in one burst (the time after the first
  token is too short to measure, or a single chunk arrived), a rate after the first
  token is meaningless (it was 11000 tokens/s for a 16-token answer that took 0.070 s):
  the rate is then taken over the whole answer, ``tokens / (end - start)``, and the
  line says so.

Pure functions, no Qt: the chat view paints :func:`message_stats_line` under each
answer, ``hushchat providers probe`` prints :func:`stats_line`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.store.models import Message

__all__ = ["BURST_SECONDS", "AnswerStats", "answer_stats", "message_stats_line", "stats_line"]

# Less time than this between the first token and the end is "one burst": too short
# to measure a generation rate over (timer resolution, one network read).
BURST_SECONDS: Final = 0.02


@dataclass(frozen=True, slots=True)
class AnswerStats:
    """The figures of one answer; ``rate_after_first`` says which interval ``rate`` is over."""

    tokens: int
    total_seconds: float
    first_token_seconds: float
    rate: float | None
    rate_after_first: bool
    model: str | None = None


def answer_stats(
    *,
    started: float,
    first_token: float,
    finished: float,
    tokens: int,
    chunks: int | None = None,
    model: str | None = None,
) -> AnswerStats:
    """The stats of an answer requested at ``started`` whose first text arrived at
    ``first_token`` and whose last at ``finished`` (seconds on one clock).

    ``tokens`` is the server's completion token count when it reports one, else the
    number of text chunks. ``chunks``, when known, is how many text chunks arrived
    (one chunk is always a burst).
    """
    total = max(finished - started, 0.0)
    to_first = min(max(first_token - started, 0.0), total)
    after_first = total - to_first
    burst = after_first < BURST_SECONDS or tokens < 2 or (chunks is not None and chunks < 2)
    rate: float | None
    if not burst:
        rate = (tokens - 1) / after_first
    elif total > 0 and tokens > 0:
        rate = tokens / total
    else:
        rate = None
    return AnswerStats(tokens, total, to_first, rate, not burst, model)


def stats_line(stats: AnswerStats) -> str:
    """One line: "312 tokens in 8.57 s (time to first token 0.41 s), 38.2 tokens/s after
    the first token, tiny-llama" (the rate's interval always named)."""
    noun = "token" if stats.tokens == 1 else "tokens"
    parts = [
        f"{stats.tokens:,} {noun} in {_seconds(stats.total_seconds)} "
        f"(time to first token {_seconds(stats.first_token_seconds)})"
    ]
    if stats.rate is not None:
        where = "after the first token" if stats.rate_after_first else "over the whole answer"
        parts.append(f"{_rate(stats.rate)} tokens/s {where}")
    if stats.model:
        parts.append(stats.model)
    return ", ".join(parts)


def message_stats_line(message: Message) -> str | None:
    """The stats line of a saved answer, or None when there is nothing to show (a user's
    message, an answer still streaming or without any text, one synced without timings)."""
    if message.role != "assistant" or message.first_token_at is None:
        return None
    if message.finished_at is None:
        return None
    started = message.created_at
    if message.duration_ms is not None:
        started = message.finished_at - message.duration_ms / 1000
    tokens = message.completion_tokens
    if tokens is None:
        return None
    stats = answer_stats(
        started=started,
        first_token=message.first_token_at,
        finished=message.finished_at,
        tokens=tokens,
        model=message.model,
    )
    return stats_line(stats)


def _seconds(value: float) -> str:
    if value < 10:
        return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"
    return f"{value:.1f} s"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

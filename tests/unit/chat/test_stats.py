"""Answer stats: the rate names its interval and never contradicts the line it is on."""

from __future__ import annotations

import re

import pytest

from app.chat.cli import describe_params
from app.chat.stats import answer_stats, message_stats_line, stats_line
from app.cli import ProbeStats
from app.store.models import ChatParams, Message, MessageStatus


def figures(line: str) -> tuple[int, float, float, float]:
    """tokens, total seconds, seconds to first token, tokens/s read back from a line."""
    match = re.match(
        r"([\d,]+) tokens? in ([\d.]+) s \(time to first token ([\d.]+) s\), ([\d,.]+) tokens/s",
        line,
    )
    assert match, line
    tokens, total, first, rate = match.groups()
    return int(tokens.replace(",", "")), float(total), float(first), float(rate.replace(",", ""))


def test_steady_stream_rate_is_over_the_time_after_the_first_token() -> None:
    stats = answer_stats(started=100.0, first_token=100.5, finished=110.5, tokens=301)
    line = stats_line(stats)
    assert line == (
        "301 tokens in 10.5 s (time to first token 0.500 s), 30.0 tokens/s after the first token"
    )
    tokens, total, first, rate = figures(line)
    # The figures on the line agree: 300 tokens after the first in 10.0 s.
    assert rate == pytest.approx((tokens - 1) / (total - first), rel=0.01)


def test_one_burst_falls_back_to_the_whole_answer() -> None:
    # What `providers probe` printed as "16 tokens in 0.070 s (11000.0 tokens/s)": every
    # chunk arrived within a millisecond of the first.
    stats = answer_stats(
        started=0.0, first_token=0.0686, finished=0.070, tokens=16, chunks=16, model="tiny"
    )
    assert not stats.rate_after_first
    line = stats_line(stats)
    assert line == (
        "16 tokens in 0.070 s (time to first token 0.069 s), "
        "229 tokens/s over the whole answer, tiny"
    )
    tokens, total, _first, rate = figures(line)
    assert rate == pytest.approx(tokens / total, rel=0.01)


def test_a_single_chunk_is_a_burst_whatever_the_clock_says() -> None:
    stats = answer_stats(started=0.0, first_token=0.5, finished=1.0, tokens=40, chunks=1)
    assert not stats.rate_after_first
    assert stats.rate == pytest.approx(40.0)


def test_one_token_answer_has_a_singular_noun_and_whole_answer_rate() -> None:
    line = stats_line(answer_stats(started=0.0, first_token=0.25, finished=0.25, tokens=1))
    assert line.startswith("1 token in 0.250 s")
    assert "over the whole answer" in line


def test_zero_time_has_no_rate() -> None:
    line = stats_line(answer_stats(started=1.0, first_token=1.0, finished=1.0, tokens=3))
    assert "tokens/s" not in line


def answer(**fields: object) -> Message:
    base: dict[str, object] = {
        "id": "a",
        "chat_id": "c",
        "parent_id": "q",
        "role": "assistant",
        "content": "hello",
        "status": MessageStatus.COMPLETE,
        "created_at": 1000.0,
        "model": "tiny-llama",
        "completion_tokens": 101,
        "first_token_at": 1000.4,
        "finished_at": 1002.4,
        "duration_ms": 2500,
    }
    base.update(fields)
    return Message(**base)  # type: ignore[arg-type]


def test_message_line_uses_the_saved_timings() -> None:
    # duration_ms says the request left at 999.9: 0.5 s to the first token.
    assert message_stats_line(answer()) == (
        "101 tokens in 2.50 s (time to first token 0.500 s), "
        "50.0 tokens/s after the first token, tiny-llama"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "user"},
        {"first_token_at": None},
        {"finished_at": None},
        {"completion_tokens": None},
    ],
)
def test_message_without_figures_has_no_line(fields: dict[str, object]) -> None:
    assert message_stats_line(answer(**fields)) is None


def test_probe_summary_of_a_burst_does_not_contradict_itself() -> None:
    probe = ProbeStats()
    probe.started = 10.0
    probe.first, probe.last, probe.deltas = 10.0686, 10.070, 16
    probe.completion_tokens, probe.finish = 16, "length"
    summary = probe.summary()
    assert summary.endswith("; finish: length")
    assert "over the whole answer" in summary
    tokens, total, _first, rate = figures(summary)
    assert rate == pytest.approx(tokens / total, rel=0.01)
    assert rate < 1000  # the old summary said 11000 tokens/s


def test_chats_show_describes_only_the_chats_own_parameters() -> None:
    assert describe_params(ChatParams()) == ""
    assert describe_params(ChatParams(temperature=0.3, max_tokens=1024, stop=("###", "\n"))) == (
        "temperature 0.3; max tokens 1,024; stop sequences '###', '\\n'"
    )
    assert describe_params(ChatParams(stop=())) == "stop sequences none"

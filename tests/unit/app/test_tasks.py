"""The window's task helper: results, errors a person can act on, bugs with their
traceback in the log, and cancellation reported on its own."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.errors import InternalError, UsageError
from app.ui import tasks
from providers import ConnectionFailedError


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_result_goes_to_on_done() -> None:
    seen: list[int] = []

    async def work() -> int:
        return 42

    tasks.start(work(), on_done=seen.append)
    await _settle()
    assert seen == [42] and tasks.running() == 0


@pytest.mark.parametrize(
    "error", [UsageError("type something"), ConnectionFailedError("down", provider="p")]
)
async def test_errors_a_person_can_act_on_go_to_on_error_unlogged(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[BaseException] = []

    async def work() -> None:
        raise error

    tasks.start(work(), on_error=seen.append)
    await _settle()
    assert seen == [error]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_bug_is_logged_with_its_traceback_and_reported_as_internal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BaseException] = []

    async def work() -> None:
        {}["missing"]

    tasks.start(work(), on_error=seen.append)
    await _settle()
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    (reported,) = seen
    assert isinstance(reported, InternalError)
    assert isinstance(reported.__cause__, KeyError)
    assert "KeyError" in str(reported) and "log" in str(reported)


async def test_cancellation_calls_on_cancel_not_on_error() -> None:
    cancelled: list[bool] = []
    errors: list[BaseException] = []
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(60)

    task = tasks.start(work(), on_error=errors.append, on_cancel=lambda: cancelled.append(True))
    await started.wait()
    tasks.cancel_all()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _settle()
    assert cancelled == [True] and errors == []

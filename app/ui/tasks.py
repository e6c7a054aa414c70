"""Running service coroutines from widgets: the UI's one way to do background work.

``start(coro, on_done=..., on_error=...)`` schedules a coroutine on the qasync
event loop and calls back on the UI thread when it finishes. Blocking calls
inside services go through ``app.executor.BlockingRunner``, so the UI thread
never waits on SQLCipher, Argon2, keyring or HTTP. Tasks are kept referenced
until done (asyncio keeps only weak references) and can be cancelled, which is
how Stop works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from app.errors import HushchatError
from providers import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def start(
    coro: Coroutine[Any, Any, T],
    *,
    on_done: Callable[[T], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> asyncio.Task[T]:
    """Run ``coro`` on the event loop; report its result or error on the UI thread.

    Errors a person can act on (HushchatError, ProviderError) go to ``on_error``;
    a task without ``on_error`` logs them. Cancellation is silent.
    """
    task = asyncio.ensure_future(coro)
    _running.add(task)

    def finished(done: asyncio.Task[T]) -> None:
        _running.discard(done)
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            if on_done is not None:
                on_done(done.result())
            return
        if on_error is not None:
            on_error(error)
        elif isinstance(error, HushchatError | ProviderError):
            log.warning("background task failed: %s", error)
        else:
            log.error("background task crashed", exc_info=error)

    task.add_done_callback(finished)
    return task


def running() -> int:
    """How many started tasks have not finished (tests wait for 0)."""
    return len(_running)


def cancel_all() -> None:
    """Cancel every running task (on lock and on quit)."""
    for task in list(_running):
        task.cancel()

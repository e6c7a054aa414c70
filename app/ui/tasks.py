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

import shiboken6
from PySide6.QtCore import QObject

from app.errors import HushchatError, InternalError
from providers import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def start(
    coro: Coroutine[Any, Any, T],
    *,
    on_done: Callable[[T], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_cancel: Callable[[], None] | None = None,
) -> asyncio.Task[T]:
    """Run ``coro`` on the event loop; report how it ended on the UI thread.

    * success: ``on_done(result)``;
    * an error a person can act on (HushchatError, ProviderError): ``on_error(error)``,
      or a warning in the log when there is no ``on_error``;
    * anything else is a bug: it is logged with its traceback, then ``on_error`` gets
      an :class:`~app.errors.InternalError` saying so (the original as its cause), so
      the widget can recover and tell the user where the details are;
    * cancellation (Stop, lock, quit): ``on_cancel()``.
    """
    task = asyncio.ensure_future(coro)
    _running.add(task)

    def finished(done: asyncio.Task[T]) -> None:
        _running.discard(done)
        if done.cancelled():
            if on_cancel is not None:
                on_cancel()
            return
        error = done.exception()
        if error is None:
            if on_done is not None:
                on_done(done.result())
            return
        if not isinstance(error, HushchatError | ProviderError):
            log.error("background task crashed", exc_info=error)
            internal = InternalError(
                f"Something went wrong ({type(error).__name__}); the details are in "
                "Hushchat's log. Please report this."
            )
            internal.__cause__ = error
            error = internal
        if on_error is not None:
            on_error(error)
        elif not isinstance(error, InternalError):
            log.warning("background task failed: %s", error)

    task.add_done_callback(finished)
    return task


def start_for(
    widget: QObject,
    coro: Coroutine[Any, Any, T],
    on_done: Callable[[T], None],
    on_error: Callable[[BaseException], None],
    on_cancel: Callable[[], None] | None = None,
) -> asyncio.Task[T]:
    """:func:`start` whose callbacks are skipped once ``widget`` is gone (a closed
    dialog, a page the window replaced)."""

    def done(result: T) -> None:
        if shiboken6.isValid(widget):
            on_done(result)

    def failed(error: BaseException) -> None:
        if shiboken6.isValid(widget):
            on_error(error)

    def cancelled() -> None:
        if on_cancel is not None and shiboken6.isValid(widget):
            on_cancel()

    return start(coro, on_done=done, on_error=failed, on_cancel=cancelled)


def running() -> int:
    """How many started tasks have not finished (tests wait for 0)."""
    return len(_running)


def cancel_all() -> None:
    """Cancel every running task (on lock and on quit)."""
    for task in list(_running):
        task.cancel()

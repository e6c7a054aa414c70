"""The one way services run blocking work off the event loop.

* ``db``: every database call goes through one dedicated thread, because a
  SQLite/SQLCipher connection must not be used by two threads at once, and one
  writer at a time is what SQLite wants anyway.
* ``blocking``: everything else that blocks (Argon2, keyring, FIDO2 HID) runs
  on a small thread pool.

The UI's qasync loop and the command line's ``asyncio.run`` both use this.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class BlockingRunner:
    """Runs blocking callables on the database thread or the worker pool."""

    def __init__(self, workers: int = 2) -> None:
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hushchat-db")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hushchat-work")

    async def db(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))

    async def blocking(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the worker pool and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def db_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database thread after the work already queued, and wait.

        For closing connections on lock: it cannot overlap a query still running.
        """
        return self._db.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        """Wait for running work to finish, then stop the threads."""
        self._db.shutdown(wait=True)
        self._pool.shutdown(wait=True)

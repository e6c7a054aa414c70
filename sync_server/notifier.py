"""Change notifications for long-polling pulls (``GET /v1/sync/changes?wait=…``).

A pull that finds nothing after its cursor may wait. :class:`ChangeNotifier` wakes the
waiters of an account as soon as a push to this process commits a change for it; for
pushes that reach another process or replica (sharing the database), the waiting pull
re-checks the database every ``LONG_POLL_INTERVAL_SECONDS``. Waiters hold no database
connection or transaction while they sleep.

Waiting is bounded: at most ``LONG_POLL_MAX_WAITERS_PER_DEVICE`` pulls per device and
``LONG_POLL_MAX_WAITERS_PER_ACCOUNT`` per account wait at once in a process (more answer
429), and :meth:`ChangeNotifier.close` — called when the server begins to shut down —
wakes every waiter and makes later pulls answer at once, so a graceful shutdown does not
wait for long-polls to time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from sync_server.errors import ProblemError

log = logging.getLogger(__name__)

_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ChangeNotifier:
    """Per-account wake-ups for waiting pulls, within one process (one event loop)."""

    def __init__(self, *, max_per_device: int, max_per_account: int) -> None:
        self._max_per_device = max_per_device
        self._max_per_account = max_per_account
        self._events: dict[str, asyncio.Event] = {}
        self._per_account: Counter[str] = Counter()
        self._per_device: Counter[tuple[str, str]] = Counter()
        self._closed = asyncio.Event()

    @property
    def is_closed(self) -> bool:
        """True once the server is shutting down: pulls no longer wait."""
        return self._closed.is_set()

    @property
    def waiting(self) -> int:
        """Pulls waiting now (all accounts)."""
        return sum(self._per_account.values())

    def changed(self, account_id: str) -> None:
        """A change of ``account_id`` was committed: wake its waiters."""
        event = self._events.pop(account_id, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Wake every waiter and stop waiting from now on (server shutdown)."""
        self._closed.set()
        for event in self._events.values():
            event.set()
        self._events.clear()

    @contextlib.contextmanager
    def waiter(self, account_id: str, device_id: str) -> Iterator[Waiter]:
        """A slot for one waiting pull; 429 when the device or account has too many."""
        device = (account_id, device_id)
        if self._per_device[device] >= self._max_per_device:
            raise _too_many("This device already has waiting pulls.")
        if self._per_account[account_id] >= self._max_per_account:
            raise _too_many("This account already has too many waiting pulls.")
        self._per_device[device] += 1
        self._per_account[account_id] += 1
        try:
            yield Waiter(self, account_id)
        finally:
            self._per_device[device] -= 1
            if not self._per_device[device]:
                del self._per_device[device]
            self._per_account[account_id] -= 1
            if not self._per_account[account_id]:
                del self._per_account[account_id]
                event = self._events.get(account_id)
                if event is not None and not event.is_set():
                    del self._events[account_id]

    def _event(self, account_id: str) -> asyncio.Event:
        event = self._events.get(account_id)
        if event is None:
            event = self._events[account_id] = asyncio.Event()
            if self.is_closed:
                event.set()
        return event

    def install_signal_hooks(self) -> Callable[[], None]:
        """Call :meth:`close` on SIGINT/SIGTERM, before the handler already installed.

        uvicorn waits for running requests before it shuts the app down; without this, a
        graceful shutdown would wait for every long-poll to time out. The hook only wraps
        Python-level handlers installed with ``signal.signal`` (uvicorn's) in the main
        thread; elsewhere it does nothing. Returns a function that puts them back.
        """
        try:
            loop = asyncio.get_running_loop()
            previous: dict[int, Any] = {
                number: signal.getsignal(number) for number in _SHUTDOWN_SIGNALS
            }
        except (RuntimeError, ValueError):
            return lambda: None

        def make(number: int, chained: Any) -> Callable[[int, FrameType | None], Any]:
            def handler(received: int, frame: FrameType | None) -> Any:
                loop.call_soon_threadsafe(self.close)
                if callable(chained):
                    return chained(received, frame)
                if chained == signal.SIG_DFL:
                    signal.signal(number, signal.SIG_DFL)
                    signal.raise_signal(number)
                return None

            return handler

        installed: dict[int, Callable[[int, FrameType | None], Any]] = {}
        try:
            for number, chained in previous.items():
                if chained is None:  # installed from C: leave it alone
                    continue
                installed[number] = make(number, chained)
                signal.signal(number, installed[number])
        except ValueError:  # not the main thread
            log.debug("long-poll shutdown hook not installed (not the main thread)")

        def restore() -> None:
            for number, handler in installed.items():
                with contextlib.suppress(ValueError):
                    if signal.getsignal(number) is handler:
                        signal.signal(number, previous[number])

        return restore


class Waiter:
    """One waiting pull's view of the notifier."""

    def __init__(self, notifier: ChangeNotifier, account_id: str) -> None:
        self._notifier = notifier
        self._account_id = account_id
        self._event: asyncio.Event | None = None

    def arm(self) -> None:
        """Start listening; call *before* each database check, so no change slips between."""
        self._event = self._notifier._event(self._account_id)

    async def sleep(self, seconds: float) -> bool:
        """Wait for a change (after :meth:`arm`) or ``seconds``; True when woken by one."""
        assert self._event is not None, "arm() before sleep()"
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


def _too_many(detail: str) -> ProblemError:
    return ProblemError(
        429,
        "Too many waiting pulls",
        detail + " Wait for them to answer, or pull with wait=0.",
        slug="too-many-waiters",
        headers={"Retry-After": "1"},
    )

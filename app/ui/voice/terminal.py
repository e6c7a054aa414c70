"""``hushchat chat --speak``: the terminal chat reads its answer aloud while it streams.

The window's ``Speaker`` does the work (the same engines, policy, playback and no audio
files), on a Qt event loop without widgets: a ``QCoreApplication`` and qasync's loop run
the command's coroutine, so no display is needed. Ctrl-C behaves as without ``--speak``
(the answer stops, what arrived is kept) and stops the reading with it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication, QTimer

from app.config import TTSEntry
from app.session import Session
from app.speech.policy import default_engine, find_engine, require_engine
from app.tiers import Tier
from app.ui.voice import AnswerFeed, Speaker, SpeakerState

__all__ = ["AnswerReader", "chosen_engine", "run_on_qt_loop"]

T = TypeVar("T")

#: How often the Qt loop lets Python run its signal handlers (Ctrl-C), in ms.
_SIGNAL_CHECK_MS = 100


def run_on_qt_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to its end on a qasync loop over a ``QCoreApplication``.

    Ctrl-C cancels it as ``asyncio.run`` does (the coroutine sees CancelledError, then
    KeyboardInterrupt is raised here)."""
    import qasync

    app = QCoreApplication.instance() or QCoreApplication([sys.argv[0] if sys.argv else "hushchat"])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    interrupted = False
    task = loop.create_task(main())

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        loop.call_soon_threadsafe(task.cancel)

    previous = signal.signal(signal.SIGINT, on_sigint)
    wake = QTimer()  # Python handles signals only when it runs: tick while Qt waits
    wake.timeout.connect(lambda: None)
    wake.start(_SIGNAL_CHECK_MS)
    hooks = sys.get_asyncgen_hooks()
    # qasync's loop installs no async-generator hooks; without them a provider's stream
    # abandoned mid-answer would be finalized outside the loop (as app.ui.app does).
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook, finalizer=loop._asyncgen_finalizer_hook
    )
    try:
        result: T = loop.run_until_complete(task)
        return result
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        wake.stop()
        signal.signal(signal.SIGINT, previous)
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            sys.set_asyncgen_hooks(*hooks)
            loop.close()
            asyncio.set_event_loop(None)


def chosen_engine(session: Session, tier: Tier, name: str | None) -> TTSEntry:
    """The engine a chat of ``tier`` is read with: ``name`` if given (PolicyRefusedError,
    exit 5, when the tier may not use it), else the tier's default (``default_tts`` if
    allowed, else the first allowed)."""
    config = session.config.config
    if name:
        entry = find_engine(config, name)
        require_engine(tier, entry)
        return entry
    return default_engine(config, tier)


class AnswerReader:
    """Reads one streamed answer aloud with ``entry``: ``add`` each delta, ``end`` when
    it is complete, then ``await finished()`` until the last word was heard."""

    KEY = "answer"

    def __init__(self, session: Session, tier: Tier, entry: TTSEntry) -> None:
        self.speaker = Speaker(session)
        self._done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.speaker.state_changed.connect(self._state_changed)
        self.speaker.failed.connect(self._failed)
        self._feed: AnswerFeed = self.speaker.begin_stream(self.KEY, tier, entry)

    def add(self, delta: str) -> None:
        self._feed.add(delta)

    def end(self) -> None:
        self._feed.end()

    async def finished(self) -> str | None:
        """Wait until the answer has been read; the failure's message, or None."""
        try:
            return await self._done
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (Ctrl-C, a failed answer) and release the audio output."""
        self.speaker.close()

    def _state_changed(self, key: str, state: str) -> None:
        # A failure says IDLE first, then ``failed``: let that come before "done".
        if state == SpeakerState.IDLE.value:
            asyncio.get_running_loop().call_soon(self._resolve, None)

    def _failed(self, key: str, message: str) -> None:
        self._resolve(message)

    def _resolve(self, failure: str | None) -> None:
        if not self._done.done():
            self._done.set_result(failure)

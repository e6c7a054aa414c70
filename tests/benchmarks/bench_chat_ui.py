"""The chat area's figures: opening a long chat, a big sidebar, streaming fast.

Runs offscreen against a real vault (SQLCipher, Argon2id at the floor) in a temporary
profile, with the real ``ChatService``; only the model is fake: a provider yielding
``STREAM_RATE`` text deltas per second.

* open a 10,000-message chat: time from ``open_chat`` to the first paint of its rows,
  and the process's memory growth (RSS) once its page is shown and measured;
* open a search hit 500 and 9,990 messages before the newest of such a chat: time from
  ``ChatAreaWidget.open_hit`` to a paint showing the hit as the current row (the view
  opens a window of the thread around the hit, one read however far back it is);
* a 5,000-chat sidebar: time from ``load`` to the first paint of the list, and the
  longest frame while scrolling it programmatically from top to bottom, a third of a
  page per frame (each frame: the scroll, then the paint of what it uncovered);
* streaming a 2,000 tokens/s answer: the longest main-thread stall (a 1 ms ``QTimer``
  heartbeat records the gaps between its ticks) and the display lag (time from a delta
  being produced to a paint that shows it).

``HUSHCHAT_BENCH_DEBUG=1`` also prints the worst heartbeat gaps of the streaming run, each
with the CPU time the main thread used in it (much less than the gap: the process was
waiting for a core, the machine is busy).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.peers.scripted_provider import ScriptedProvider

T = TypeVar("T")

LONG_CHAT_MESSAGES = 10_000
SIDEBAR_CHATS = 5_000
STREAM_RATE = 2_000  # text deltas per second
STREAM_SECONDS = 4.0
WINDOW_SIZE = (1280, 860)
OPEN_RUNS = 3
DEBUG_GAPS: list[tuple[float, float]] = []  # the worst heartbeat gaps (HUSHCHAT_BENCH_DEBUG)

CONFIG = """
default_llm: fast
llms:
  - {provider_name: fast, type: openai, base_url: 'http://127.0.0.1:9/v1', model_name: fast,
     context_size: 8192, max_retries: 0}
ui: {auto_lock_minutes: 0}
"""

ANSWER = """Here is what I found about **item {n}**:

1. The first point, explained in a sentence or two so that the paragraph wraps over
   more than one line in a normal window.
2. A second point with `inline code` and a [link](https://example.org/{n}).

```python
def item_{n}(values: list[int]) -> int:
    return sum(v * v for v in values if v % 2)
```

| name | value |
|------|-------|
| a    | {n}   |

That should cover it; ask again if anything is unclear."""

QUESTION = "Question {n}: could you explain how this works, with an example?"

# A realistic token stream: words, punctuation, newlines, a code block now and then.
_STREAM_TOKENS = [
    *["The", " answer", " depends", " on", " what", " you", " need", ",", " but", " in",
      " short", ":", " it", " works", "."],
    *["\n\n", "1", ".", " First", " step", "\n", "2", ".", " Second", " step", "\n\n"],
    *["```", "python", "\n", "for", " i", " in", " range", "(", "10", "):", "\n",
      "    ", "print", "(", "i", ")", "\n", "```", "\n\n"],
]  # fmt: skip


def _qt() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as error:  # pragma: no cover - the UI extra is part of the app
        raise BenchmarkUnavailableError(f"PySide6 is not installed: {error}") from error
    return QApplication.instance() or QApplication([])


def _run(app: Any, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
    task = asyncio.ensure_future(coro)
    _wait(app, task.done, timeout)
    return task.result()


def _wait(app: Any, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    from PySide6.QtCore import QEventLoop

    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark waited too long")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


# --- test data -----------------------------------------------------------------------------


def bulk_chat(store: Any, messages: int, *, title: str = "Long chat") -> str:
    """A chat of ``messages`` alternating questions and Markdown answers (fast inserts)."""
    from tests.benchmarks._records import thread_chat

    contents = [(QUESTION if n % 2 == 0 else ANSWER).format(n=n) for n in range(messages)]
    return thread_chat(store, contents, title=title)


def bulk_chats(store: Any, count: int) -> None:
    """``count`` short chats (titles only) for the sidebar."""
    from tests.benchmarks._records import titled_chats

    titled_chats(store, count)


# --- the fake model ------------------------------------------------------------------------


class FastStream:
    """A script yielding ``STREAM_RATE`` text deltas per second, recording when each was
    produced (for the display-lag figure)."""

    produced: ClassVar[list[tuple[float, int]]] = []  # (time, total characters so far)

    @staticmethod
    async def script(request: Any) -> AsyncIterator[Any]:
        from providers import FinishEvent, TextDelta

        if "title of at most" in request.messages[-1].content:
            yield TextDelta("Benchmark")
            yield FinishEvent("stop")
            return
        total = int(STREAM_RATE * STREAM_SECONDS)
        started = time.perf_counter()
        length = 0
        for n in range(total):
            due = started + n / STREAM_RATE
            wait = due - time.perf_counter()
            if wait > 0.001:
                await asyncio.sleep(wait)
            token = _STREAM_TOKENS[n % len(_STREAM_TOKENS)]
            length += len(token)
            FastStream.produced.append((time.perf_counter(), length))
            yield TextDelta(token)
        yield FinishEvent("stop")


def _fast_provider(spec: Any) -> ScriptedProvider:
    return ScriptedProvider(spec, FastStream.script)


class _BenchSession:
    """What the chat area needs of ``app.session.Session``, with the fake model."""

    def __init__(self, session: Any, config: Any) -> None:
        from app.chat.service import ChatService

        self.config = config
        self.runner = session.runner
        self.library = session.library
        self.profile_dir = session.profile_dir
        self.vault = session.vault
        self.service = ChatService(
            session.library, config, runner=session.runner, provider_factory=_fast_provider
        )

    @property
    def is_unlocked(self) -> bool:
        """As ``Session.is_unlocked``: the chat settings panel follows the service only then."""
        return self.vault is None or not self.vault.is_locked


# --- measurements --------------------------------------------------------------------------


def _rss() -> int:
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process().memory_info().rss)


def _open_long_chats(app: Any, area: Any, session: Any, chat_ids: list[str]) -> list[Row]:
    view = area.chat_view
    times: list[float] = []
    growths: list[float] = []
    for chat_id in chat_ids:
        view.open_chat(None)
        view.list.message_delegate.reset_caches()
        _wait(app, lambda: True)
        app.processEvents()
        before = _rss()
        painted: list[float] = []

        def on_paint(painted: list[float] = painted) -> None:
            if view.model.rowCount() and not painted:
                painted.append(time.perf_counter())

        view.list.painted.connect(on_paint)
        started = time.perf_counter()
        view.open_chat(chat_id)
        _wait(app, lambda painted=painted: bool(painted))  # type: ignore[misc]
        times.append((painted[0] - started) * 1000)
        # Let the idle measurer finish the loaded page, then look at memory.
        _wait(app, lambda: not view.list._measure_timer.isActive())
        growths.append((_rss() - before) / 1e6)
        view.list.painted.disconnect(on_paint)
    return [
        Row(
            "open a 10,000-message chat: first paint",
            statistics.median(times),
            "ms",
            150,
            note=f"median of {len(times)}, max {max(times):.0f} ms",
        ),
        Row(
            "open a 10,000-message chat: memory growth",
            max(growths),
            "MB",
            50,
            note="RSS, page shown and measured",
        ),
    ]


def _open_hits(app: Any, area: Any, session: Any, chat_ids: list[str], back: int) -> Row:
    """Open a search hit ``back`` messages before the newest of each long chat (the view
    loads a window around it); time from ``open_hit`` to a paint showing it current."""
    view = area.chat_view
    times: list[float] = []
    for chat_id in chat_ids:
        thread = _run(app, session.service.full_thread(chat_id))
        hit = thread[-back].id
        view.open_chat(None)
        view.list.message_delegate.reset_caches()
        _wait(app, lambda: True)
        app.processEvents()
        painted: list[float] = []

        def on_paint(painted: list[float] = painted, hit: str = hit) -> None:
            number = view.model.row_number(hit)
            if number is not None and not painted:
                index = view.model.index(number)
                if view.list.currentIndex() == index and view.list.visualRect(index).intersects(
                    view.list.viewport().rect()
                ):
                    painted.append(time.perf_counter())

        view.list.painted.connect(on_paint)
        started = time.perf_counter()
        area.open_hit(chat_id, hit)
        _wait(app, lambda painted=painted: bool(painted))  # type: ignore[misc]
        times.append((painted[0] - started) * 1000)
        view.list.painted.disconnect(on_paint)
    view.open_chat(None)  # not waiting for the idle measurer to go through 10,000 rows
    return Row(
        f"open a search hit {back:,} messages back in 10,000: first paint showing it",
        statistics.median(times),
        "ms",
        150,
        note=f"median of {len(times)}, max {max(times):.0f} ms",
    )


def _scroll_older(app: Any, area: Any) -> Row:
    """Scroll the open chat up through 5 older pages; the longest frame."""
    from PySide6.QtCore import QEventLoop

    view = area.chat_view.list
    bar = view.verticalScrollBar()
    frames: list[float] = []
    pages = 0
    deadline = time.perf_counter() + 30
    while pages < 5 and time.perf_counter() < deadline:
        rows = view.message_model.rowCount()
        started = time.perf_counter()
        bar.setValue(max(0, bar.value() - 120))
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        frames.append((time.perf_counter() - started) * 1000)
        if view.message_model.rowCount() > rows:
            pages += 1
    frames.sort()
    return Row(
        "scroll a long chat upwards: longest frame",
        frames[-1],
        "ms",
        note=f"{len(frames)} frames, p95 {frames[int(len(frames) * 0.95)]:.1f} ms, "
        f"{pages} older pages fetched",
    )


def run() -> list[Row]:
    """Measure the chat area (see the module docstring)."""
    app = _qt()
    import qasync
    from PySide6.QtCore import QEventLoop

    from app import gc_policy
    from app.config import LoadedConfig, parse_config
    from app.session import Session
    from app.store.models import Tier
    from app.ui import tasks
    from app.ui.chat_area import ChatAreaWidget
    from app.vault.kdf import FLOOR_PARAMS

    loop = qasync.QEventLoop(app, already_running=True)
    asyncio.set_event_loop(loop)
    rows: list[Row] = []
    config = LoadedConfig(parse_config(CONFIG, "bench", {}), None, {})
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-ui-") as tmp:
        real = Session(config, Path(tmp) / "profile", kdf=FLOOR_PARAMS)
        _run(app, real.create_vault("benchmark passphrase"))
        session = _BenchSession(real, config)
        standard = session.library.store(Tier.STANDARD)
        long_ids = [
            _run(app, session.runner.db(bulk_chat, standard, LONG_CHAT_MESSAGES, title=f"Long {n}"))
            for n in range(OPEN_RUNS + 1)
        ]
        _run(app, session.runner.db(bulk_chats, standard, SIDEBAR_CHATS - len(long_ids)))

        area = ChatAreaWidget(session)  # type: ignore[arg-type]
        area.resize(*WINDOW_SIZE)
        area.show()
        _wait(app, area.isVisible)
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        gc_policy.freeze_long_lived()  # as the window does once unlocked

        rows += _sidebar_rows(app, area)
        # Warm up (imports, fonts, pygments lexers) on one chat, then measure cold opens.
        area.chat_view.open_chat(long_ids[0])
        _wait(app, lambda: area.chat_view.model.rowCount() > 0)
        _wait(app, lambda: not area.chat_view.list._measure_timer.isActive())
        rows += _open_long_chats(app, area, session, long_ids[1:])
        rows.append(_scroll_older(app, area))
        rows.append(_open_hits(app, area, session, long_ids[1:], 500))
        rows.append(_open_hits(app, area, session, long_ids[1:], LONG_CHAT_MESSAGES - 10))
        rows += _streaming_rows(app, area, session)

        area.clear()
        _wait(app, lambda: tasks.running() == 0)
        _run(app, session.service.wait_for_titles(5))
        area.close()
        area.deleteLater()
        app.processEvents()
        real.close()
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined, unused-ignore]
    asyncio.events._set_running_loop(None)
    loop.close()
    asyncio.set_event_loop(None)
    return rows


def _sidebar_rows(app: Any, area: Any) -> list[Row]:
    from PySide6.QtCore import QEvent, QEventLoop, QObject

    sidebar = area.sidebar
    shown: list[float] = []

    class PaintWatch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and sidebar.model.rowCount() and not shown:
                shown.append(time.perf_counter())
            return False

    watch = PaintWatch()
    sidebar.list.viewport().installEventFilter(watch)
    started = time.perf_counter()
    area.load()
    _wait(app, lambda: bool(shown))
    show_ms = (shown[0] - started) * 1000
    first = sidebar.model.rowCount()
    _wait(app, lambda: sidebar.model.rowCount() >= SIDEBAR_CHATS)
    all_ms = (time.perf_counter() - started) * 1000
    count = sidebar.model.rowCount()
    sidebar.list.viewport().removeEventFilter(watch)

    bar = sidebar.list.verticalScrollBar()
    frames: list[float] = []
    step = max(1, sidebar.list.viewport().height() // 3)
    while bar.value() < bar.maximum():
        began = time.perf_counter()
        bar.setValue(bar.value() + step)  # Qt moves the pixels and paints the new strip
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        frames.append((time.perf_counter() - began) * 1000)
    bar.setValue(0)
    frames.sort()
    return [
        Row(
            f"sidebar with {count:,} chats: time to show",
            show_ms,
            "ms",
            100,
            note=f"first {first} rows painted; all {count:,} listed after {all_ms:.0f} ms",
        ),
        Row(
            "sidebar scrolling: longest frame",
            frames[-1],
            "ms",
            16.7,
            note=f"{len(frames)} frames of a third of a page, p95 "
            f"{frames[int(len(frames) * 0.95)]:.1f} ms; budget: one 60 Hz frame",
        ),
    ]


def _streaming_rows(app: Any, area: Any, session: Any) -> list[Row]:
    from PySide6.QtCore import Qt, QTimer

    view = area.chat_view
    created = _run(app, session.service.create_chat())
    area.open_chat(created.id)
    _wait(app, lambda: view.chat is not None and view.chat.id == created.id)
    painted: list[tuple[float, int]] = []
    view.list.message_delegate.streaming_painted.connect(
        lambda length: painted.append((time.perf_counter(), length))
    )
    beats: list[float] = []
    cpu: dict[float, float] = {}  # heartbeat time: main thread's CPU time then (debug)
    debug = bool(os.environ.get("HUSHCHAT_BENCH_DEBUG"))

    def beat() -> None:
        now = time.perf_counter()
        beats.append(now)
        if debug:
            cpu[now] = time.thread_time()

    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
    heartbeat.setInterval(1)
    heartbeat.timeout.connect(beat)
    FastStream.produced = []

    def final_paint() -> None:
        # After the turn the answer is an ordinary row: its first paint shows the end.
        shown = view.model.messages
        if not view.is_streaming() and shown and shown[-1].content and FastStream.produced:
            total = FastStream.produced[-1][1]
            if len(shown[-1].content) >= total and (not painted or painted[-1][1] < total):
                painted.append((time.perf_counter(), total))

    view.list.painted.connect(final_paint)
    heartbeat.start()
    assert view.send("Please stream a long answer")
    _wait(app, lambda: bool(FastStream.produced))
    _wait(app, lambda: not view.is_streaming(), timeout=STREAM_SECONDS * 5 + 30)
    heartbeat.stop()
    total = FastStream.produced[-1][1]
    _wait(app, lambda: bool(painted) and painted[-1][1] >= total, timeout=10)
    view.list.painted.disconnect(final_paint)
    produced = FastStream.produced
    first, last = produced[0][0], produced[-1][0]
    during = [b for b in beats if first <= b <= last]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(during)]
    stall = max(gaps) if gaps else float("nan")
    if os.environ.get("HUSHCHAT_BENCH_DEBUG"):
        worst = sorted(itertools.pairwise(during), key=lambda p: p[0] - p[1])[:5]
        print(
            "worst gaps (ms, main-thread CPU ms, at s)",
            [
                (round((b - a) * 1000, 1), round((cpu[b] - cpu[a]) * 1000, 1), round(a - first, 3))
                for a, b in worst
            ],
        )
        print("gaps > 16 ms:", sum(1 for g in gaps if g > 16))
        DEBUG_GAPS[:] = sorted(itertools.pairwise(during), key=lambda p: p[0] - p[1])[:12]
    lags: list[float] = []
    index = 0
    for when, length in produced:
        while index < len(painted) and (painted[index][1] < length or painted[index][0] < when):
            index += 1
        if index == len(painted):
            break
        lags.append((painted[index][0] - when) * 1000)
    shown_all = len(lags) == len(produced)
    rate = len(produced) / (last - first) if last > first else float("nan")
    lags.sort()
    p95 = lags[int(len(lags) * 0.95)] if lags else float("nan")
    return [
        Row(
            "streaming 2,000 tokens/s: longest main-thread stall",
            stall,
            "ms",
            16,
            note=f"1 ms heartbeat, {len(gaps):,} gaps, {sum(1 for g in gaps if g > 16)} over "
            f"16 ms; {rate:,.0f} deltas/s delivered",
        ),
        Row(
            "streaming 2,000 tokens/s: display lag (p95)",
            p95,
            "ms",
            50,
            note=f"max {max(lags):.0f} ms, median {statistics.median(lags):.0f} ms"
            + ("" if shown_all else "; the last deltas were never painted"),
        ),
    ]

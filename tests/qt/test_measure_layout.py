"""Idle measuring of rows off screen does not lay every loaded row out again after each
slice (that made scrolling up a long chat stutter: 40-50 ms frames); the rows are laid
out once for a batch, at once only when a row on screen changed height."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

import app.ui.chat_view as chat_view
from app.session import Session
from app.store.models import Tier
from app.ui.chat_area import ChatAreaWidget
from tests.benchmarks._records import thread_chat
from tests.qt.drivers import WAIT, shown_area

ANSWER = "An answer long enough to wrap over a few lines in the window. " * 6


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def opened(
    qtbot: QtBot, area: ChatAreaWidget, session: Session, run_async: Callable[..., Any]
) -> Any:
    contents = [f"question {n}" if n % 2 == 0 else ANSWER for n in range(300)]
    store = session.library.store(Tier.STANDARD)
    chat_id = run_async(session.runner.db(thread_chat, store, contents))
    area.open_chat(chat_id)
    view = area.chat_view.list
    qtbot.waitUntil(lambda: view.message_model.rowCount() > 50, timeout=WAIT)
    qtbot.waitUntil(lambda: not view._measure_timer.isActive(), timeout=WAIT)
    return view


def count_layouts(view: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    layouts: list[int] = []
    original = view.doItemsLayout
    monkeypatch.setattr(view, "doItemsLayout", lambda: (layouts.append(1), original()))
    return layouts


def test_rows_measured_off_screen_are_laid_out_once(
    qtbot: QtBot,
    area: ChatAreaWidget,
    unlocked_session: Session,
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = opened(qtbot, area, unlocked_session, run_async)
    model = view.message_model
    view.message_delegate.reset_caches()  # every height guessed again
    monkeypatch.setattr(chat_view, "MEASURE_SLICE_SECONDS", 0.0)  # one row a slice
    view._measure_queue = [model.row(n).key for n in range(0, 40)]  # far above the screen
    layouts = count_layouts(view, monkeypatch)
    slices = 0
    while view._measure_queue:
        view._measure_slice()
        slices += 1
    assert slices > 5
    assert len(layouts) == 1, f"{len(layouts)} layouts for {slices} slices"


def test_a_row_on_screen_measured_is_laid_out_at_once(
    qtbot: QtBot,
    area: ChatAreaWidget,
    unlocked_session: Session,
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = opened(qtbot, area, unlocked_session, run_async)
    model = view.message_model
    view.message_delegate.reset_caches()
    monkeypatch.setattr(chat_view, "MEASURE_SLICE_SECONDS", 0.0)  # one row a slice
    last = model.rowCount() - 1
    view._measure_queue = [model.row(last).key, model.row(0).key, model.row(1).key]
    layouts = count_layouts(view, monkeypatch)
    view._measure_slice()
    assert len(layouts) == 1 and view._measure_queue, "laid out before the queue is done"

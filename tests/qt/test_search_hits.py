"""Opening a search hit shows the matched message (issue 12, item 10): the chat opens
with the page that holds the hit, scrolled to it, the hit the current row; by mouse and
by keyboard; scrolling up from there still loads older pages, down reaches the newest.
See also test_hit_window.py (a window around the hit, not everything after it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt
from pytestqt.qtbot import QtBot

from app.session import Session
from app.store.models import Tier
from app.ui.chat_area import ChatAreaWidget
from tests.benchmarks._records import thread_chat
from tests.qt.drivers import WAIT, hit_shown, shown_area

MESSAGES = 500
HIT_AT = 40  # well before the newest page (the view opens with the newest 100)
WORD = "zanzibarite"


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def long_chat(session: Session, run_async: Callable[..., Any]) -> tuple[str, list[str]]:
    """A 500-message chat whose message HIT_AT alone says WORD; its id and message ids."""
    contents = [f"message number {n} about nothing in particular" for n in range(MESSAGES)]
    contents[HIT_AT] = f"the one about {WORD} crystals"
    store = session.library.store(Tier.STANDARD)
    chat_id = run_async(session.runner.db(thread_chat, store, contents, title="Long one"))
    thread = run_async(session.service.full_thread(chat_id))
    return chat_id, [m.id for m in thread]


def search(qtbot: QtBot, area: ChatAreaWidget, text: str) -> None:
    area.sidebar.load()
    qtbot.waitUntil(lambda: area.sidebar.model.rowCount() >= 1, timeout=WAIT)
    area.focus_search()
    qtbot.keyClicks(area.sidebar.search, text)
    qtbot.waitUntil(lambda: area.sidebar.results.rowCount() == 1, timeout=WAIT)


def test_clicking_an_old_hit_shows_that_message(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = long_chat(unlocked_session, run_async)
    search(qtbot, area, WORD)
    results = area.sidebar.result_list
    rect = results.visualRect(area.sidebar.results.index(0))
    qtbot.mouseClick(results.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: hit_shown(area, ids[HIT_AT]), timeout=WAIT)
    assert area.chat_view.chat_id == chat_id
    shown = area.chat_view.model.messages
    first = ids.index(shown[0].id)
    assert [m.id for m in shown] == ids[first : first + len(shown)], "a window, no gap"
    assert len(shown) <= 101 and area.chat_view.model.has_newer, "not all up to the newest"
    assert WORD in shown[area.chat_view.model.row_number(ids[HIT_AT]) or 0].content
    assert area.chat_view.list.hasFocus(), "the hit is marked by the focus ring"


def test_down_and_enter_in_the_search_box_show_the_hit(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    _chat_id, ids = long_chat(unlocked_session, run_async)
    search(qtbot, area, WORD)
    qtbot.keyClick(area.sidebar.search, Qt.Key.Key_Down)
    qtbot.waitUntil(area.sidebar.result_list.hasFocus, timeout=WAIT)
    qtbot.keyClick(area.sidebar.result_list, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: hit_shown(area, ids[HIT_AT]), timeout=WAIT)


def test_enter_on_a_hit_in_the_open_chat_scrolls_to_it(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = long_chat(unlocked_session, run_async)
    area.open_chat(chat_id)
    qtbot.waitUntil(lambda: area.chat_view.model.chat_id == chat_id, timeout=WAIT)
    assert area.chat_view.model.row_number(ids[HIT_AT]) is None  # the newest page only
    search(qtbot, area, WORD)
    qtbot.keyClick(area.sidebar.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: hit_shown(area, ids[HIT_AT]), timeout=WAIT)


def test_scrolling_up_from_a_hit_loads_older_pages(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    contents = [f"message number {n} about nothing in particular" for n in range(MESSAGES)]
    hit_at = 400 - 150  # older pages remain before the page the hit opens with
    contents[hit_at] = f"the one about {WORD} crystals"
    store = unlocked_session.library.store(Tier.STANDARD)
    chat_id = run_async(unlocked_session.runner.db(thread_chat, store, contents))
    ids = [m.id for m in run_async(unlocked_session.service.full_thread(chat_id))]
    search(qtbot, area, WORD)
    qtbot.keyClick(area.sidebar.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: hit_shown(area, ids[hit_at]), timeout=WAIT)
    model = area.chat_view.model
    assert model.has_older and model.messages[0].id != ids[0]
    bar = area.chat_view.list.verticalScrollBar()
    for _ in range(200):  # scroll up the way a user does, until the first message
        if model.messages[0].id == ids[0] and bar.value() == 0:
            break
        bar.setValue(max(0, bar.value() - area.chat_view.list.viewport().height()))
        qtbot.wait(20)
    qtbot.waitUntil(lambda: model.messages[0].id == ids[0], timeout=WAIT)
    loaded = [m.id for m in model.messages]
    assert loaded == ids[: len(loaded)], "older pages above the window, no gap"


def test_a_title_hit_opens_the_newest_messages(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = long_chat(unlocked_session, run_async)
    area.open_hit(chat_id, "")
    qtbot.waitUntil(lambda: area.chat_view.model.chat_id == chat_id, timeout=WAIT)
    qtbot.waitUntil(lambda: area.chat_view.list.is_at_bottom(), timeout=WAIT)
    assert area.chat_view.model.messages[-1].id == ids[-1]
    assert area.chat_view.list.currentIndex() == QModelIndex()


def test_a_hit_in_another_version_says_how_to_find_it(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = long_chat(unlocked_session, run_async)
    store = unlocked_session.library.store(Tier.STANDARD)
    # A message above the hit edited: the hit is now on the version not shown.
    edited = run_async(
        unlocked_session.runner.db(
            store.add_message, chat_id, "user", "an edited question", parent_id=ids[HIT_AT - 2]
        )
    )
    said: list[str] = []
    area.status_message.connect(said.append)
    area.open_hit(chat_id, ids[HIT_AT])
    qtbot.waitUntil(lambda: any("another version" in text for text in said), timeout=WAIT)
    assert area.chat_view.model.messages[-1].id == edited.id
    assert area.chat_view.list.currentIndex() == QModelIndex()

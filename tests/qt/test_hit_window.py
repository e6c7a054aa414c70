"""A search hit deep in a long chat opens a *window* of the thread around it (not every
message from the hit to the newest): scrolling down loads newer pages until the newest,
and anything that adds to the chat (a send, a change from sync or another writer, End)
first shows the newest page, so nothing new lands under an old window and no gap shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from app.chat.events import MessagesChanged
from app.session import Session
from app.store.models import Tier
from app.ui import tasks
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import MARKER_KEY, PAGE_SIZE
from tests.benchmarks._records import thread_chat
from tests.qt.drivers import WAIT, hit_shown, shown_area, wait_answer

BIG = 10_000
BACK = 5_000


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def make_chat(session: Session, run_async: Callable[..., Any], count: int) -> tuple[str, list[str]]:
    contents = [f"message number {n} about nothing in particular" for n in range(count)]
    store = session.library.store(Tier.STANDARD)
    chat_id = run_async(session.runner.db(thread_chat, store, contents, title="Long one"))
    thread = run_async(session.service.full_thread(chat_id), timeout=60_000)
    return chat_id, [m.id for m in thread]


def loaded_ids(area: ChatAreaWidget) -> list[str]:
    return [m.id for m in area.chat_view.model.messages]


def assert_consecutive(shown: list[str], ids: list[str]) -> None:
    """``shown`` is one run of the thread: no gap, no duplicate."""
    assert shown, "nothing shown"
    first = ids.index(shown[0])
    assert shown == ids[first : first + len(shown)]


def open_window(qtbot: QtBot, area: ChatAreaWidget, chat_id: str, ids: list[str], back: int) -> str:
    hit = ids[-back]
    area.open_hit(chat_id, hit)
    qtbot.waitUntil(lambda: hit_shown(area, hit), timeout=WAIT)
    qtbot.waitUntil(lambda: area.chat_view.list.hasFocus(), timeout=WAIT)
    return hit


def test_a_hit_5000_back_in_10000_loads_only_a_window_around_it(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, BIG)
    hit = open_window(qtbot, area, chat_id, ids, BACK)
    model = area.chat_view.model
    shown = loaded_ids(area)
    assert len(shown) <= PAGE_SIZE + 1, f"{len(shown)} rows loaded for one hit"
    assert hit in shown and 0 < shown.index(hit) < len(shown) - 1, "messages on both sides"
    assert_consecutive(shown, ids)
    assert model.has_older and model.has_newer
    assert not area.chat_view.list.follows_end()
    # The window's last answer is not the chat's: it offers no Regenerate.
    assert area.chat_view.list.message_delegate.last_regenerable is None


def test_scrolling_down_a_window_loads_newer_pages_up_to_the_newest(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 600)
    open_window(qtbot, area, chat_id, ids, 400)
    model = area.chat_view.model
    view = area.chat_view.list
    bar = view.verticalScrollBar()
    first = loaded_ids(area)[0]
    top_row_before: list[str] = []
    for _ in range(400):  # scroll down the way a user does, until the newest message
        if not model.has_newer and bar.value() >= bar.maximum():
            break
        rows = model.rowCount()
        bar.setValue(min(bar.maximum(), bar.value() + view.viewport().height() // 2))
        index = view.indexAt(QPoint(4, 4))  # the row the view keeps in place
        key = model.row(index.row()).key if index.isValid() else None
        top = view.visualRect(index).top()
        qtbot.wait(10)
        if model.rowCount() > rows and key is not None:
            top_row_before.append(key)
            # Rows went in below: what is on screen stays where it was.
            number = model.row_number(key)
            assert number is not None
            assert abs(view.visualRect(model.index(number)).top() - top) <= 2
    qtbot.waitUntil(lambda: not model.has_newer, timeout=WAIT)
    shown = loaded_ids(area)
    assert shown[0] == first, "the window grew downwards only"
    assert shown[-1] == ids[-1]
    assert len(set(shown)) == len(shown)
    assert_consecutive(shown, ids)
    assert top_row_before, "newer pages were loaded while scrolling"
    assert view.message_delegate.last_regenerable == ids[-1]


def test_sending_from_a_window_shows_the_newest_then_the_new_turn(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 2_000)
    open_window(qtbot, area, chat_id, ids, 1_000)
    assert area.chat_view.model.has_newer
    qtbot.waitUntil(lambda: area.composer.editor.isEnabled(), timeout=WAIT)
    area.composer.editor.setPlainText("a new question")
    qtbot.keyClick(area.composer.editor, "\r")
    answer = wait_answer(qtbot, area, 2)
    model = area.chat_view.model
    shown = model.messages
    assert not model.has_newer
    assert [m.id for m in shown[:-2]] == ids[-(len(shown) - 2) :], "the newest, no gap"
    assert shown[-2].content == "a new question" and shown[-2].parent_id == ids[-1]
    assert answer.role == "assistant" and answer.parent_id == shown[-2].id
    thread = run_async(unlocked_session.service.full_thread(chat_id), timeout=60_000)
    assert [m.id for m in shown] == [m.id for m in thread[-len(shown) :]]
    qtbot.waitUntil(area.chat_view.list.is_at_bottom, timeout=WAIT)
    # The context marker (most of 2,000 messages were not sent) sits inside the newest page.
    rows = [model.row(n).key for n in range(model.rowCount())]
    if MARKER_KEY in rows:
        assert rows.index(MARKER_KEY) > 0


def test_a_change_from_another_writer_while_windowed_shows_the_newest_without_gap(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 1_000)
    open_window(qtbot, area, chat_id, ids, 600)
    store = unlocked_session.library.store(Tier.STANDARD)
    synced = run_async(
        unlocked_session.runner.db(
            store.add_message, chat_id, "user", "arrived from sync", parent_id=ids[-1]
        )
    )
    unlocked_session.service.changes.emit(MessagesChanged(chat_id))
    model = area.chat_view.model
    qtbot.waitUntil(lambda: loaded_ids(area)[-1:] == [synced.id], timeout=WAIT)
    shown = loaded_ids(area)
    assert not model.has_newer
    assert shown[:-1] == ids[-(len(shown) - 1) :], "the newest page, no gap before it"
    qtbot.waitUntil(area.chat_view.list.is_at_bottom, timeout=WAIT)


def test_end_in_a_window_goes_to_the_newest_message(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 1_000)
    open_window(qtbot, area, chat_id, ids, 700)
    view = area.chat_view.list
    qtbot.keyClick(view, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    model = area.chat_view.model
    qtbot.waitUntil(lambda: loaded_ids(area)[-1] == ids[-1], timeout=WAIT)
    assert not model.has_newer
    assert_consecutive(loaded_ids(area), ids)
    qtbot.waitUntil(view.is_at_bottom, timeout=WAIT)
    current = view.currentIndex()
    assert current.isValid() and model.row(current.row()).key == ids[-1]


def test_a_second_hit_in_the_same_chat_far_from_the_window_moves_the_window(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 3_000)
    open_window(qtbot, area, chat_id, ids, 2_500)
    second = open_window(qtbot, area, chat_id, ids, 400)
    shown = loaded_ids(area)
    assert second in shown and ids[-2_500] not in shown
    assert len(shown) <= PAGE_SIZE + 1
    assert_consecutive(shown, ids)


def test_renaming_the_chat_while_windowed_keeps_the_window(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 1_000)
    hit = open_window(qtbot, area, chat_id, ids, 600)
    qtbot.waitUntil(lambda: tasks.running() == 0, timeout=WAIT)  # pages fetched ahead
    before = loaded_ids(area)
    assert before[-1] != ids[-1]
    run_async(unlocked_session.service.rename(chat_id, "A new name"))
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.title == "A new name",
        timeout=WAIT,
    )
    qtbot.waitUntil(lambda: tasks.running() == 0, timeout=WAIT)
    assert loaded_ids(area)[: len(before)] == before, "the window stays (no jump)"
    assert area.chat_view.model.has_newer and hit_shown(area, hit)


@pytest.mark.parametrize("how", ["end", "scrolling"])
def test_the_context_marker_is_not_put_under_a_window_and_comes_back_at_the_newest(
    qtbot: QtBot,
    area: ChatAreaWidget,
    unlocked_session: Session,
    run_async: Callable[..., Any],
    how: str,
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 1_000)
    area.open_chat(chat_id)
    model = area.chat_view.model
    qtbot.waitUntil(lambda: model.chat_id == chat_id, timeout=WAIT)
    qtbot.waitUntil(lambda: area.composer.editor.isEnabled(), timeout=WAIT)
    area.composer.editor.setPlainText("a question at the end")
    qtbot.keyClick(area.composer.editor, "\r")
    wait_answer(qtbot, area, 2)

    def marker_and_next() -> tuple[int, str] | None:
        rows = [model.row(n).key for n in range(model.rowCount())]
        if MARKER_KEY not in rows:
            return None
        at = rows.index(MARKER_KEY)
        return at, rows[at + 1]

    qtbot.waitUntil(lambda: marker_and_next() is not None, timeout=WAIT)  # 512-token context
    before = marker_and_next()
    assert before is not None and before[0] > 0
    qtbot.waitUntil(lambda: tasks.running() == 0, timeout=WAIT)
    open_window(qtbot, area, chat_id, ids, 700)
    assert model.has_newer and marker_and_next() is None, "no marker under an old window"
    if how == "end":
        qtbot.keyClick(area.chat_view.list, Qt.Key.Key_End)
    else:  # scrolling down page after page to the newest
        bar = area.chat_view.list.verticalScrollBar()
        for _ in range(600):
            if not model.has_newer and bar.value() >= bar.maximum():
                break
            bar.setValue(min(bar.maximum(), bar.value() + 400))
            qtbot.wait(10)
    qtbot.waitUntil(lambda: not model.has_newer and marker_and_next() is not None, timeout=WAIT)
    after = marker_and_next()
    assert after is not None and after[1] == before[1], "the marker sits where it did"
    assert_consecutive(loaded_ids(area)[:-2], ids)


def test_regenerating_from_a_window_shows_the_newest_with_the_new_answer(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 1_000)
    open_window(qtbot, area, chat_id, ids, 600)
    area.regenerate()  # Ctrl+R
    model = area.chat_view.model
    qtbot.waitUntil(
        lambda: not area.chat_view.is_streaming() and bool(model.messages)
        and model.messages[-1].parent_id == ids[-2] and model.messages[-1].id != ids[-1],
        timeout=WAIT,
    )  # fmt: skip
    shown = loaded_ids(area)
    assert not model.has_newer
    assert shown[:-1] == ids[-len(shown) : -1], "the newest page, no gap"
    assert model.messages[-1].version == 2


def test_editing_a_message_of_a_window_shows_the_new_branch_at_the_newest(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id, ids = make_chat(unlocked_session, run_async, 1_000)
    hit = open_window(qtbot, area, chat_id, ids, 600)  # a question (even position)
    assert area.chat_view.edit(hit, "the question asked again")
    model = area.chat_view.model
    qtbot.waitUntil(
        lambda: not area.chat_view.is_streaming() and len(model.messages) >= 2
        and model.messages[-2].content == "the question asked again"
        and model.messages[-1].role == "assistant",
        timeout=WAIT,
    )  # fmt: skip
    shown = model.messages
    assert not model.has_newer
    assert shown[-2].parent_id == ids[ids.index(hit) - 1]
    assert [m.id for m in shown[:-2]] == ids[ids.index(hit) - len(shown) + 2 : ids.index(hit)]

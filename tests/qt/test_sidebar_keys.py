"""Search results by keyboard (issue 12 item 10): Down, Enter and Esc did nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.session import Session
from app.ui import tasks
from app.ui.chat_area import ChatAreaWidget
from tests.qt.drivers import WAIT, send, shown_area, start_chat


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def focused() -> object:
    return QApplication.focusWidget()


def new_chat(qtbot: QtBot, area: ChatAreaWidget) -> str:
    """Start another chat and wait until it is the open one (``start_chat`` returns at
    once when a chat is open already)."""
    before = area.chat_view.chat_id
    area.new_chat()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat_id != before,
        timeout=WAIT,
    )
    chat_id = area.chat_view.chat_id
    assert chat_id is not None
    qtbot.waitUntil(lambda: tasks.running() == 0, timeout=WAIT)  # loaded, titles written
    return chat_id


def test_down_enter_and_esc_in_search_results(qtbot: QtBot, area: ChatAreaWidget) -> None:
    first = start_chat(qtbot, area)
    send(qtbot, area, "the axolotl lives in lakes near Mexico City")
    second = new_chat(qtbot, area)
    send(qtbot, area, "an axolotl can regrow its limbs")
    third = new_chat(qtbot, area)
    assert area.chat_view.chat_id == third
    sidebar = area.sidebar
    opened: list[tuple[str, str]] = []
    sidebar.hit_opened.connect(lambda chat, message: opened.append((chat, message)))

    area.window().activateWindow()
    area.focus_search()
    qtbot.keyClicks(sidebar.search, "axolotl")
    qtbot.waitUntil(lambda: sidebar.results.rowCount() == 2, timeout=WAIT)
    qtbot.waitUntil(lambda: sidebar.result_list.isVisible(), timeout=WAIT)

    qtbot.keyClick(sidebar.search, Qt.Key.Key_Down)  # into the hits, on the first
    assert focused() is sidebar.result_list
    assert sidebar.result_list.currentIndex().row() == 0
    qtbot.keyClick(sidebar.result_list, Qt.Key.Key_Down)
    assert sidebar.result_list.currentIndex().row() == 1
    wanted = sidebar.results.hit(1)
    qtbot.keyClick(sidebar.result_list, Qt.Key.Key_Return)  # opens that hit
    qtbot.waitUntil(lambda: area.chat_view.chat_id == wanted.chat_id, timeout=WAIT)
    assert wanted.chat_id in (first, second)
    assert opened == [(wanted.chat_id, wanted.message_id or "")]
    assert wanted.message_id  # a message matched, not the title

    qtbot.keyClick(sidebar.result_list, Qt.Key.Key_Up)
    assert sidebar.result_list.currentIndex().row() == 0
    qtbot.keyClick(sidebar.result_list, Qt.Key.Key_Up)  # above the first: the field
    assert focused() is sidebar.search
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Return)  # Enter in the field: the first hit
    other = sidebar.results.hit(0).chat_id
    qtbot.waitUntil(lambda: area.chat_view.chat_id == other, timeout=WAIT)

    qtbot.keyClick(sidebar.search, Qt.Key.Key_Down)
    qtbot.keyClick(sidebar.result_list, Qt.Key.Key_Escape)  # Esc in the hits: the field
    assert focused() is sidebar.search
    assert sidebar.search.text() == "axolotl"
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Escape)  # Esc in the field: search cleared
    assert sidebar.search.text() == ""
    assert sidebar.stack.currentWidget() is sidebar.list
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Down)  # no search: Down goes to the chats
    assert focused() is sidebar.list

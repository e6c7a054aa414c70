"""Text inside a message can be selected with the mouse and the keyboard (issue 12,
item 10): one selector over one message at a time, while the list stays painted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app.session import Session
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import BUBBLE_PAD, ROW_MARGIN_X, MessageListView, MessageSelector
from tests.peers.scripted_provider import ScriptedModel, answer, endless
from tests.qt.drivers import shown_area
from tests.qt.test_chat_view import open_new_chat, send_and_wait

WAIT = 20_000
ANSWER = "Alpha bravo charlie delta echo.\n\nSecond paragraph with [a link](https://example.org)."


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session, size=(1100, 700))


def _text_point(view: MessageListView, number: int, dx: int = 2, dy: int = 4) -> QPoint:
    """A point on the first line of row ``number``'s text."""
    model = view.message_model
    rect = view.visualRect(model.index(number))
    top = view.message_delegate.layout(model.row(number), model).content_top
    return QPoint(rect.left() + ROW_MARGIN_X + BUBBLE_PAD + dx, rect.top() + top + dy)


def _selectors(view: MessageListView) -> list[MessageSelector]:
    return view.findChildren(MessageSelector)


def test_mouse_drag_selects_and_ctrl_c_copies_exactly_the_selection(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer(ANSWER)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "a question to select from")
    view = area.chat_view.list
    model = view.message_model
    last = model.rowCount() - 1
    reply = model.row(last).message
    assert reply is not None
    viewport = view.viewport()
    start = _text_point(view, last)
    end = start + QPoint(120, 0)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, end)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    assert view.selected_message() == reply.id
    selector = view.selector
    selected = selector.textCursor().selection().toPlainText()
    assert selected and "Alpha" in selected and selected in reply.content
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(selector, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == selected
    # Ctrl+A takes the message's text (and only it).
    qtbot.keyClick(selector, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(selector, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().text()
    assert copied.startswith("Alpha bravo") and copied.rstrip().endswith("a link.")
    assert "Regenerate" not in copied and "question to select" not in copied
    # The selector draws exactly the text the row laid out for it.
    layout = view.message_delegate.layout(model.row(last), model)
    whole = [part for part in layout.parts if part.key[0] == "whole"]
    assert len(whole) == 1
    assert selector.height() == round(whole[0].document.size().height())
    assert selector.document().toPlainText() == whole[0].document.toPlainText()


def test_keyboard_enter_selects_with_shift_arrows_and_esc_leaves(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer(ANSWER)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "keyboard please")
    view = area.chat_view.list
    model = view.message_model
    last = model.rowCount() - 1
    view.setFocus()
    view.setCurrentIndex(model.index(last))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert view.selected_message() == model.row(last).key
    selector = view.selector
    assert selector.hasFocus()
    qtbot.keyClick(selector, Qt.Key.Key_Home, Qt.KeyboardModifier.ControlModifier)
    for _ in range(5):
        qtbot.keyClick(selector, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(selector, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == "Alpha"
    qtbot.keyClick(selector, Qt.Key.Key_Escape)
    assert view.selected_message() is None
    assert view.hasFocus()
    # Painted again as chunks: no part is left to a selector that is gone.
    layout = view.message_delegate.layout(model.row(last), model)
    assert all(part.key[0] != "whole" for part in layout.parts)
    # F2 opens it too.
    qtbot.keyClick(view, Qt.Key.Key_F2)
    assert view.selected_message() == model.row(last).key


def test_only_one_message_is_open_for_selection_and_scrolling_away_closes_it(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer(ANSWER)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "first")
    send_and_wait(qtbot, area, "second")
    view = area.chat_view.list
    model = view.message_model
    viewport = view.viewport()
    last = model.rowCount() - 1
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=_text_point(view, last))
    assert view.selected_message() == model.row(last).key
    question = last - 1
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=_text_point(view, question))
    assert view.selected_message() == model.row(question).key
    assert len(_selectors(view)) == 1
    assert sum(selector.isVisible() for selector in _selectors(view)) == 1
    # The row left behind is painted from its chunks again.
    layout = view.message_delegate.layout(model.row(last), model)
    assert all(part.key[0] != "whole" for part in layout.parts)
    # A message scrolled out of view is closed.
    scripted_model.script = answer(
        "\n\n".join(f"Paragraph {n}: " + "words " * 30 for n in range(40))
    )
    send_and_wait(qtbot, area, "third, long")
    scripted_model.script = answer(ANSWER)
    send_and_wait(qtbot, area, "fourth")
    last = model.rowCount() - 1
    qtbot.waitUntil(view.is_at_bottom, timeout=WAIT)
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=_text_point(view, last))
    assert view.selected_message() == model.row(last).key
    view.verticalScrollBar().setValue(0)
    qtbot.waitUntil(lambda: view.selected_message() is None, timeout=WAIT)


def test_an_answer_still_streams_while_another_message_is_selected(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer(ANSWER)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "first")
    chat_view = area.chat_view
    view = chat_view.list
    model = view.message_model
    earlier = model.rowCount() - 1
    earlier_key = model.row(earlier).key
    scripted_model.script = endless("more words ", delay=0.005)
    area.composer.editor.setPlainText("go on")
    area.composer.submit()
    qtbot.waitUntil(lambda: model.stream is not None and model.stream.length > 0, timeout=WAIT)
    qtbot.waitUntil(lambda: model.row_number(earlier_key) is not None, timeout=WAIT)
    view.follow_end = False
    number = model.row_number(earlier_key)
    assert number is not None
    view.scrollTo(model.index(number))
    assert view.open_selection(number)
    painted: list[int] = []
    view.message_delegate.streaming_painted.connect(painted.append)
    qtbot.waitUntil(lambda: len(set(painted)) >= 3, timeout=WAIT)
    assert view.selected_message() == earlier_key
    # The streaming answer itself cannot be opened until it is finished.
    streaming = model.row_number(model.stream.message_id) if model.stream else None
    assert streaming is not None
    assert not view.open_selection(streaming)
    assert view.selected_message() == earlier_key
    assert chat_view.stop()
    qtbot.waitUntil(lambda: not chat_view.is_streaming(), timeout=WAIT)


def test_links_still_work_in_a_message_open_for_selection(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer("Run:\n\n```python\nprint('from the selector')\n```\n")
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "code to select")
    view = area.chat_view.list
    model = view.message_model
    last = model.rowCount() - 1
    assert view.open_selection(last)
    selector = view.selector
    target = None
    for y in range(0, selector.height(), 2):
        for x in range(0, selector.width(), 3):
            if selector.anchorAt(QPoint(x, y)) == "copy:0":
                target = QPoint(x, y)
                break
        if target is not None:
            break
    assert target is not None, "the code block's Copy link is in the selector"
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(selector.viewport(), Qt.MouseButton.LeftButton, pos=target)
    qtbot.waitUntil(
        lambda: QGuiApplication.clipboard().text() == "print('from the selector')\n",
        timeout=WAIT,
    )
    assert view.selected_message() == model.row(last).key


def test_a_message_that_changes_is_closed_for_selection(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer(ANSWER)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "first")
    chat_view = area.chat_view
    view = chat_view.list
    model = view.message_model
    last = model.rowCount() - 1
    old_key = model.row(last).key
    assert view.open_selection(last)
    scripted_model.script = answer("A new version of the answer.")
    assert chat_view.regenerate()
    qtbot.waitUntil(lambda: view.selected_message() is None, timeout=WAIT)
    qtbot.waitUntil(
        lambda: not chat_view.is_streaming() and model.row(model.rowCount() - 1).key != old_key,
        timeout=WAIT,
    )
    assert view.message_delegate.selecting is None
    assert not view.selector.isVisible()

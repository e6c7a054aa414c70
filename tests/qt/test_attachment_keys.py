"""File cards, thumbnails and chips from the keyboard (issue 14): Tab reaches them, they
have accessible names, Enter or Space opens a file, the Menu key and Shift+F10 offer
Open and Save as, Delete removes a chip, and the focus is visible.

The service's attachment API is faked as in ``test_attachments_ui`` (its fixtures).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QMenu
from pytestqt.qtbot import QtBot

from app.attachments.samples import pdf_bytes
from app.ui import chat_view as chat_view_module
from app.ui.attachments import AttachmentViewerDialog, human_size, png_bytes
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import MessageListView
from tests.qt import test_attachments_ui as ui
from tests.qt.drivers import WAIT, messages, send, start_chat
from tests.qt.test_attachments_ui import FakeAttachments, attachment, make_files

# The fixtures of the window's attachment tests: the service's attachment API faked.
fake = ui.fake
area = ui.area

NOTES = b"hello notes, read from memory"


def _active(qtbot: QtBot, area: ChatAreaWidget) -> None:
    """Keyboard focus needs the window active (offscreen too)."""
    area.activateWindow()
    qtbot.waitUntil(area.isActiveWindow, timeout=WAIT)


def _with_files(qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments) -> str:
    """A chat whose question carries notes.txt and photo.png (its thumbnail loaded)."""
    _active(qtbot, area)
    start_chat(qtbot, area)
    send(qtbot, area, "hello")
    question = messages(area)[0]
    picture = QImage(300, 150, QImage.Format.Format_ARGB32)
    picture.fill(QColor("blue"))
    fake.data = {"a1": NOTES, "a2": png_bytes(picture)}
    fake.by_message = {
        question.id: [
            attachment(question, "a1", "notes.txt", "text/plain", len(NOTES)),
            attachment(question, "a2", "photo.png", "image/png", len(fake.data["a2"])),
        ]
    }
    area.chat_view.reload()
    delegate = area.chat_view.list.message_delegate
    qtbot.waitUntil(lambda: delegate.has_thumbnail("a2"), timeout=WAIT)
    view = area.chat_view.list
    qtbot.waitUntil(lambda: len(view.cards_shown()) == 2, timeout=WAIT)
    return question.id


def _viewer(area: ChatAreaWidget) -> AttachmentViewerDialog:
    dialogs = area.chat_view.findChildren(AttachmentViewerDialog)
    assert len(dialogs) == 1
    return dialogs[0]


def _focus_list(qtbot: QtBot, view: MessageListView) -> None:
    window = view.window()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT)
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=WAIT)


def test_tab_reaches_each_card_with_its_accessible_name(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments
) -> None:
    question = _with_files(qtbot, area, fake)
    view = area.chat_view.list
    card = view.card_focus
    _focus_list(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    assert card.hasFocus() and card.isVisible()
    assert card.attachment_id == "a1" and card.message_id == question
    assert card.accessibleName() == f"notes.txt, Text, {human_size(len(NOTES))}"
    assert "Enter opens" in card.accessibleDescription()
    assert view.viewport().rect().contains(card.geometry())
    qtbot.keyClick(card, Qt.Key.Key_Tab)
    assert card.hasFocus() and card.attachment_id == "a2"
    size = human_size(len(fake.data["a2"]))
    assert card.accessibleName() == f"photo.png, PNG image, {size}"
    # The thumbnail is part of the image's card: the outline covers it (150 px tall).
    assert card.geometry().height() > 120
    qtbot.keyClick(card, Qt.Key.Key_Backtab)
    assert card.hasFocus() and card.attachment_id == "a1"
    qtbot.keyClick(card, Qt.Key.Key_Backtab)  # before the first card: the messages
    assert view.hasFocus() and not card.isVisible()
    # After the last card, Tab goes on to the next control.
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    qtbot.keyClick(card, Qt.Key.Key_Tab)
    qtbot.keyClick(card, Qt.Key.Key_Tab)
    assert not card.isVisible()
    focused = QApplication.focusWidget()
    assert focused is not None and focused is not view and focused is not card
    # From a message's text open for selection (Enter), Tab goes on to the cards too.
    _focus_list(qtbot, view)
    number = view.message_model.row_number(question)
    assert number is not None
    view.setCurrentIndex(view.message_model.index(number))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert view.selector.hasFocus()
    qtbot.keyClick(view.selector, Qt.Key.Key_Tab)
    assert card.hasFocus() and card.attachment_id == "a1"


def test_the_focused_card_is_outlined(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments
) -> None:
    _with_files(qtbot, area, fake)
    view = area.chat_view.list
    _focus_list(qtbot, view)
    (_, _, rect), _ = view.cards_shown()
    before = view.viewport().grab(rect).toImage()
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    assert view.card_focus.geometry() == rect
    after = view.viewport().grab(rect).toImage()
    assert before != after
    highlight = view.palette().color(view.palette().ColorRole.Highlight)
    edge = after.pixelColor(rect.width() // 2, 1)
    assert abs(edge.hue() - highlight.hue()) < 20 or edge == highlight


def test_enter_and_space_open_a_file_inside_the_window(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments
) -> None:
    _with_files(qtbot, area, fake)
    view = area.chat_view.list
    card = view.card_focus
    _focus_list(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    qtbot.keyClick(card, Qt.Key.Key_Return)
    dialog = _viewer(area)
    qtbot.waitUntil(dialog.text_view.isVisible, timeout=WAIT)
    assert dialog.text_view.toPlainText() == NOTES.decode()
    assert dialog.windowTitle() == "notes.txt"
    dialog.close()
    qtbot.waitUntil(lambda: not area.chat_view.findChildren(AttachmentViewerDialog), timeout=WAIT)
    _focus_list(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    qtbot.keyClick(card, Qt.Key.Key_Tab)
    qtbot.keyClick(card, Qt.Key.Key_Space)
    dialog = _viewer(area)
    qtbot.waitUntil(dialog.image_area.isVisible, timeout=WAIT)
    pixmap = dialog.image_label.pixmap()
    assert not pixmap.isNull() and pixmap.width() == 300
    assert dialog.status_label.text() == "300 by 150 pixels"


def test_a_pdf_opens_as_its_text_with_page_numbers(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments
) -> None:
    _active(qtbot, area)
    start_chat(qtbot, area)
    send(qtbot, area, "hello")
    question = messages(area)[0]
    data = pdf_bytes([["The first page."], ["Costs rose by 12 percent."]])
    fake.data = {"p1": data}
    fake.by_message = {
        question.id: [attachment(question, "p1", "report.pdf", "application/pdf", len(data))]
    }
    area.chat_view.reload()
    qtbot.waitUntil(lambda: len(area.chat_view.list.cards_shown()) == 1, timeout=WAIT)
    dialog = area.chat_view.open_attachment("p1")
    assert dialog is not None
    qtbot.waitUntil(dialog.text_view.isVisible, timeout=WAIT)
    text = dialog.text_view.toPlainText()
    assert "[p. 2]" in text and "Costs rose by 12 percent." in text
    # A damaged file says so, and what to do.
    fake.data["p1"] = b"%PDF-1.4 not really"
    broken = area.chat_view.open_attachment("p1")
    assert broken is not None
    qtbot.waitUntil(lambda: "Save a copy" in broken.status_label.text(), timeout=WAIT)
    assert not broken.text_view.isVisible()


@pytest.mark.parametrize("key", ["shift+f10", "menu"])
def test_the_menu_key_and_shift_f10_offer_open_and_save_as(
    qtbot: QtBot,
    area: ChatAreaWidget,
    fake: FakeAttachments,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    _with_files(qtbot, area, fake)
    target = tmp_path / "copy.txt"
    monkeypatch.setattr(chat_view_module, "choose_save_path", lambda *_: str(target))
    view = area.chat_view.list
    card = view.card_focus
    _focus_list(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    if key == "menu":
        qtbot.keyClick(card, Qt.Key.Key_Menu)
    else:
        qtbot.keyClick(card, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    menu = card.menu
    assert isinstance(menu, QMenu)
    qtbot.waitUntil(menu.isVisible, timeout=WAIT)
    assert [a.text() for a in menu.actions()] == ["&Open", "&Save as…"]
    qtbot.keyClick(menu, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: bool(fake.saved), timeout=WAIT)
    assert fake.saved == [("a1", target)]
    # Open from the same menu.
    card.setFocus()
    card.show_menu()
    assert card.menu is not None
    qtbot.waitUntil(card.menu.isVisible, timeout=WAIT)
    qtbot.keyClick(card.menu, Qt.Key.Key_O)
    dialog = _viewer(area)
    qtbot.waitUntil(dialog.text_view.isVisible, timeout=WAIT)


def test_esc_goes_back_to_the_messages_and_the_message_menu_opens_files(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments
) -> None:
    question = _with_files(qtbot, area, fake)
    view = area.chat_view.list
    card = view.card_focus
    _focus_list(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    qtbot.keyClick(card, Qt.Key.Key_Escape)
    assert view.hasFocus() and not card.isVisible()
    assert not area.chat_view.is_streaming()
    menu = area.chat_view.message_menu(question)
    assert menu is not None
    texts = [a.text() for a in menu.actions()]
    assert "Open notes.txt" in texts and "Open photo.png" in texts


# --- chips ----------------------------------------------------------------------------------


def test_chips_are_reached_with_tab_named_outlined_and_removed_with_delete(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments, tmp_path: Path
) -> None:
    _active(qtbot, area)
    start_chat(qtbot, area)
    notes, report = make_files(tmp_path)
    area.composer.add_files([notes, report])
    first, second = area.composer.chips.chips()
    assert first.accessibleName() == "notes.txt, 2.0 kB"
    # Once checked, the kind is named too.
    qtbot.waitUntil(lambda: first.accessibleName() == "notes.txt, Text, 2.0 kB", timeout=WAIT)
    assert "Delete removes it." in first.accessibleDescription()
    unfocused = first.grab().toImage()
    first.setFocus()
    qtbot.waitUntil(first.hasFocus, timeout=WAIT)
    assert first.grab().toImage() != unfocused  # the focus is visible
    qtbot.keyClick(first, Qt.Key.Key_Tab)
    assert first.remove_button.hasFocus()
    qtbot.keyClick(first.remove_button, Qt.Key.Key_Tab)
    assert second.hasFocus()
    qtbot.keyClick(second, Qt.Key.Key_Delete)
    assert [c.name for c in area.composer.chips.chips()] == ["notes.txt"]
    assert first.hasFocus()  # the focus stays in the row
    qtbot.keyClick(first, Qt.Key.Key_Delete)
    assert area.composer.chips.chips() == []


def test_enter_opens_a_waiting_file_and_its_menu_saves_or_removes_it(
    qtbot: QtBot,
    area: ChatAreaWidget,
    fake: FakeAttachments,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _active(qtbot, area)
    start_chat(qtbot, area)
    notes = make_files(tmp_path)[0]
    area.composer.add_files([notes])
    picture = QImage(64, 32, QImage.Format.Format_ARGB32)
    picture.fill(QColor("red"))
    area.composer.add_image(picture)
    chip, pasted = area.composer.chips.chips()
    chip.setFocus()
    qtbot.waitUntil(chip.hasFocus, timeout=WAIT)
    qtbot.keyClick(chip, Qt.Key.Key_Return)
    dialog = area.findChild(AttachmentViewerDialog)
    assert dialog is not None
    qtbot.waitUntil(dialog.text_view.isVisible, timeout=WAIT)
    assert dialog.text_view.toPlainText() == "x" * 2048
    dialog.close()
    qtbot.waitUntil(lambda: area.findChild(AttachmentViewerDialog) is None, timeout=WAIT)
    _active(qtbot, area)
    pasted.setFocus()
    qtbot.waitUntil(pasted.hasFocus, timeout=WAIT)
    qtbot.keyClick(pasted, Qt.Key.Key_Space)
    image_dialog = area.findChild(AttachmentViewerDialog)
    assert image_dialog is not None
    qtbot.waitUntil(image_dialog.image_area.isVisible, timeout=WAIT)
    assert image_dialog.image_label.pixmap().width() == 64
    image_dialog.close()
    qtbot.waitUntil(lambda: area.findChild(AttachmentViewerDialog) is None, timeout=WAIT)

    # Shift+F10: Open, Save as (a copy where the user chose), Remove.
    target = tmp_path / "copy.png"
    monkeypatch.setattr(chat_view_module, "choose_save_path", lambda *_: str(target))
    _active(qtbot, area)
    pasted.setFocus()
    qtbot.waitUntil(pasted.hasFocus, timeout=WAIT)
    qtbot.keyClick(pasted, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    menu = pasted.menu
    assert isinstance(menu, QMenu)
    qtbot.waitUntil(menu.isVisible, timeout=WAIT)
    assert [a.text() for a in menu.actions()] == ["&Open", "&Save as…", "&Remove"]
    qtbot.keyClick(menu, Qt.Key.Key_S)
    qtbot.waitUntil(target.is_file, timeout=WAIT)
    assert QImage(str(target)).size() == picture.size()
    pasted.show_menu()
    assert pasted.menu is not None
    qtbot.waitUntil(pasted.menu.isVisible, timeout=WAIT)
    qtbot.keyClick(pasted.menu, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: len(area.composer.chips.chips()) == 1, timeout=WAIT)
    assert area.composer.chips.chips()[0].name == "notes.txt"

"""Driving widgets the way a user does, shared by the scripted and the llama-server tests.

* ``shown_area(qtbot, session)``: a shown ``ChatAreaWidget`` over an unlocked session
  (a generator for fixtures: it lets background work end before the session closes);
* ``start_chat``, ``send``, ``wait_answer``, ``messages``, ``sidebar_title``: a chat
  as the user sees it;
* ``create_vault_on_first_run``: the first-run page's passphrase and recovery-code steps.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtGui import QKeySequence
from pytestqt.qtbot import QtBot

from app.session import Session
from app.store.models import Message, MessageStatus
from app.ui import tasks
from app.ui.chat_area import ChatAreaWidget
from app.ui.main_window import MainWindow
from app.vault.recovery_code import RecoveryCode

WAIT = 30_000


def shown_area(
    qtbot: QtBot,
    session: Session,
    *,
    size: tuple[int, int] = (1200, 800),
    max_tokens: int | None = None,
) -> Iterator[ChatAreaWidget]:
    """A shown, loaded chat area whose answers are at most ``max_tokens`` long; on
    teardown, cleared with its background work done."""
    widget = ChatAreaWidget(session)
    # Not qtbot.addWidget: it would delete the widget before this fixture's teardown,
    # which first lets the widget's background work finish.
    widget.chat_view.max_tokens = max_tokens
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    widget.load()
    qtbot.waitUntil(lambda: tasks.running() == 0)
    yield widget
    widget.clear()
    settle(qtbot, session)
    widget.close()
    widget.deleteLater()


def settle(qtbot: QtBot, session: Session) -> None:
    """Let background work end before the session closes: a title still being written
    would otherwise use a database connection the teardown closes."""
    if session.is_unlocked:
        titles = tasks.start(session.service.wait_for_titles(WAIT / 1000))
        qtbot.waitUntil(titles.done, timeout=WAIT)
    qtbot.waitUntil(lambda: tasks.running() == 0, timeout=WAIT)


def messages(area: ChatAreaWidget) -> list[Message]:
    """The messages the chat view shows, oldest first."""
    return area.chat_view.model.messages


def start_chat(qtbot: QtBot, area: ChatAreaWidget, tier: str = "standard") -> str:
    """Start a new chat of ``tier`` and wait until it is open; its id."""
    area.new_chat(tier)
    qtbot.waitUntil(lambda: area.chat_view.chat is not None, timeout=WAIT)
    chat = area.chat_view.chat
    assert chat is not None
    return chat.id


def send(qtbot: QtBot, area: ChatAreaWidget, text: str) -> Message:
    """Type ``text``, press Enter, wait for the whole answer; return it as shown."""
    before = len(messages(area))
    area.composer.editor.setPlainText(text)
    qtbot.keyClick(area.composer.editor, "\r")
    return wait_answer(qtbot, area, before + 2)


def wait_answer(qtbot: QtBot, area: ChatAreaWidget, count: int) -> Message:
    """Wait until ``count`` messages show, the last a finished answer; return it."""

    def answered() -> bool:
        shown = messages(area)
        return (
            not area.chat_view.is_streaming()
            and len(shown) >= count
            and shown[-1].role == "assistant"
            and shown[-1].status is not MessageStatus.PARTIAL
        )

    qtbot.waitUntil(answered, timeout=WAIT)
    return messages(area)[-1]


def sidebar_title(area: ChatAreaWidget, chat_id: str) -> str | None:
    """The title the sidebar shows for ``chat_id`` (None when it is not listed)."""
    row = area.sidebar.model.row_of(chat_id)
    return None if row is None else area.sidebar.model.summary(row).title


def create_vault_on_first_run(
    qtbot: QtBot, window: MainWindow, passphrase: str, profile: Path, tmp_path: Path
) -> None:
    """Type a passphrase on the first-run page, create the vault, keep the recovery code;
    leaves the page at "I stored it" (Continue enabled), checking each step."""
    assert window.current_page == "first_run"
    first_run = window.first_run
    assert first_run is not None

    fields = first_run.passphrase_fields
    fields.passphrase_edit.setText(passphrase)
    assert not first_run.create_button.isEnabled()
    fields.confirm_edit.setText(passphrase + "x")
    assert not first_run.create_button.isEnabled()
    assert "differ" in first_run.create_error.text()
    fields.confirm_edit.setText(passphrase)
    assert first_run.create_button.isEnabled()
    qtbot.waitUntil(lambda: fields.strength is not None, timeout=10_000)
    assert fields.meter.value() >= 3
    first_run.create_button.click()

    qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=WAIT)
    assert (profile / "vault.json").exists()
    shown = first_run.recovery.code_view.toPlainText()
    RecoveryCode.parse(shown)  # a well-formed code, 4 lines of 4 groups
    assert len(shown.splitlines()) == 4
    assert fields.passphrase() == ""  # the passphrase left the widgets

    saved = tmp_path / "code.txt"
    first_run.recovery.save_to(saved)
    assert shown in saved.read_text(encoding="utf-8")
    if os.name == "posix":  # Windows keeps access in ACLs, not in st_mode
        assert saved.stat().st_mode & 0o077 == 0
    first_run.recovery.copy()
    assert not first_run.continue_button.isEnabled()
    first_run.recovery.stored_check.setChecked(True)
    assert first_run.continue_button.isEnabled()


def hit_shown(area: ChatAreaWidget, message_id: str) -> bool:
    """Whether the search hit ``message_id`` is the current row and on screen."""
    view = area.chat_view.list
    number = area.chat_view.model.row_number(message_id)
    if number is None:
        return False
    index = area.chat_view.model.index(number)
    visible = view.visualRect(index).intersects(view.viewport().rect())
    return visible and view.currentIndex() == index


def press(qtbot: QtBot, window: MainWindow, sequence: str) -> None:
    """Press the key ``sequence`` ("Ctrl+Shift+R") in the active ``window``."""
    combo = QKeySequence(sequence)[0]
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=10_000)
    window.setFocus()
    qtbot.keyClick(window, combo.key(), combo.keyboardModifiers())

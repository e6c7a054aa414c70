"""Locking on demand and on idle: back to the unlock page, nothing decrypted remains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.chat.events import ChatUpdated
from app.config import LoadedConfig
from app.store.models import Tier
from app.ui.main_window import MainWindow
from app.vault.idle import ManualClock
from app.vault.kdf import FLOOR_PARAMS
from tests.peers.scripted_provider import ScriptedModel
from tests.qt.conftest import QT_PASSPHRASE, widget_texts

SENTINEL = "Zebra-sentinel-4711"


def _spy_clear(window: MainWindow) -> list[int]:
    area = window.chat_area
    assert area is not None
    calls: list[int] = []
    original = area.clear

    def clear() -> None:
        calls.append(1)
        original()

    area.clear = clear  # type: ignore[method-assign]
    return calls


def _fill_with_sentinel(window: MainWindow, qtbot: QtBot, run_async: Callable[..., Any]) -> str:
    """A chat titled ``SENTINEL``, shown in the window; its id."""
    service = window.session.service
    chat = run_async(service.create_chat(Tier.STANDARD))
    run_async(service.rename(chat.id, SENTINEL))
    area = window.chat_area
    assert area is not None
    area.load()
    qtbot.waitUntil(lambda: any(SENTINEL in t for t in widget_texts(window)), timeout=5_000)
    return str(chat.id)


def test_lock_on_demand_clears_everything(
    qtbot: QtBot, main_window: MainWindow, run_async: Callable[..., Any]
) -> None:
    chat_id = _fill_with_sentinel(main_window, qtbot, run_async)
    calls = _spy_clear(main_window)
    with qtbot.waitSignal(main_window.locked):
        main_window.lock_action.trigger()
    assert calls == [1]
    assert main_window.current_page == "unlock"
    assert not main_window.session.is_unlocked
    assert main_window.session.vault is not None and main_window.session.vault.is_locked
    assert not any(SENTINEL in text for text in widget_texts(main_window))
    assert not main_window.new_chat_action.isEnabled()

    # and it unlocks again, with the chat still there
    main_window.unlock_page.passphrase_edit.setText(QT_PASSPHRASE)
    with qtbot.waitSignal(main_window.unlocked, timeout=10_000):
        main_window.unlock_page.unlock()
    assert run_async(main_window.session.service.chat(chat_id)).title == SENTINEL
    qtbot.waitUntil(lambda: any(SENTINEL in t for t in widget_texts(main_window)), timeout=5_000)


def test_ctrl_l_locks(qtbot: QtBot, main_window: MainWindow) -> None:
    main_window.activateWindow()
    qtbot.waitUntil(main_window.isActiveWindow, timeout=2_000)
    qtbot.keyClick(main_window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: main_window.current_page == "unlock", timeout=2_000)


def test_lock_on_idle(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    scripted_model: ScriptedModel,
    run_async: Callable[..., Any],
    window_settings: QSettings,
) -> None:
    from app.session import Session

    clock = ManualClock()
    session = Session(
        qt_config, qt_profile, kdf=FLOOR_PARAMS, clock=clock, provider_factory=scripted_model
    )
    run_async(session.create_vault(QT_PASSPHRASE), timeout=30_000)
    session.set_idle_timeout(60)
    window = MainWindow(session, settings=window_settings, idle_check_ms=10)
    qtbot.addWidget(window)
    try:
        window._on_unlocked()
        window.show()
        _fill_with_sentinel(window, qtbot, run_async)
        calls = _spy_clear(window)
        clock.advance(30)
        qtbot.wait(50)
        assert window.current_page == "main"
        session.record_activity()  # the user typed: the minute starts again
        clock.advance(45)
        qtbot.wait(50)
        assert window.current_page == "main"
        clock.advance(16)
        qtbot.waitUntil(lambda: window.current_page == "unlock", timeout=2_000)
        assert calls == [1]
        assert not any(SENTINEL in text for text in widget_texts(window))
    finally:
        window.close()
        session.close()


def test_auto_lock_minutes_come_from_the_config(unlocked_session: Any) -> None:
    assert unlocked_session.seconds_until_idle_lock() is None  # auto_lock_minutes: 0
    config = unlocked_session.config
    ui = config.config.ui.model_copy(update={"auto_lock_minutes": 5})
    unlocked_session.apply_config(
        LoadedConfig(config.config.model_copy(update={"ui": ui}), config.path, config.env)
    )
    left = unlocked_session.seconds_until_idle_lock()
    assert left is not None and 299 < left <= 300


@pytest.mark.parametrize(
    "answer", [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Ok]
)
def test_ephemeral_chats_warn_before_lock(
    main_window: MainWindow, monkeypatch: pytest.MonkeyPatch, answer: QMessageBox.StandardButton
) -> None:
    monkeypatch.setattr(main_window.chat_area, "has_ephemeral_chats", lambda: True)
    asked: list[str] = []

    def warning(*args: Any, **kwargs: Any) -> QMessageBox.StandardButton:
        asked.append(str(args[2]))
        return answer

    monkeypatch.setattr(QMessageBox, "warning", warning)
    locked = main_window.lock()
    assert asked and "vanish" in asked[0]
    assert locked is (answer == QMessageBox.StandardButton.Ok)
    assert main_window.current_page == ("unlock" if locked else "main")


def test_quitting_with_ephemeral_chats_asks_first(
    main_window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main_window.chat_area, "has_ephemeral_chats", lambda: True)
    monkeypatch.setattr(
        QMessageBox, "warning", lambda *args, **kwargs: QMessageBox.StandardButton.Cancel
    )
    assert not main_window.close()
    assert main_window.isVisible() and main_window.session.is_unlocked
    monkeypatch.setattr(
        QMessageBox, "warning", lambda *args, **kwargs: QMessageBox.StandardButton.Ok
    )
    assert main_window.close()
    assert not main_window.session.is_unlocked  # closing locks: keys dropped, chats closed


def test_a_chat_change_seen_just_before_locking_asks_nothing_after(
    qtbot: QtBot, main_window: MainWindow, run_async: Callable[..., Any]
) -> None:
    """The sidebar refreshes a changed chat's row on the next turn of the event loop; a
    lock in between must not make it ask the (now locked) service."""
    chat_id = _fill_with_sentinel(main_window, qtbot, run_async)
    area = main_window.chat_area
    assert area is not None
    area.sidebar.on_chat_changed(ChatUpdated(chat_id))  # the refresh is now pending
    with qtbot.waitSignal(main_window.locked):
        main_window.lock_action.trigger()
    qtbot.wait(50)  # the pending refresh runs: pytest-qt fails on an exception in it
    assert main_window.current_page == "unlock"

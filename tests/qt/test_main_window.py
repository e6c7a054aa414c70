"""The main window: shortcuts reach the chat area, geometry is remembered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QKeySequence
from pytestqt.qtbot import QtBot

from app.ui.main_window import MainWindow
from app.session import Session


class RecordingChatArea:
    """Records which chat-area methods the window called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> Any:
            self.calls.append((name, args))
            return False

        return record


EXPECTED = {
    "new_chat_action": ("Ctrl+N", ("new_chat", ())),
    "new_ephemeral_action": ("Ctrl+Shift+N", ("new_chat", ("ephemeral",))),
    "search_action": ("Ctrl+K", ("focus_search", ())),
    "next_chat_action": ("Ctrl+Tab", ("select_next_chat", ())),
    "previous_chat_action": ("Alt+Up", ("select_previous_chat", ())),
    "regenerate_action": ("Ctrl+R", ("regenerate", ())),
}


def test_menus_and_shortcuts(main_window: MainWindow) -> None:
    names = [action.text() for action in main_window.menuBar().actions()]
    assert names == ["&File", "&Chat", "&Help"]
    shortcuts = {
        name: [s.toString() for s in getattr(main_window, name).shortcuts()] for name in EXPECTED
    }
    assert "Ctrl+F" in shortcuts["search_action"]
    assert "Alt+Down" in shortcuts["next_chat_action"]
    assert "Ctrl+Shift+Tab" in shortcuts["previous_chat_action"]
    for name, (sequence, _call) in EXPECTED.items():
        assert sequence in shortcuts[name], name
    lock = [s.toString() for s in main_window.lock_action.shortcuts()]
    assert lock == ["Ctrl+L"]
    settings = main_window.settings_action.shortcuts()
    assert QKeySequence("Ctrl+,") in settings
    assert QKeySequence("Ctrl+Q") in main_window.quit_action.shortcuts()


@pytest.mark.parametrize("action_name", sorted(EXPECTED))
def test_shortcut_keys_call_the_chat_area(
    qtbot: QtBot, main_window: MainWindow, action_name: str
) -> None:
    recorder = RecordingChatArea()
    main_window.chat_area = recorder  # type: ignore[assignment]
    main_window.activateWindow()
    qtbot.waitUntil(main_window.isActiveWindow, timeout=2_000)
    sequence, call = EXPECTED[action_name]
    combo = QKeySequence(sequence)[0]
    main_window.setFocus()
    qtbot.keyClick(main_window, combo.key(), combo.keyboardModifiers())
    assert call in recorder.calls


def test_escape_stops_unless_a_widget_uses_it(qtbot: QtBot, main_window: MainWindow) -> None:
    recorder = RecordingChatArea()
    main_window.chat_area = recorder  # type: ignore[assignment]
    assert main_window.stop_action.text().endswith("\tEsc")
    main_window.activateWindow()
    main_window.setFocus()
    qtbot.keyClick(main_window, Qt.Key.Key_Escape)
    assert ("stop", ()) in recorder.calls


def test_actions_do_nothing_while_locked(main_window: MainWindow) -> None:
    main_window.lock(confirm=False)
    recorder = RecordingChatArea()
    main_window.chat_area = recorder  # type: ignore[assignment]
    main_window.new_chat_action.trigger()
    assert recorder.calls == []
    assert main_window.open_settings() is None


def test_window_geometry_is_remembered(
    qtbot: QtBot, unlocked_session: Session, tmp_path: Path
) -> None:
    path = str(tmp_path / "geometry.ini")
    first = MainWindow(unlocked_session, settings=QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(first)
    first.show()
    first.resize(713, 477)
    qtbot.waitUntil(lambda: first.width() == 713)
    first.save_geometry()
    first.hide()

    second = MainWindow(unlocked_session, settings=QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (713, 477)


def test_about_and_icons(main_window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "about", lambda _p, _t, text: shown.append(text))
    main_window.about_action.trigger()
    assert shown and "Hushchat" in shown[0]
    assert not main_window.windowIcon().isNull()
    # SVG icons render sharp at a high device pixel ratio.
    pixmap = main_window.windowIcon().pixmap(QSize(32, 32), 2.0)
    assert pixmap.width() == 64 and pixmap.devicePixelRatio() == 2.0

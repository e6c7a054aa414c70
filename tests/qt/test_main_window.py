"""The main window: shortcuts reach the chat area, none is registered twice (Ctrl+Q
quits), geometry is remembered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from pytestqt.qtbot import QtBot

from app.session import Session
from app.ui import main_window as main_window_module
from app.ui.main_window import MainWindow
from tests.qt.conftest import shown_main_window

# What the window's actions may call on the chat area.
AREA_METHODS = (
    "new_chat",
    "focus_search",
    "select_next_chat",
    "select_previous_chat",
    "regenerate",
    "stop",
    "focus_composer",
)


def record_area_calls(window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The chat area's methods the window calls, recorded as ``(name, args)`` instead."""
    area = window.chat_area
    assert area is not None
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for name in AREA_METHODS:

        def record(*args: Any, name: str = name) -> bool:
            calls.append((name, args))
            return False

        monkeypatch.setattr(area, name, record)
    return calls


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
    assert names == ["&File", "&Chat", "&View", "&Help"]
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


def registered_shortcuts(window: MainWindow) -> dict[tuple[str, int], list[str]]:
    """Every key sequence of every QAction and QShortcut under the window, by (sequence,
    context), with who registered it (an action listing a sequence twice counts twice)."""
    found: dict[tuple[str, int], list[str]] = {}
    owners: list[QAction | QShortcut] = [*window.actions()]
    owners += [a for a in window.findChildren(QAction) if a not in owners]
    owners += window.findChildren(QShortcut)
    for owner in owners:
        keys = owner.shortcuts() if isinstance(owner, QAction) else owner.keys()
        name = owner.text() if isinstance(owner, QAction) else owner.objectName() or "QShortcut"
        for key in keys:
            if not key.isEmpty():
                found.setdefault((key.toString(), int(owner.shortcutContext().value)), []).append(
                    name
                )
    return found


# Standard keys as an X11 desktop (GNOME, KDE, xcb) binds them; offscreen Qt uses the
# Windows table, where Quit has no key and the bug did not show.
X11_BINDINGS = {
    QKeySequence.StandardKey.Quit: ["Ctrl+Q"],
    QKeySequence.StandardKey.Preferences: ["Ctrl+,"],
    QKeySequence.StandardKey.HelpContents: ["F1"],
}


@pytest.fixture(params=["platform", "x11"])
def any_desktop_window(
    request: pytest.FixtureRequest,
    qtbot: QtBot,
    unlocked_session: Session,
    window_settings: QSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MainWindow]:
    """The main window with this platform's standard keys, and with an X11 desktop's."""
    if request.param == "x11":
        real = main_window_module.key_bindings

        def x11(key: QKeySequence.StandardKey) -> list[QKeySequence]:
            if key in X11_BINDINGS:
                return [QKeySequence(s) for s in X11_BINDINGS[key]]
            return real(key)

        monkeypatch.setattr(main_window_module, "key_bindings", x11)
    yield from shown_main_window(qtbot, unlocked_session, window_settings)


def test_no_shortcut_is_registered_twice(any_desktop_window: MainWindow) -> None:
    """Issue 12 item 1: StandardKey.Quit and "Ctrl+Q" both registered made Ctrl+Q
    ambiguous (Qt triggers nothing); the same for any other pair."""
    found = registered_shortcuts(any_desktop_window)
    assert ("Ctrl+Q", int(Qt.ShortcutContext.WindowShortcut.value)) in found
    twice = {key: names for key, names in found.items() if len(names) > 1}
    assert twice == {}


def test_ctrl_q_quits(qtbot: QtBot, any_desktop_window: MainWindow) -> None:
    """Ctrl+Q closes the window (it was ambiguous and did nothing)."""
    window = any_desktop_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    window.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5_000)


@pytest.mark.parametrize("action_name", sorted(EXPECTED))
def test_shortcut_keys_call_the_chat_area(
    qtbot: QtBot, main_window: MainWindow, action_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = record_area_calls(main_window, monkeypatch)
    main_window.activateWindow()
    qtbot.waitUntil(main_window.isActiveWindow, timeout=2_000)
    sequence, call = EXPECTED[action_name]
    combo = QKeySequence(sequence)[0]
    main_window.setFocus()
    qtbot.keyClick(main_window, combo.key(), combo.keyboardModifiers())
    assert call in calls


def test_escape_stops_unless_a_widget_uses_it(
    qtbot: QtBot, main_window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = record_area_calls(main_window, monkeypatch)
    assert main_window.stop_action.text().endswith("\tEsc")
    main_window.activateWindow()
    main_window.setFocus()
    qtbot.keyClick(main_window, Qt.Key.Key_Escape)
    assert ("stop", ()) in calls


def test_actions_do_nothing_while_locked(
    main_window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    main_window.lock(confirm=False)
    calls = record_area_calls(main_window, monkeypatch)
    main_window.new_chat_action.trigger()
    assert calls == []
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


def test_failures_show_in_a_banner_until_dismissed_and_go_on_lock(
    qtbot: QtBot, main_window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure (here: renaming a chat that another device deleted meanwhile) is shown
    above the chats until dismissed, not as a status-bar line that fades in 5 s."""
    area = main_window.chat_area
    assert area is not None
    banner = main_window.error_banner
    assert not banner.isVisible()

    async def gone(*_args: object, **_kwargs: object) -> None:
        from app.store.chats import ChatNotFoundError

        raise ChatNotFoundError("That chat no longer exists: it was deleted on another device.")

    monkeypatch.setattr(main_window.session.service, "rename", gone)
    area.sidebar.rename("0123456789ab", "A new title")
    qtbot.waitUntil(banner.isVisible, timeout=10_000)
    assert "no longer exists" in banner.text
    assert "no longer exists" not in main_window.statusBar().currentMessage()
    area.sidebar.rename("0123456789ab", "A new title")  # the same failure counts, no stack
    qtbot.waitUntil(
        lambda: "(\N{MULTIPLICATION SIGN}2)" in banner.text_label.text(), timeout=10_000
    )
    banner.dismiss_button.setFocus()
    qtbot.keyClick(banner.dismiss_button, Qt.Key.Key_Escape)
    assert not banner.isVisible()

    area.sidebar.rename("0123456789ab", "A new title")
    qtbot.waitUntil(banner.isVisible, timeout=10_000)
    main_window.lock(confirm=False)
    assert not banner.isVisible() and banner.text == ""  # it may name a chat


def test_long_lived_objects_are_frozen_out_of_the_collector_after_an_unlock(
    qtbot: QtBot, main_window: MainWindow
) -> None:
    import gc

    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=10_000)
    assert main_window.session.is_unlocked

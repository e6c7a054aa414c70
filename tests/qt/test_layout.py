"""The window's layout from 480 to 2560 px (issue 12 item 8 and "Layout").

Side panels are toggled by buttons and Ctrl+B / Ctrl+Shift+B, collapse by themselves
below their width breakpoints and come back after widening; the user's explicit choice
is kept apart from that. At 480, 700, 1024, 1440 and 2560 px, light and dark, nothing is
clipped: every label's text fits its width (QFontMetrics), every button its size hint,
the chat column keeps its minimum and the toggles are on screen. Each state is written
as a PNG to ``artifacts/screenshots/`` (or ``$HUSHCHAT_SCREENSHOTS_DIR``) for CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication
from pytestqt.qtbot import QtBot

from app.session import Session
from app.ui.layout import CHAT_FLOOR_WIDTH, CHAT_MIN_WIDTH, clipped_widgets
from app.ui.main_window import CHAT_SETTINGS_PANEL, SIDEBAR_PANEL, MainWindow
from app.ui.theme import apply_theme
from tests.qt.conftest import shown_main_window
from tests.qt.drivers import send, settle, start_chat

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = (480, 700, 1024, 1440, 2560)
HEIGHT = 760
WAIT = 30_000


def screenshots_dir() -> Path:
    out = Path(os.environ.get("HUSHCHAT_SCREENSHOTS_DIR") or ROOT / "artifacts" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def resize(qtbot: QtBot, window: MainWindow, width: int) -> None:
    window.resize(width, HEIGHT)
    qtbot.waitUntil(lambda: window.width() == width, timeout=WAIT)
    QApplication.processEvents()


def center_width(window: MainWindow) -> int:
    area = window.chat_area
    assert area is not None
    return area.chat_view.width()


@pytest.fixture
def window(
    qtbot: QtBot, unlocked_session: Session, window_settings: QSettings
) -> Iterator[MainWindow]:
    yield from shown_main_window(qtbot, unlocked_session, window_settings)
    settle(qtbot, unlocked_session)


def shown(window: MainWindow) -> tuple[bool, bool]:
    area = window.chat_area
    assert area is not None
    return area.sidebar.isVisible(), area.settings_panel.isVisible()


def press(qtbot: QtBot, window: MainWindow, sequence: str) -> None:
    from PySide6.QtGui import QKeySequence

    combo = QKeySequence(sequence)[0]
    window.activateWindow()
    window.setFocus()
    qtbot.keyClick(window, combo.key(), combo.keyboardModifiers())


def test_the_window_can_be_480_px_wide(qtbot: QtBot, window: MainWindow) -> None:
    """Issue 12 item 8: the window refused to be narrower than 640 px."""
    resize(qtbot, window, 480)
    assert window.width() == 480
    assert center_width(window) >= CHAT_MIN_WIDTH


def test_panels_collapse_below_breakpoints_and_come_back(qtbot: QtBot, window: MainWindow) -> None:
    """Issue 12 item 8: at 700 px the chat column was ~150 px; panels did not come back."""
    expected = {
        2560: (True, True),
        1440: (True, True),
        1024: (True, False),
        700: (True, False),
        480: (False, False),
    }
    for width in (1440, 1024, 700, 480, 700, 1024, 1440, 2560):
        resize(qtbot, window, width)
        assert shown(window) == expected[width], width
        assert center_width(window) >= CHAT_MIN_WIDTH, width
        assert window.toggle_sidebar_action.isChecked() == expected[width][0]
        assert window.toggle_chat_settings_action.isChecked() == expected[width][1]
    assert SIDEBAR_PANEL[1] <= 700 < CHAT_SETTINGS_PANEL[1] <= 1440


def test_the_users_choice_is_kept_apart_from_the_collapse(
    qtbot: QtBot, window: MainWindow, window_settings: QSettings, unlocked_session: Session
) -> None:
    resize(qtbot, window, 1440)
    press(qtbot, window, "Ctrl+B")  # hidden by hand: stays hidden at every width
    assert shown(window) == (False, True)
    resize(qtbot, window, 480)
    resize(qtbot, window, 1440)
    assert shown(window) == (False, True)
    window.settings.sync()
    press(qtbot, window, "Ctrl+B")
    assert shown(window) == (True, True)

    resize(qtbot, window, 480)  # collapsed by itself; opened by hand it shows
    assert shown(window) == (False, False)
    press(qtbot, window, "Ctrl+B")
    assert shown(window) == (True, False)
    assert center_width(window) >= CHAT_FLOOR_WIDTH
    press(qtbot, window, "Ctrl+B")  # closed again: it still comes back when wider
    resize(qtbot, window, 1440)
    assert shown(window) == (True, True)

    resize(qtbot, window, 1024)  # the settings panel opened at 1024 takes its room
    assert shown(window) == (True, False)
    press(qtbot, window, "Ctrl+Shift+B")
    assert shown(window)[1]
    assert center_width(window) >= CHAT_MIN_WIDTH
    resize(qtbot, window, 700)  # the panel opened by hand wins; the sidebar gives way
    assert shown(window) == (False, True)
    assert center_width(window) >= CHAT_FLOOR_WIDTH
    resize(qtbot, window, 1440)  # a breakpoint crossed: automatic again
    assert shown(window) == (True, True)
    resize(qtbot, window, 1024)
    assert shown(window) == (True, False)


def test_the_hidden_sidebar_is_remembered(
    qtbot: QtBot, unlocked_session: Session, window_settings: QSettings
) -> None:
    first = shown_main_window(qtbot, unlocked_session, window_settings)
    window = next(first)
    resize(qtbot, window, 1440)
    assert window.toggle_panel("chat_settings") is False
    first.close()
    second = shown_main_window(qtbot, unlocked_session, window_settings)
    again = next(second)
    resize(qtbot, again, 1440)
    assert shown(again) == (True, False)
    assert not again.toggle_chat_settings_action.isChecked()
    second.close()


def test_search_shows_a_hidden_sidebar(qtbot: QtBot, window: MainWindow) -> None:
    resize(qtbot, window, 480)
    assert shown(window) == (False, False)
    press(qtbot, window, "Ctrl+K")
    area = window.chat_area
    assert area is not None
    assert shown(window) == (True, False)
    assert window.toggle_sidebar_action.isChecked()
    qtbot.waitUntil(area.sidebar.search.hasFocus, timeout=WAIT)


def test_toggle_buttons_have_names_and_work(qtbot: QtBot, window: MainWindow) -> None:
    resize(qtbot, window, 1440)
    bar = window.layout_bar
    assert bar.isVisible()
    button = bar.widgetForAction(window.toggle_sidebar_action)
    assert isinstance(button, QAbstractButton)
    assert button.accessibleName() == "Show or hide the sidebar"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert shown(window)[0] is False
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert shown(window)[0] is True
    window.lock(confirm=False)
    assert not bar.isVisible()


# --- nothing clipped ------------------------------------------------------------------------


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_nothing_is_clipped_at_any_width(
    qtbot: QtBot, window: MainWindow, unlocked_session: Session, theme: str
) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    apply_theme(app, theme, 11, "dark" if theme == "dark" else "light")
    try:
        area = window.chat_area
        assert area is not None
        start_chat(qtbot, area)
        send(qtbot, area, "Where is https://example.com/a/really/long/path/to/a/page?")
        out = screenshots_dir()
        for width in WIDTHS:
            resize(qtbot, window, width)
            qtbot.wait(50)  # one round of layout requests and repaints
            path = out / f"layout-{width}-{theme}.png"
            assert window.grab().save(str(path), "PNG"), path
            assert clipped_widgets(window) == [], width
            assert center_width(window) >= CHAT_MIN_WIDTH, width
            # Chat rows fit the sidebar: no sideways scrolling, no badge cut off.
            assert not area.sidebar.list.horizontalScrollBar().isVisible(), width
            for action in (window.toggle_sidebar_action, window.toggle_chat_settings_action):
                button = window.layout_bar.widgetForAction(action)
                assert button.isVisible(), width
                corner = button.mapTo(window, button.rect().bottomRight())
                assert window.rect().contains(corner), width
            if width <= 1024:  # each panel opened by hand where it had folded away
                for panel in ("sidebar", "chat_settings"):
                    if window.panels is not None and not window.panels.is_shown(panel):
                        if not window.toggle_panel(panel):  # no room: it says so
                            message = window.statusBar().currentMessage()
                            assert "px wider" in message, (width, panel)
                            assert width < window.panels.width_needed(panel)
                            continue
                        qtbot.wait(50)
                        path = out / f"layout-{width}-{panel}-{theme}.png"
                        assert window.grab().save(str(path), "PNG"), path
                        assert clipped_widgets(window) == [], (width, panel)
                        assert center_width(window) >= CHAT_FLOOR_WIDTH, (width, panel)
                        window.toggle_panel(panel)
    finally:
        apply_theme(app, "light", 11, "light")


def test_the_clipping_check_sees_a_cut_off_label(qtbot: QtBot) -> None:
    """The check above can fail: a label narrower than its text, a squeezed button."""
    from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

    root = QWidget()
    qtbot.addWidget(root)
    label = QLabel("A label much wider than the room it gets", root)
    label.setFixedWidth(60)
    button = QPushButton("A button with a long text", root)
    button.setFixedWidth(40)
    wrapped = QLabel("word " * 60, root)
    wrapped.setWordWrap(True)
    wrapped.setFixedSize(80, 20)
    layout = QHBoxLayout(root)
    for widget in (label, button, wrapped):
        layout.addWidget(widget)
    root.show()
    qtbot.waitExposed(root)
    problems = clipped_widgets(root)
    assert len(problems) == 3, problems
    label.setMinimumWidth(0)
    label.setMaximumWidth(16_777_215)
    label.setText("fits")
    assert len(clipped_widgets(root)) == 2


# The first-run page's sync check box was one unwrapped line of 582 px (the page's
# column is at most 560): cut off at every width.
FIRST_RUN_SYNC_CHECK = "'Bring my chats from my sync server'"


def test_the_first_run_sync_check_box_fits(
    qtbot: QtBot, qt_config: object, tmp_path: Path, window_settings: QSettings
) -> None:
    from app.config import LoadedConfig
    from tests.qt.conftest import close_session, make_session

    assert isinstance(qt_config, LoadedConfig)
    profile = tmp_path / "fresh"
    profile.mkdir(mode=0o700)
    session = make_session(qt_config, profile)
    first = MainWindow(session, settings=window_settings)
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    try:
        resize(qtbot, first, 1024)
        qtbot.wait(50)
        assert [p for p in clipped_widgets(first) if FIRST_RUN_SYNC_CHECK in p] == []
    finally:
        first.close()
        close_session(session)


@pytest.mark.parametrize("width", [480, 700])
def test_the_unlock_and_first_run_pages_fit_narrow_windows(
    qtbot: QtBot,
    window: MainWindow,
    width: int,
    qt_config: object,
    tmp_path: Path,
    window_settings: QSettings,
) -> None:
    """Issue 12 item 8: at 480 px labels vanished."""
    from app.config import LoadedConfig
    from tests.qt.conftest import close_session, make_session

    window.lock(confirm=False)
    resize(qtbot, window, width)
    qtbot.wait(50)
    assert window.current_page == "unlock"
    assert clipped_widgets(window) == []
    window.grab().save(str(screenshots_dir() / f"unlock-{width}.png"), "PNG")

    assert isinstance(qt_config, LoadedConfig)
    profile = tmp_path / "fresh"
    profile.mkdir(mode=0o700)
    session = make_session(qt_config, profile)
    first = MainWindow(session, settings=window_settings)
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    try:
        assert first.current_page == "first_run"
        resize(qtbot, first, width)
        qtbot.wait(50)
        first.grab().save(str(screenshots_dir() / f"first-run-{width}.png"), "PNG")
        problems = clipped_widgets(first)
        assert [p for p in problems if FIRST_RUN_SYNC_CHECK not in p] == []
    finally:
        first.close()
        close_session(session)

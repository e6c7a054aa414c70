"""The new sync widgets' keyboard mnemonics (Alt+letter) do not collide with each other
on one page, nor with Settings' tabs, nor with the main window's menus (File, Chat, Help)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QAbstractButton, QGroupBox, QLabel, QTabBar, QWidget
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.ui.main_window import MainWindow
from app.ui.server_recovery import ServerRecoveryDialog
from tests.qt.conftest import close_session, make_session
from tests.qt.test_sync_recovery_notice import a_recovery, banner, with_recoveries
from tests.qt.test_sync_settings import (  # noqa: F401 - the fake sync world's fixtures
    WAIT,
    SyncWorld,
    open_sync_page,
    sync_stopped_after,
    world,
)

MENUS = {"f", "c", "h"}


def _letter(text: str) -> str | None:
    """The Alt+letter of ``text`` (``&&`` is a literal ampersand), or None."""
    match = re.search(r"&([^&\s])", text.replace("&&", ""))
    return match.group(1).lower() if match else None


def mnemonics(root: QWidget) -> list[str]:
    """The Alt+letters of the buttons, check boxes, group boxes and buddied labels shown
    under ``root``."""
    letters = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisibleTo(root):
            continue
        if isinstance(widget, QAbstractButton | QGroupBox):
            text = widget.text() if isinstance(widget, QAbstractButton) else widget.title()
        elif isinstance(widget, QLabel) and widget.buddy() is not None:
            text = widget.text()
        else:
            continue
        letter = _letter(text)
        if letter:
            letters.append(letter)
    return letters


def assert_unique(letters: list[str]) -> None:
    assert len(letters) == len(set(letters)), sorted(letters)


def test_the_account_step_and_the_banner(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    run_async: Callable[..., Any],
) -> None:
    with_recoveries(qtbot, main_window, run_async, world, a_recovery("device-new"))
    notice = banner(qtbot, main_window)
    assert not set(mnemonics(notice)) & MENUS
    assert_unique(mnemonics(notice))
    dialog, page = open_sync_page(main_window)
    qtbot.waitUntil(lambda: not page.recovery_box.isHidden(), timeout=WAIT)
    assert {"l", "c", "v"} <= set(mnemonics(page.account_step))
    # Settings' tabs keep their letters while this page is shown (Alt+letter of a tab
    # switches to it): the signed-in page's letters are none of theirs either.
    tab_bar = dialog.tabs.findChild(QTabBar)
    assert tab_bar is not None
    tabs = [_letter(tab_bar.tabText(index)) for index in range(tab_bar.count())]
    assert_unique([*mnemonics(page.account_step), *(letter for letter in tabs if letter)])


def test_the_unlock_screen_and_the_recovery_dialog(
    qtbot: QtBot,
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
) -> None:
    profile = tmp_path / "p"
    first = make_session(qt_config, profile)
    run_async(first.create_vault("orchard lantern quietly folds seven maps"), 30_000)
    close_session(first)
    (profile / "sync-recovery.json").write_text("{}")  # shows "Finish the recovery…"
    session = make_session(qt_config, profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    try:
        unlock = window.unlock_page
        qtbot.waitUntil(lambda: not unlock.finish_recovery_button.isHidden(), timeout=WAIT)
        unlock.toggle_recovery_mode()
        letters = mnemonics(unlock)
        assert {"n", "s"} <= set(letters)
        assert_unique(letters)
        assert not set(letters) & MENUS
        dialog = unlock.recover_from_server()
        assert isinstance(dialog, ServerRecoveryDialog)
        assert "unreadable" in dialog.message_label.text()  # the broken file is said
        for page in (dialog.explain_page, dialog.sign_in_page, dialog.waiting_page):
            assert_unique(mnemonics(page))
        dialog.reject()
    finally:
        window.close()
        close_session(session)

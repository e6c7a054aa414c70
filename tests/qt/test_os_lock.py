"""The window locks when the OS locks the screen or sleeps, and the idle lock also runs
on the first-run pages once the vault exists (the recovery code is on screen)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.session import Session
from app.ui.main_window import MainWindow
from app.vault.idle import ManualClock
from app.vault.kdf import FLOOR_PARAMS
from tests.peers.scripted_provider import ScriptedModel
from tests.qt.drivers import create_vault_on_first_run


def test_screen_lock_or_sleep_locks_the_window(
    qtbot: QtBot, main_window: MainWindow, run_async: Callable[..., Any]
) -> None:
    watcher = main_window._screen_lock
    assert watcher is not None  # watching since the unlock
    with qtbot.waitSignal(main_window.locked, timeout=5_000):
        watcher.lock_requested.emit("sleep")
    assert main_window.current_page == "unlock"
    assert not main_window.session.is_unlocked
    watcher.lock_requested.emit("screen lock")  # already locked: nothing happens
    assert main_window.current_page == "unlock"


def test_idle_lock_on_the_recovery_code_page(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    scripted_model: ScriptedModel,
    window_settings: QSettings,
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    session = Session(
        qt_config, qt_profile, kdf=FLOOR_PARAMS, clock=clock, provider_factory=scripted_model
    )
    session.set_idle_timeout(60)
    window = MainWindow(session, settings=window_settings, idle_check_ms=10)
    qtbot.addWidget(window)
    try:
        window.show()
        create_vault_on_first_run(
            qtbot, window, "quiet orchard lantern seventy", qt_profile, tmp_path
        )
        first_run = window.first_run
        assert first_run is not None
        code = first_run.recovery.code_view.toPlainText()
        assert code
        clock.advance(61)
        qtbot.waitUntil(lambda: window.current_page == "unlock", timeout=5_000)
        assert window.first_run is None
        assert not session.is_unlocked
        texts = [w.toPlainText() for w in window.findChildren(type(first_run.recovery.code_view))]
        assert code not in texts
    finally:
        window.close()
        session.close()

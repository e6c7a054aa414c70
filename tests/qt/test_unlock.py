"""Unlock: a wrong secret is shown inline, the field kept, nothing on disk changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.ui.main_window import MainWindow
from app.vault.kdf import FLOOR_PARAMS
from app.vault.vault import Vault
from tests.qt.conftest import QT_PASSPHRASE, make_session


def _fingerprint(profile: Path) -> dict[str, tuple[str, int]]:
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(profile.iterdir())
        if path.is_file() and path.name != "vault.lock"
    }


@pytest.fixture
def recovery_code(qt_profile: Path) -> str:
    vault, code = Vault.create(qt_profile, QT_PASSPHRASE, kdf=FLOOR_PARAMS)
    vault.close()
    return code.formatted()


@pytest.fixture
def locked_window(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    recovery_code: str,
    window_settings: QSettings,
) -> Iterator[MainWindow]:
    session = make_session(qt_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: session.vault is not None, timeout=5_000)
    yield window
    window.close()
    session.close()


def test_wrong_then_right_passphrase(
    qtbot: QtBot, locked_window: MainWindow, qt_profile: Path
) -> None:
    page = locked_window.unlock_page
    assert locked_window.current_page == "unlock"
    assert not locked_window.lock_action.isEnabled()
    assert not page.security_key_button.isVisible()  # no security-key slot
    before = _fingerprint(qt_profile)

    page.passphrase_edit.setText("not the passphrase")
    page.unlock_button.click()
    qtbot.waitUntil(lambda: page.error_label.text() != "", timeout=10_000)
    assert "passphrase" in page.error_label.text().lower() or "secret" in page.error_label.text()
    assert page.passphrase_edit.text() == "not the passphrase"  # kept, selected
    assert page.passphrase_edit.selectedText() == "not the passphrase"
    assert locked_window.current_page == "unlock"
    assert _fingerprint(qt_profile) == before

    page.passphrase_edit.setText(QT_PASSPHRASE)
    with qtbot.waitSignal(locked_window.unlocked, timeout=10_000):
        page.passphrase_edit.returnPressed.emit()
    assert locked_window.current_page == "main"
    assert page.passphrase_edit.text() == ""
    assert page.error_label.text() == ""
    assert locked_window.lock_action.isEnabled()


def test_recovery_code_unlocks(qtbot: QtBot, locked_window: MainWindow, recovery_code: str) -> None:
    page = locked_window.unlock_page
    page.toggle_recovery_mode()
    assert page.in_recovery_mode
    page.recovery_edit.setText("123456-123456")
    page.recovery_button.click()
    qtbot.waitUntil(lambda: page.error_label.text() != "", timeout=5_000)
    assert page.recovery_edit.text() == "123456-123456"
    page.recovery_edit.setText(recovery_code.replace("\n", " "))
    with qtbot.waitSignal(locked_window.unlocked, timeout=10_000):
        page.recovery_button.click()
    assert locked_window.current_page == "main"


def test_empty_passphrase_is_refused_inline(locked_window: MainWindow) -> None:
    page = locked_window.unlock_page
    page.unlock()
    assert page.error_label.text() == "Type your passphrase."


def test_profile_in_use_shows_an_error_page(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    recovery_code: str,
    window_settings: QSettings,
) -> None:
    holder = Vault.open(qt_profile)
    try:
        session = make_session(qt_config, qt_profile)
        window = MainWindow(session, settings=window_settings)
        qtbot.addWidget(window)
        qtbot.waitUntil(lambda: window.current_page == "error", timeout=5_000)
        assert "another Hushchat" in window.error_label.text()
        window.close()
        session.close()
    finally:
        holder.close()


def test_unlock_before_the_vault_finished_opening(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    recovery_code: str,
    window_settings: QSettings,
) -> None:
    # Opening and unlocking both open the vault; the second must wait, not fail on the
    # profile lock this process already holds.
    session = make_session(qt_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    try:
        window.unlock_page.passphrase_edit.setText(QT_PASSPHRASE)
        with qtbot.waitSignal(window.unlocked, timeout=10_000):
            window.unlock_page.unlock()
        assert window.current_page == "main"
    finally:
        window.close()
        session.close()

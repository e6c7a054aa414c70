"""The unlock page says what each way to unlock opens; a keychain unlock opens Standard
chats only and says how to open Private ones; after the recovery code it offers to set a
new passphrase."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.tiers import Tier
from app.ui.main_window import MainWindow
from app.vault.kdf import FLOOR_PARAMS
from app.vault.vault import Vault
from tests.qt.conftest import QT_PASSPHRASE, make_session


@pytest.fixture
def recovery_code(qt_profile: Path) -> str:
    vault, code = Vault.create(qt_profile, QT_PASSPHRASE, kdf=FLOOR_PARAMS)
    vault.add_keychain()  # the memory keyring of the Qt tests
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
    qtbot.waitUntil(lambda: window.unlock_page.keychain_button.isVisible(), timeout=5_000)
    yield window
    window.close()
    session.close()


def test_the_page_says_what_each_way_opens(locked_window: MainWindow) -> None:
    page = locked_window.unlock_page
    assert page.tiers_label.isVisible()
    text = page.tiers_label.text()
    assert "open all your chats" in text
    assert "keychain opens Standard chats only" in text
    assert "Standard chats only" in page.keychain_button.toolTip()
    assert "Standard and Private" in page.security_key_button.toolTip()


def test_a_keychain_unlock_says_how_to_open_private_chats(
    qtbot: QtBot, locked_window: MainWindow
) -> None:
    page = locked_window.unlock_page
    with qtbot.waitSignal(locked_window.unlocked, timeout=10_000):
        page.keychain_button.click()
    assert locked_window.session.locked_tiers == (Tier.PRIVATE,)
    message = locked_window.statusBar().currentMessage()
    assert "Unlock with your passphrase to open Private chats" in message
    assert page.passphrase_offer is None  # no offer: not the recovery code


def test_after_the_recovery_code_a_new_passphrase_is_offered(
    qtbot: QtBot,
    locked_window: MainWindow,
    recovery_code: str,
    run_async: Callable[..., Any],
) -> None:
    page = locked_window.unlock_page
    page.toggle_recovery_mode()
    page.recovery_edit.setText(recovery_code.replace("\n", " "))
    with qtbot.waitSignal(locked_window.unlocked, timeout=10_000):
        page.recovery_button.click()
    offer = page.passphrase_offer
    assert offer is not None and "recovery code" in offer.text()
    offer.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: page.new_passphrase_dialog is not None, timeout=5_000)
    dialog = page.new_passphrase_dialog
    assert dialog is not None
    assert not dialog.needs_current  # type: ignore[attr-defined]
    new = "a new passphrase after the recovery code"
    dialog.fields.passphrase_edit.setText(new)  # type: ignore[attr-defined]
    dialog.fields.confirm_edit.setText(new)  # type: ignore[attr-defined]
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.change()  # type: ignore[attr-defined]
    session = locked_window.session
    run_async(session.verify_passphrase(new))


def test_the_offer_can_be_declined(
    qtbot: QtBot, locked_window: MainWindow, recovery_code: str
) -> None:
    page = locked_window.unlock_page
    page.toggle_recovery_mode()
    page.recovery_edit.setText(recovery_code.replace("\n", " "))
    with qtbot.waitSignal(locked_window.unlocked, timeout=10_000):
        page.recovery_button.click()
    offer = page.passphrase_offer
    assert offer is not None
    offer.button(QMessageBox.StandardButton.No).click()
    assert page.passphrase_offer is None
    assert page.new_passphrase_dialog is None

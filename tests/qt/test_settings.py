"""Settings: providers with keychain keys, appearance, behaviour, security."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.api_keys import keychain_account
from app.config import load_config
from app.errors import WrongSecretError
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from app.vault.keychain import KEYCHAIN_SERVICE
from tests.qt.conftest import QT_PASSPHRASE, MemoryKeyring

API_KEY = "sk-test-NEVER-IN-FILE-0123456789"


@pytest.fixture
def settings(main_window: MainWindow) -> SettingsDialog:
    dialog = main_window.open_settings()
    assert dialog is not None
    return dialog


def _stored_key(keychain: MemoryKeyring, provider_name: str) -> str | None:
    """The API key the OS keychain holds for a provider (stored base64-encoded)."""
    stored = keychain.passwords.get((KEYCHAIN_SERVICE, keychain_account(provider_name)))
    return None if stored is None else base64.b64decode(stored).decode("utf-8")


def _config_text(main_window: MainWindow) -> str:
    path = main_window.session.config.path
    assert path is not None
    return path.read_text(encoding="utf-8")


def test_add_provider_puts_the_key_in_the_keychain(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    memory_keyring: MemoryKeyring,
    run_async: Callable[..., Any],
) -> None:
    assert settings.provider_list.count() == 1
    dialog = settings.add_provider()
    form = dialog.form
    form.name_edit.setText("cloud")
    form.type_combo.setCurrentIndex(form.type_combo.findData("openai"))
    form.url_edit.setText("https://api.example.com/v1")
    form.model_combo.setEditText("gpt-example")
    form.locality_combo.setCurrentIndex(form.locality_combo.findData("paid_cloud"))
    form.key_edit.setText(API_KEY)
    with qtbot.waitSignal(dialog.accepted, timeout=5_000):
        dialog.save()
    qtbot.waitUntil(lambda: settings.provider_list.count() == 2)

    assert _stored_key(memory_keyring, "cloud") == API_KEY
    text = _config_text(main_window)
    assert API_KEY not in text
    assert "api_key: keychain" in text
    assert "# the tiny local model" in text  # comments survive
    config = main_window.session.config
    entry = config.config.llm("cloud")
    api_keys = main_window.session.api_keys
    api_keys.forget()  # read it back from the keychain, not from memory
    assert run_async(api_keys.resolve(entry)) == API_KEY
    assert main_window.session.service.config is config
    assert load_config(config.path, {}).config.llm("cloud").locality == "paid_cloud"

    # Editing without typing a key keeps the stored one.
    settings.provider_list.setCurrentRow(1)
    edit = settings.edit_provider()
    assert edit is not None
    assert "Stored" in edit.form.key_edit.placeholderText()
    edit.form.model_combo.setEditText("gpt-example-2")
    with qtbot.waitSignal(edit.accepted, timeout=5_000):
        edit.save()
    entry = main_window.session.config.config.llm("cloud")
    assert entry.model_name == "gpt-example-2" and entry.api_key == "keychain"

    # Removing deletes the keychain entry too.
    settings.provider_list.setCurrentRow(1)
    settings.remove_selected_provider(confirm=False)
    qtbot.waitUntil(lambda: settings.provider_list.count() == 1, timeout=5_000)
    assert _stored_key(memory_keyring, "cloud") is None
    assert "cloud" not in _config_text(main_window)


def test_a_literal_key_never_reaches_the_file(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog
) -> None:
    dialog = settings.add_provider()
    dialog.form.name_edit.setText("")
    dialog.save()
    assert "name" in dialog.error_label.text()
    before = _config_text(main_window)
    dialog.form.name_edit.setText("bad")
    dialog.form.url_edit.setText("ftp://nowhere")
    dialog.form.model_combo.setEditText("m")
    dialog.save()
    qtbot.waitUntil(lambda: dialog.error_label.text() != "", timeout=5_000)
    assert _config_text(main_window) == before


def test_theme_and_font_size_apply_at_once_and_are_saved(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog
) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    window_colour = app.palette().color(QPalette.ColorRole.Window)
    assert window_colour.lightness() > 128  # the fixture config says light
    settings.theme_buttons["dark"].setChecked(True)
    assert app.palette().color(QPalette.ColorRole.Window).lightness() < 64
    settings.font_spin.setValue(14)
    assert app.font().pointSize() == 14
    qtbot.waitUntil(lambda: "font_size: 14" in _config_text(main_window), timeout=5_000)
    assert "theme: dark" in _config_text(main_window)
    settings.theme_buttons["light"].setChecked(True)
    settings.font_spin.setValue(11)
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 128
    qtbot.waitUntil(lambda: "theme: light" in _config_text(main_window), timeout=5_000)


def test_behaviour_settings(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog
) -> None:
    settings.send_key_combo.setCurrentIndex(settings.send_key_combo.findData("ctrl_enter"))
    settings.auto_lock_spin.setValue(5)
    session = main_window.session
    assert session.config.config.ui.send_key == "ctrl_enter"
    left = session.seconds_until_idle_lock()
    assert left is not None and 290 < left <= 300
    qtbot.waitUntil(lambda: "auto_lock_minutes: 5" in _config_text(main_window), timeout=5_000)
    assert "send_key: ctrl_enter" in _config_text(main_window)


def test_change_passphrase(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    run_async: Callable[..., Any],
) -> None:
    settings.tabs.setCurrentIndex(3)
    kinds = [settings.slot_tree.topLevelItem(i).text(0) for i in range(2)]
    assert kinds == ["Passphrase", "Recovery code"]
    dialog = settings.change_passphrase()
    dialog.current_edit.setText(QT_PASSPHRASE)
    dialog.fields.passphrase_edit.setText("new violet harbour ninety")
    dialog.fields.confirm_edit.setText("different")
    dialog.change()
    assert "differ" in dialog.error_label.text()
    dialog.fields.confirm_edit.setText("new violet harbour ninety")
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.change()
    assert "changed" in settings.status_label.text()

    session = main_window.session
    main_window.lock(confirm=False)
    with pytest.raises(WrongSecretError):
        run_async(session.unlock_with_passphrase(QT_PASSPHRASE))
    run_async(session.unlock_with_passphrase("new violet harbour ninety"))
    assert session.is_unlocked


def test_regenerate_recovery_code_and_slots(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog
) -> None:
    settings.regenerate_recovery_code(confirm=False)
    qtbot.waitUntil(lambda: hasattr(settings, "recovery_dialog"), timeout=10_000)
    dialog = settings.recovery_dialog
    assert len(dialog.code_widget.code_view.toPlainText().splitlines()) == 4
    ok = dialog.buttons.buttons()[0]
    assert not ok.isEnabled()
    dialog.code_widget.stored_check.setChecked(True)
    assert ok.isEnabled()
    dialog.accept()

    # The last slot left cannot be removed; the vault says why.
    settings.slot_tree.setCurrentItem(settings.slot_tree.topLevelItem(1))
    settings.remove_selected_slot(confirm=False)
    qtbot.waitUntil(lambda: settings.slot_tree.topLevelItemCount() == 1, timeout=5_000)
    settings.slot_tree.setCurrentItem(settings.slot_tree.topLevelItem(0))
    settings.remove_selected_slot(confirm=False)
    qtbot.waitUntil(lambda: settings.status_label.property("role") == "error", timeout=5_000)
    assert settings.slot_tree.topLevelItemCount() == 1

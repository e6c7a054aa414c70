"""Settings, Security page: changing the passphrase asks for the current one, weak ones need
"Use anyway", key rotation (with the chats reopened), removal warnings and rotation, and
the Standard-only keychain unlock with "Open Private chats"."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.errors import WrongSecretError
from app.tiers import Tier
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from app.vault import DatabaseDamagedError, Vault
from tests.qt.conftest import QT_PASSPHRASE

NEW = "new violet harbour ninety"
WEAK = "qwerty123"


@pytest.fixture
def settings(main_window: MainWindow) -> SettingsDialog:
    dialog = main_window.open_settings()
    assert dialog is not None
    dialog.tabs.setCurrentIndex(3)
    return dialog


def _chat_titles(main_window: MainWindow) -> list[str]:
    area = main_window.chat_area
    assert area is not None
    model = area.sidebar.model
    return [str(model.index(row, 0).data()) for row in range(model.rowCount())]


def test_change_passphrase_asks_for_the_current_one(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog, run_async: Callable[..., Any]
) -> None:
    dialog = settings.change_passphrase()
    assert dialog.needs_current and dialog.current_edit.isVisibleTo(dialog)
    dialog.fields.passphrase_edit.setText(NEW)
    dialog.fields.confirm_edit.setText(NEW)
    dialog.change()
    assert dialog.error_label.text() == "Type your current passphrase."
    dialog.current_edit.setText("not the passphrase")
    dialog.change()
    qtbot.waitUntil(lambda: "does not open" in dialog.error_label.text(), timeout=10_000)
    assert dialog.current_edit.hasFocus() or dialog.current_edit.selectedText()
    dialog.current_edit.setText(QT_PASSPHRASE)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.change()
    assert "changed" in settings.status_label.text()
    session = main_window.session
    with pytest.raises(WrongSecretError):
        run_async(session.verify_passphrase(QT_PASSPHRASE))
    run_async(session.verify_passphrase(NEW))


def test_a_weak_new_passphrase_needs_use_anyway(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog, run_async: Callable[..., Any]
) -> None:
    dialog = settings.change_passphrase()
    dialog.current_edit.setText(QT_PASSPHRASE)
    dialog.fields.passphrase_edit.setText(WEAK)
    dialog.fields.confirm_edit.setText(WEAK)
    dialog.change()
    qtbot.waitUntil(lambda: "Weak passphrase" in dialog.error_label.text(), timeout=10_000)
    assert "Use this passphrase anyway" in dialog.error_label.text()
    assert dialog.fields.use_anyway_button.isVisibleTo(dialog)
    run_async(main_window.session.verify_passphrase(QT_PASSPHRASE))  # unchanged
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.fields.use_anyway_button.click()
    run_async(main_window.session.verify_passphrase(WEAK))


def test_rotate_keys_reopens_the_chats_and_shows_the_new_code(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    run_async: Callable[..., Any],
    qt_profile: Path,
    tmp_path: Path,
) -> None:
    session = main_window.session
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        chat = run_async(session.service.create_chat(tier))
        run_async(session.service.rename(chat.id, f"{tier} chat"))
    qtbot.waitUntil(lambda: len(_chat_titles(main_window)) == 2, timeout=5_000)
    old_json = (qt_profile / "vault.json").read_bytes()

    dialog = settings.rotate_keys()
    assert "Every way to unlock is kept" not in dialog.drops_label.text()  # nothing typed
    dialog.passphrase_edit.setText(QT_PASSPHRASE)
    assert "Every way to unlock is kept" in dialog.drops_label.text()
    dialog.rotate_button.click()
    qtbot.waitUntil(lambda: hasattr(settings, "recovery_dialog"), timeout=30_000)
    assert len(settings.recovery_dialog.code_widget.code_view.toPlainText().splitlines()) == 4
    assert "Keys rotated" in settings.status_label.text()
    qtbot.waitUntil(lambda: len(_chat_titles(main_window)) == 2, timeout=5_000)
    assert session.is_unlocked
    assert [db.generation for db in Vault.status(qt_profile).databases] == [2, 2]

    # An old copy of vault.json with the old passphrase opens nothing current.
    copy = tmp_path / "copy"
    shutil.copytree(qt_profile, copy, ignore=shutil.ignore_patterns("vault.lock"))
    (copy / "vault.json").write_bytes(old_json)
    with Vault.open(copy) as vault:
        vault.unlock_with_passphrase(QT_PASSPHRASE)
        with pytest.raises(DatabaseDamagedError):
            vault.connect(Tier.STANDARD)


def test_rotation_with_a_wrong_passphrase_changes_nothing(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog, qt_profile: Path
) -> None:
    before = (qt_profile / "vault.json").read_bytes()
    assert settings.start_rotation("not the passphrase", confirm=False)
    qtbot.waitUntil(lambda: settings.status_label.property("role") == "error", timeout=10_000)
    assert "does not open" in settings.status_label.text()
    assert (qt_profile / "vault.json").read_bytes() == before
    assert main_window.session.is_unlocked


def test_removing_the_only_passphrase_warns_and_can_rotate(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog, qt_profile: Path
) -> None:
    passphrase_item = settings.slot_tree.topLevelItem(0)
    recovery_item = settings.slot_tree.topLevelItem(1)
    assert passphrase_item.text(0) == "Passphrase"
    assert passphrase_item.text(2) == "Standard and Private"
    slot_id = str(passphrase_item.data(0, 256))
    warning = settings.removal_warning(slot_id)
    assert warning is not None and "only the recovery code" in warning
    assert settings.removal_warning(str(recovery_item.data(0, 256))) is None

    asked: list[tuple[str, ...]] = []
    settings.rotate_keys = lambda drop=(): asked.append(drop)  # type: ignore[method-assign,assignment,misc]
    settings.slot_tree.setCurrentItem(recovery_item)
    settings.remove_selected_slot(confirm=False, rotate=True)
    assert asked == [(str(recovery_item.data(0, 256)),)]  # remove-and-rotate asks first


def test_remove_and_rotate_drops_the_slot(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog, qt_profile: Path
) -> None:
    recovery_item = settings.slot_tree.topLevelItem(1)
    recovery_id = str(recovery_item.data(0, 256))
    dialog = settings.rotate_keys(drop=(recovery_id,))
    dialog.passphrase_edit.setText(QT_PASSPHRASE)
    assert "Recovery code" in dialog.drops_label.text()
    dialog.rotate_button.click()
    qtbot.waitUntil(lambda: "Keys rotated" in settings.status_label.text(), timeout=30_000)
    assert [slot.kind for slot in main_window.session.slots()] == ["passphrase"]
    assert not hasattr(settings, "recovery_dialog")  # the recovery code was the one removed


def test_keychain_unlock_keeps_private_closed_until_the_passphrase(
    qtbot: QtBot, main_window: MainWindow, run_async: Callable[..., Any]
) -> None:
    session = main_window.session
    chat = run_async(session.service.create_chat(Tier.PRIVATE))
    run_async(session.service.rename(chat.id, "private plans"))
    info = run_async(session.add_keychain())
    assert not info.opens_everything
    main_window.lock(confirm=False)
    page = main_window.unlock_page
    page.refresh()
    with qtbot.waitSignal(main_window.unlocked, timeout=10_000):
        page.keychain_button.click()
    assert session.locked_tiers == (Tier.PRIVATE,)
    qtbot.waitUntil(lambda: main_window.chat_area is not None, timeout=5_000)
    assert "private plans" not in _chat_titles(main_window)

    settings = main_window.open_settings()
    assert settings is not None
    assert "Private chats are closed" in settings.tiers_label.text()
    assert not settings.open_private_button.isHidden()
    assert not settings.rotate_button.isEnabled()
    settings.open_private_chats("not the passphrase", confirm=False)
    qtbot.waitUntil(lambda: settings.status_label.property("role") == "error", timeout=10_000)
    assert session.locked_tiers == (Tier.PRIVATE,)
    settings.open_private_chats(QT_PASSPHRASE, confirm=False)
    qtbot.waitUntil(lambda: session.locked_tiers == (), timeout=10_000)
    qtbot.waitUntil(lambda: "private plans" in _chat_titles(main_window), timeout=5_000)
    assert settings.open_private_button.isHidden()
    assert settings.rotate_button.isEnabled()


def test_ephemeral_chats_are_asked_about_before_a_rotation(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    qt_profile: Path,
) -> None:
    run_async(main_window.session.service.create_chat(Tier.EPHEMERAL))
    area = main_window.chat_area
    assert area is not None
    qtbot.waitUntil(area.has_ephemeral_chats, timeout=5_000)
    asked: list[str] = []

    def cancel(*args: Any, **kwargs: Any) -> QMessageBox.StandardButton:
        asked.append(str(args[2]))
        return QMessageBox.StandardButton.Cancel

    monkeypatch.setattr(QMessageBox, "warning", cancel)
    before = (qt_profile / "vault.json").read_bytes()
    assert not settings.start_rotation(QT_PASSPHRASE)
    assert asked and "Ephemeral chats" in asked[0]
    assert (qt_profile / "vault.json").read_bytes() == before
    assert area.has_ephemeral_chats()
    main_window.lock(confirm=False)  # the Ephemeral chat goes: closing asks nothing


def test_change_passphrase_with_rotation(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    run_async: Callable[..., Any],
    qt_profile: Path,
    tmp_path: Path,
) -> None:
    old_json = (qt_profile / "vault.json").read_bytes()
    dialog = settings.change_passphrase()
    dialog.current_edit.setText(QT_PASSPHRASE)
    dialog.fields.passphrase_edit.setText(NEW)
    dialog.fields.confirm_edit.setText(NEW)
    dialog.rotate_check.setChecked(True)
    dialog.change()
    qtbot.waitUntil(lambda: hasattr(settings, "recovery_dialog"), timeout=30_000)
    assert "Keys rotated" in settings.status_label.text()
    session = main_window.session
    assert session.is_unlocked
    run_async(session.verify_passphrase(NEW))
    copy = tmp_path / "copy"
    shutil.copytree(qt_profile, copy, ignore=shutil.ignore_patterns("vault.lock"))
    (copy / "vault.json").write_bytes(old_json)
    with Vault.open(copy) as vault:
        vault.unlock_with_passphrase(QT_PASSPHRASE)
        with pytest.raises(DatabaseDamagedError):
            vault.connect(Tier.PRIVATE)

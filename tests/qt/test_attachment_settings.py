"""The Attachments settings page (issue 14): size limit, inline threshold, embedding models.

Saving writes ``.config.yml`` with its comments kept and the running service uses the new
values at once (its ``check_attachments`` answers with the new limit; the composer's chips
are checked again); invalid values get an inline message and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.chat.attachments import AttachmentSettings, NewAttachment
from app.config import load_config
from app.ui import settings as settings_module
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from tests.qt.drivers import WAIT, start_chat

MB = 1024 * 1024


@pytest.fixture
def settings(main_window: MainWindow) -> SettingsDialog:
    dialog = main_window.open_settings("attachments")
    assert dialog is not None
    return dialog


def _config_text(main_window: MainWindow) -> str:
    path = main_window.session.config.path
    assert path is not None
    return path.read_text(encoding="utf-8")


def _save(qtbot: QtBot, settings: SettingsDialog) -> None:
    with qtbot.waitSignal(settings.attachment_settings_changed, timeout=WAIT):
        qtbot.mouseClick(settings.save_attachments_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(settings.save_attachments_button.isEnabled, timeout=WAIT)


def test_the_page_shows_the_current_values_with_accessible_names(
    settings: SettingsDialog,
) -> None:
    assert settings.tabs.currentWidget() is settings.attachments_page
    assert settings.tabs.tabText(settings.tabs.currentIndex()) == "A&ttachments"
    assert settings.max_size_edit.text() == "50"
    assert settings.inline_edit.text() == "12000"
    assert settings.max_size_edit.accessibleName() == "Maximum attachment size in MB"
    combo = settings.embedding_combos["tiny"]
    assert combo.currentText() == ""
    assert combo.accessibleName() == "Embedding model of tiny"
    line = combo.lineEdit()
    assert line is not None and "keyword search only" in line.placeholderText()
    # tiny is on-prem: no cloud hint.
    assert "never used for Private" not in _texts(settings)


def _texts(settings: SettingsDialog) -> str:
    from PySide6.QtWidgets import QLabel

    return " ".join(label.text() for label in settings.attachments_page.findChildren(QLabel))


def test_saving_writes_the_file_and_the_service_uses_it_at_once(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    run_async: Callable[..., Any],
    tmp_path: Path,
) -> None:
    session = main_window.session
    chat = run_async(session.service.create_chat())
    big = tmp_path / "big.txt"
    big.write_text("word " * (3 * MB // 5 + 10))
    files = [NewAttachment.from_path(big)]
    (before,) = run_async(session.service.check_attachments(chat.id, files))
    assert before.problem is None

    settings.max_size_edit.setText("2")
    settings.inline_edit.setText("0")
    settings.embedding_combos["tiny"].setEditText("nomic-embed-text")
    _save(qtbot, settings)

    text = _config_text(main_window)
    assert "max_size_mb: 2" in text
    assert "inline_max_chars: 0" in text
    assert "embedding_model: nomic-embed-text" in text
    assert "# the tiny local model" in text  # comments survive
    assert "# Test config" in text
    assert session.config.path is not None
    reread = load_config(session.config.path, {}).config
    assert reread.attachments.max_size_mb == 2
    assert reread.llm("tiny").embedding_model == "nomic-embed-text"
    # The running service has the new values (no restart).
    service_config = session.service.config.config
    assert service_config.llm("tiny").embedding_model == "nomic-embed-text"
    live = AttachmentSettings.of(service_config)
    assert live.max_bytes == 2 * MB
    assert live.inline_max_chars == 0  # 0 means "always search", not "the default"
    (after,) = run_async(session.service.check_attachments(chat.id, files))
    assert after.problem is not None and "2" in after.problem

    # Emptying the field removes the key: keyword search only.
    settings.embedding_combos["tiny"].setEditText("")
    settings.max_size_edit.setText("50")
    _save(qtbot, settings)
    assert "embedding_model" not in _config_text(main_window)
    assert session.service.config.config.llm("tiny").embedding_model is None
    assert "saved" in settings.status_label.text()


SIZE_HELP = "Largest file: enter a whole number from 1 to 1024."
INLINE_HELP = "Send whole up to: enter a whole number from 0 to 1000000."
INVALID = [
    ("max_size_edit", "0", SIZE_HELP),
    ("max_size_edit", "2.5", SIZE_HELP),
    ("max_size_edit", "", SIZE_HELP),
    ("inline_edit", "-1", INLINE_HELP),
    ("inline_edit", "lots", INLINE_HELP),
]


def test_an_invalid_value_is_explained_inline_and_nothing_is_written(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog
) -> None:
    before = _config_text(main_window)
    for field, value, message in INVALID:  # (one window for all: cheaper than parametrize)
        edit = getattr(settings, field)
        good = edit.text()
        edit.setText(value)
        qtbot.mouseClick(settings.save_attachments_button, Qt.MouseButton.LeftButton)
        assert settings.attachments_error.text() == message, value
        assert not settings.attachments_error.isHidden()
        assert settings.attachments_error.property("role") == "error"
        assert edit.hasFocus() or not settings.isActiveWindow()  # where to fix it
        assert _config_text(main_window) == before
        assert main_window.session.config.config.attachments.max_size_mb == 50
        edit.setText(good)
    # Fixed and saved with Enter: the message goes.
    settings.max_size_edit.setText("7")
    with qtbot.waitSignal(settings.attachment_settings_changed, timeout=WAIT):
        qtbot.keyClick(settings.max_size_edit, Qt.Key.Key_Return)
    assert settings.attachments_error.isHidden()
    assert main_window.session.config.config.attachments.max_size_mb == 7


def test_an_embedding_model_of_spaces_is_none(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog
) -> None:
    before = _config_text(main_window)
    settings.embedding_combos["tiny"].setEditText("   ")
    settings.max_size_edit.setText("3")
    _save(qtbot, settings)
    assert "embedding_model" not in _config_text(main_window)
    assert _config_text(main_window) != before


def test_list_models_fills_the_choices_and_keeps_what_was_typed(
    qtbot: QtBot, settings: SettingsDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def models(entry: dict[str, Any], api_key: str | None = None) -> list[str]:
        calls.append(str(entry["base_url"]))
        return ["tiny-llama", "nomic-embed-text"]

    monkeypatch.setattr(settings_module, "test_connection", models)
    combo = settings.embedding_combos["tiny"]
    combo.setEditText("my-embedder")
    button = settings.list_embedding_buttons["tiny"]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: combo.count() == 2 and button.isEnabled(), timeout=WAIT)
    assert [combo.itemText(i) for i in range(combo.count())] == ["tiny-llama", "nomic-embed-text"]
    assert combo.currentText() == "my-embedder"
    assert len(calls) == 1


def test_a_failed_listing_says_what_to_do(qtbot: QtBot, settings: SettingsDialog) -> None:
    # tiny's server is a closed port: the real listing fails at once.
    button = settings.list_embedding_buttons["tiny"]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not settings.attachments_error.isHidden(), timeout=WAIT)
    qtbot.waitUntil(button.isEnabled, timeout=WAIT)
    assert "127.0.0.1" in settings.attachments_error.text()


def test_a_cloud_provider_gets_the_private_tier_hint(
    qtbot: QtBot, main_window: MainWindow, run_async: Callable[..., Any]
) -> None:
    session = main_window.session
    config = run_async(
        session.save_provider(
            {
                "provider_name": "cloud",
                "type": "openai",
                "base_url": "https://api.example.com/v1",
                "model_name": "gpt-example",
                "locality": "paid_cloud",
            },
            api_key=None,
            key_place=None,
            replaces=None,
            make_default=False,
        )
    )
    session.apply_config(config)
    dialog = main_window.open_settings("attachments")
    assert dialog is not None
    assert set(dialog.embedding_combos) == {"tiny", "cloud"}
    assert "never used for Private chats" in _texts(dialog)


def test_files_waiting_in_the_composer_are_checked_again_with_the_new_limit(
    qtbot: QtBot, main_window: MainWindow, tmp_path: Path
) -> None:
    area = main_window.chat_area
    assert area is not None
    start_chat(qtbot, area)
    big = tmp_path / "big.txt"
    big.write_text("word " * (3 * MB // 5 + 10))
    area.composer.add_files([big])
    (chip,) = area.composer.chips.chips()
    qtbot.waitUntil(lambda: chip.kind is not None, timeout=WAIT)  # checked: it can go
    assert chip.problem is None
    dialog = main_window.open_settings("attachments")
    assert dialog is not None
    dialog.max_size_edit.setText("2")
    _save(qtbot, dialog)
    qtbot.waitUntil(lambda: chip.problem is not None, timeout=WAIT)
    assert not area.composer.send_button.isEnabled()
    assert "big.txt" in area.composer.reason.text()

"""File > Import chats… (Ctrl+Shift+O) with the real service: a ChatGPT export .zip comes
in with its image, the summary shows, the first chat opens; a zip bomb imports nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.store.models import Tier
from app.ui import import_chats as import_module
from app.ui.help import shortcut_rows
from tests.qt.drivers import WAIT
from tests.qt.test_attachments_ui import files_part
from tests.unit.store.test_transfer_attachments import (
    PICTURE_MEMBERS,
    export_zip,
    picture_chat,
)


def patch_dialogs(
    monkeypatch: pytest.MonkeyPatch, path: Path | str, tier: Tier | None = Tier.STANDARD
) -> list[str]:
    asked: list[str] = []

    def choose_file(_parent: Any) -> str:
        asked.append("file")
        return str(path)

    def choose_tier(_parent: Any) -> Tier | None:
        asked.append("tier")
        return tier

    monkeypatch.setattr(import_module, "choose_import_file", choose_file)
    monkeypatch.setattr(import_module, "choose_import_tier", choose_tier)
    return asked


def summary_box(window: Any) -> QMessageBox | None:
    box = window.findChild(QMessageBox, "importSummary")
    return box if isinstance(box, QMessageBox) and box.isVisible() else None


def chat_count(window: Any) -> int:
    return int(window.chat_area.sidebar.model.rowCount())


def test_a_chatgpt_zip_with_an_image_imports_from_the_window(
    qtbot: QtBot, main_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = main_window
    area = window.chat_area
    export = tmp_path / "chatgpt-export.zip"
    export.write_bytes(export_zip(picture_chat(), PICTURE_MEMBERS))
    asked = patch_dialogs(monkeypatch, export)
    assert "Import chats" in dict(shortcut_rows(window.all_actions()))
    assert window.import_action.shortcut().toString() == "Ctrl+Shift+O"
    window.import_action.trigger()
    assert asked == ["file", "tier"]
    # While it runs, the cursor says so and a second import is not started.
    assert QApplication.overrideCursor() is not None
    assert not import_module.import_chats(area, window.session.service)
    assert asked == ["file", "tier"]
    qtbot.waitUntil(lambda: summary_box(window) is not None, timeout=WAIT)
    box = summary_box(window)
    assert box is not None
    assert box.text().startswith("chatgpt-export.zip: Imported 1 chat(s), 4 attachment(s)")
    assert QApplication.overrideCursor() is None  # the busy cursor ended
    assert window.error_banner.text == ""
    # The chat is listed, selected and open, and its photo shows as a card.
    qtbot.waitUntil(lambda: chat_count(window) == 1, timeout=WAIT)
    qtbot.waitUntil(lambda: area.chat_view.chat is not None, timeout=WAIT)
    chat = area.chat_view.chat
    assert chat.title == "Pictures" and chat.tier == Tier.STANDARD
    assert area.sidebar.current_chat_id == chat.id
    first = next(iter(area.chat_view.model.attachments))
    qtbot.waitUntil(lambda: files_part(area, first) is not None, timeout=WAIT)
    assert "photo.png" in files_part(area, first).document.toPlainText()
    # Locking closes the summary (it names the file) with the rest; a thumbnail asked
    # for just before (the request is queued) is then not read from the locked vault.
    notes = next(f for f in area.chat_view.model.attachments[first] if f.name == "notes.txt")
    assert not area.chat_view.list.message_delegate.has_thumbnail(notes.id)
    area.chat_view.list.message_delegate.thumbnail_wanted.emit(notes.id)
    assert window.lock()
    QApplication.processEvents()
    qtbot.waitUntil(lambda: summary_box(window) is None, timeout=WAIT)


def test_a_zip_bomb_is_refused_in_the_window_and_imports_nothing(
    qtbot: QtBot, main_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = main_window
    bomb = {**PICTURE_MEMBERS, "file-AbC123-photo.png": bytes(20 * 1024 * 1024)}
    export = tmp_path / "export.zip"
    export.write_bytes(export_zip(picture_chat(), bomb))
    patch_dialogs(monkeypatch, export, Tier.PRIVATE)
    window.import_action.trigger()
    qtbot.waitUntil(lambda: window.error_banner.text != "", timeout=WAIT)
    text = window.error_banner.text
    assert text.startswith(f"{export} was not imported: one file in it would grow")
    assert "zip bomb" in text and text.endswith("Nothing was imported")
    assert summary_box(window) is None
    assert QApplication.overrideCursor() is None
    assert chat_count(window) == 0
    # A cancelled file dialog asks nothing more and starts nothing.
    asked = patch_dialogs(monkeypatch, "", Tier.STANDARD)
    assert not import_module.import_chats(window.chat_area, window.session.service)
    assert asked == ["file"]


def test_an_unreadable_file_says_so_and_imports_nothing(
    qtbot: QtBot, main_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = main_window
    patch_dialogs(monkeypatch, tmp_path / "gone.json")
    window.import_action.trigger()
    qtbot.waitUntil(lambda: window.error_banner.text != "", timeout=WAIT)
    assert "gone.json" in window.error_banner.text
    assert window.error_banner.text.endswith("Nothing was imported.")
    assert chat_count(window) == 0


def test_the_tier_question_offers_standard_first_and_never_ephemeral(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, list[str], int]] = []

    def get_item(*args: Any) -> tuple[str, bool]:
        _parent, _title, label, items, current, _editable = args
        asked.append((label, list(items), current))
        return items[-1], True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    assert import_module.choose_import_tier(None) == Tier.PRIVATE  # type: ignore[arg-type]
    ((label, items, current),) = asked
    assert items == ["Standard", "Private"] and current == 0
    assert "Not Ephemeral" in label and "\n" not in label

"""The Help menu: shortcuts overlay (Ctrl+/), user guide (F1), Report a problem, About."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from app import __version__
from app.ui import help as help_module
from app.ui.help import WIDGET_KEYS, ShortcutsDialog, UserGuideDialog, scrub, shortcut_rows
from app.ui.main_window import MainWindow
from tests.qt.drivers import press

ROOT = Path(__file__).resolve().parents[2]


def open_dialog(qtbot: QtBot, kind: type) -> object:
    found: list[object] = []

    def shown() -> bool:
        found[:] = [w for w in QApplication.topLevelWidgets() if isinstance(w, kind)]
        return any(w.isVisible() for w in found)  # type: ignore[attr-defined]

    qtbot.waitUntil(shown, timeout=10_000)
    return next(w for w in found if w.isVisible())  # type: ignore[attr-defined]


def test_ctrl_slash_lists_every_shortcut(qtbot: QtBot, main_window: MainWindow) -> None:
    press(qtbot, main_window, "Ctrl+/")
    dialog = open_dialog(qtbot, ShortcutsDialog)
    assert isinstance(dialog, ShortcutsDialog)
    rows = dict(dialog.rows)
    # Generated from the registered actions: every action with a key is there.
    for action in main_window.actions():
        for key in action.shortcuts():
            text = key.toString(QKeySequence.SequenceFormat.NativeText)
            assert any(text in keys.split(", ") for keys in rows.values()), text
    assert rows["Quit"] == "Ctrl+Q"
    assert rows["Show sidebar"] == "Ctrl+B"
    assert rows["Show chat settings"] == "Ctrl+Shift+B"
    assert rows["Keyboard shortcuts"] == "Ctrl+/"
    assert rows["Stop answering"] == "Esc"  # not an action's key, named in its text
    assert rows["Import chats"] == "Ctrl+Shift+O"
    # Keys widgets handle themselves are listed too, as the widgets have them.
    assert rows["Attach files (in the message box)"] == "Ctrl+Shift+A"
    area = main_window.chat_area
    assert area is not None
    attach = area.composer.attach_button.shortcut()
    assert attach.toString(QKeySequence.SequenceFormat.NativeText) == "Ctrl+Shift+A"
    assert rows["Open the file card that has the focus"] == "Enter, Space"
    assert rows["File card menu: Open, Save as"] == "Menu, Shift+F10"
    assert rows["Remove the attachment chip that has the focus"] == "Delete"
    dialog.filter.setText("chat sett")
    assert dialog.visible_rows() == [("Show chat settings", "Ctrl+Shift+B")]
    dialog.close()


def test_the_user_guide_lists_every_shortcut(main_window: MainWindow) -> None:
    """docs/user-guide.md's table cannot fall behind the window's shortcuts."""
    guide = (ROOT / "docs" / "user-guide.md").read_text(encoding="utf-8")
    table = guide.split("## Keyboard shortcuts", 1)[1].split("\n## ", 1)[0]
    for what, keys in [*shortcut_rows(main_window.all_actions()), *WIDGET_KEYS]:
        for key in keys.split(", "):
            assert re.search(rf"(^|[\s|/,]){re.escape(key)}($|[\s|/,])", table, re.M), (what, key)


def test_f1_opens_the_user_guide(qtbot: QtBot, main_window: MainWindow) -> None:
    press(qtbot, main_window, "F1")
    dialog = open_dialog(qtbot, UserGuideDialog)
    assert isinstance(dialog, UserGuideDialog)
    assert "Hushchat user guide" in dialog.browser.toPlainText()
    assert dialog.browser.source().toLocalFile().endswith("docs/user-guide.md")
    # The screenshots are scaled to the browser's width: no sideways scrolling for them.
    widths = []
    block = dialog.browser.document().begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            char_format = fragments.fragment().charFormat()
            if char_format.isImageFormat():
                widths.append(char_format.toImageFormat().width())
            fragments += 1
        block = block.next()
    assert len(widths) >= 5
    assert 0 < max(widths) <= dialog.browser.viewport().width()
    dialog.close()


def test_a_missing_user_guide_says_where_it_looked(
    main_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "user-guide.md"
    monkeypatch.setattr(help_module, "user_guide_candidates", lambda: [missing])
    said: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _p, title, text: said.append(text))
    main_window.user_guide_action.trigger()
    assert said and str(missing) in said[0]
    assert "HUSHCHAT_DOCS_DIR" in said[0]


SECRETS = (
    "sk-live0123456789abcdefXYZ",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "3f9a1c0e5b7d2a4f6e8c0b1d3a5f7e9c",  # a hex key
    "hunter2-is-my-passphrase",
)


def test_report_a_problem_copies_versions_and_scrubbed_log(
    qtbot: QtBot, main_window: MainWindow
) -> None:
    logger = logging.getLogger("app.test_help")
    logger.warning("provider refused: HTTP 401 with Authorization: Bearer %s", SECRETS[0])
    logger.warning("token=%s from %s", SECRETS[1], Path.home() / "profile")
    logger.warning("sync key %s rejected; passphrase: %s", SECRETS[2], SECRETS[3])
    main_window.report_action.trigger()
    text = QGuiApplication.clipboard().text()
    assert f"Hushchat {__version__}" in text
    for part in ("Platform:", "Qt ", "PySide6 ", "Python "):
        assert part in text
    assert "provider refused: HTTP 401" in text
    assert "sync key [REDACTED] rejected" in text
    assert "~" in text and str(Path.home()) + "/" not in text
    for secret in SECRETS:
        assert secret not in text
    box = open_dialog(qtbot, QMessageBox)
    assert isinstance(box, QMessageBox)
    assert "clipboard" in box.text()
    box.close()


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("GET /v1/models 200 in 0.2 s", "GET /v1/models 200 in 0.2 s"),
        ("chat 0193a7c2-5e1b-7c3d-9f00-1234567890ab opened", "opened"),
        ("x-api-key: abcdefgh12345678", "x-api-key: [REDACTED]"),
        ("api_key=sk-ant-api03-abcdefghijkl", "api_key=[REDACTED]"),
        ("wrapped with QmFzZTY0IGxvb2tzIGxpa2UgdGhpcyAxMjM0NQ==", "wrapped with [REDACTED]"),
    ],
)
def test_scrub(line: str, kept: str) -> None:
    assert kept in scrub(line)


def test_about(main_window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "about", lambda _p, _t, text: shown.append(text))
    main_window.about_action.trigger()
    assert __version__ in shown[0]
    help_menu = main_window.menuBar().actions()[-1].menu()
    texts = [a.text() for a in help_menu.actions() if not a.isSeparator()]  # type: ignore[union-attr]
    assert texts == [
        "&User guide",
        "&Keyboard shortcuts",
        "&Report a problem…",
        "&About Hushchat",
    ]
    assert main_window.shortcuts_action.shortcutContext() == Qt.ShortcutContext.WindowShortcut

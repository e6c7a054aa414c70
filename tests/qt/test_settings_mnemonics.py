"""Every Alt+letter in Settings does one thing: on each page, the letters of the page's
visible buttons and labels, the tab bar's and the dialog's own buttons are all different
(Qt gives an ambiguous letter to no one, or cycles focus among them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QAbstractButton, QLabel, QTabBar, QWidget
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from tests.qt.conftest import closed_port_url, write_config
from tests.qt.fake_speaker import ENGINES


def _mnemonic(text: str) -> str | None:
    """The letter after a single ``&`` (``&&`` is a literal ampersand)."""
    index = 0
    while True:
        index = text.find("&", index)
        if index < 0 or index + 1 >= len(text):
            return None
        if text[index + 1] == "&":
            index += 2
            continue
        return text[index + 1].lower()


def _letters(root: QWidget, dialog: SettingsDialog) -> list[tuple[str, str]]:
    found = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisibleTo(dialog):
            continue
        labelled = isinstance(widget, QLabel) and widget.buddy() is not None
        if not (isinstance(widget, QAbstractButton) or labelled):
            continue
        text = widget.text()  # type: ignore[attr-defined]
        letter = _mnemonic(text)
        if letter is not None:
            found.append((letter, text))
    return found


@pytest.fixture(params=[ENGINES, ""], ids=["voices", "no-voice"])
def qt_config(request: pytest.FixtureRequest, tmp_path: Path) -> LoadedConfig:
    config = write_config(tmp_path / "config.yml", closed_port_url(), extra=request.param)
    return load_config(config, {})


def test_no_two_things_on_a_settings_page_share_an_alt_letter(
    qtbot: QtBot, main_window: MainWindow
) -> None:
    dialog = main_window.open_settings()
    assert dialog is not None
    tab_bar = dialog.tabs.findChild(QTabBar)
    assert tab_bar is not None
    tabs = [(_mnemonic(tab_bar.tabText(i)), tab_bar.tabText(i)) for i in range(tab_bar.count())]
    clashes = []
    for index in range(dialog.tabs.count()):
        dialog.tabs.setCurrentIndex(index)
        qtbot.wait(10)
        page = dialog.tabs.widget(index)
        letters = [*tabs, *_letters(page, dialog)]
        seen: dict[str, str] = {}
        for letter, text in letters:
            if letter is None:
                continue
            if letter in seen:
                clashes.append(f"{tab_bar.tabText(index)}: {seen[letter]!r} and {text!r}")
            seen[letter] = text
    assert clashes == [], "\n".join(clashes)

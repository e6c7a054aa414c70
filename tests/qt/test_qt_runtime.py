"""Guards on the Qt binding itself."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot


def test_void_qt_calls_do_not_drop_references_to_none(qtbot: QtBot) -> None:
    """PySide6 6.12.0 on Python 3.11 lost a reference to None on every void call,
    aborting the interpreter after some 27,000 calls; pyproject pins it out."""
    widget = QWidget()
    qtbot.addWidget(widget)
    before_none, before_true = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(500):
        widget.setEnabled(True)
        widget.update()
    assert sys.getrefcount(None) - before_none >= -5
    assert sys.getrefcount(True) - before_true >= -5

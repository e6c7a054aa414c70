"""Security-key prompts ("touch your key", "enter the PIN") shown by the UI thread.

``SecurityKey`` calls its ``KeyPrompts`` from the worker thread that talks to the
key; this bridge forwards each call to the UI thread with a queued signal and, for
the PIN, waits until the user answered the dialog.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QInputDialog, QLineEdit, QWidget

__all__ = ["QtKeyPrompts"]

_PIN_WAIT_SECONDS = 120.0


class QtKeyPrompts(QObject):
    """``app.vault.security_key.KeyPrompts`` for the window."""

    touch_requested = Signal()
    _pin_asked = Signal()

    def __init__(self, dialog_parent: QWidget) -> None:
        super().__init__(dialog_parent)
        self._dialog_parent = dialog_parent
        self._answered = threading.Event()
        self._pin: str | None = None
        self._pin_asked.connect(self._ask_pin, Qt.ConnectionType.QueuedConnection)

    def prompt_touch(self) -> None:
        """Called by the key's thread: ask the user to touch the key (non-blocking)."""
        self.touch_requested.emit()

    def request_pin(self) -> str | None:
        """Called by the key's thread: show the PIN dialog on the UI thread and wait."""
        self._answered.clear()
        self._pin = None
        self._pin_asked.emit()
        self._answered.wait(_PIN_WAIT_SECONDS)
        return self._pin

    @Slot()
    def _ask_pin(self) -> None:
        pin, ok = QInputDialog.getText(
            self._dialog_parent,
            "Security key PIN",
            "Enter the PIN of your security key:",
            QLineEdit.EchoMode.Password,
        )
        self._pin = pin if ok and pin else None
        self._answered.set()

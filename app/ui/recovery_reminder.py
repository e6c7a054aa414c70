"""The reminder shown while storing the recovery code is put off.

First run lets someone choose "Remind me later" on the recovery-code page, so the first
chat is not held up by it. The code is not kept anywhere (a code in the vault would open
the vault to whoever learns the passphrase once, even after it is changed): the session
only remembers that storing it was put off (:meth:`Session.postpone_recovery_code`).
While that is so, the window shows :class:`RecoveryReminderBanner` above the chats after
every unlock. "Show a new recovery code…" makes a new code (the unseen one stops
working) and shows it in :class:`RecoveryCodeDialog`, whose OK is enabled only once "I
have stored it" is ticked; OK ends the reminders.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui import tasks
from app.ui.first_run import RecoveryCodeWidget
from app.ui.layout import set_role

if TYPE_CHECKING:
    from app.session import Session
    from app.vault import RecoveryCode

__all__ = ["RecoveryCodeDialog", "RecoveryReminderBanner"]

log = logging.getLogger(__name__)

REMINDER_TEXT = (
    "You have not stored a recovery code yet. Without it, a forgotten passphrase locks "
    "your Private chats away for good."
)


class RecoveryCodeDialog(QDialog):
    """A new recovery code; OK once "I have stored it" is ticked."""

    def __init__(self, code: RecoveryCode, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Your recovery code")
        self.recovery = RecoveryCodeWidget()
        self.recovery.set_code(code)
        intro = QLabel(
            "Store this code offline: on paper or in a password manager. It replaces the "
            "code shown when the vault was created, which no longer works."
        )
        intro.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setEnabled(False)
        self.recovery.confirmed.connect(self.ok_button.setEnabled)
        self.buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.recovery)
        layout.addWidget(self.buttons)

    def done(self, result: int) -> None:
        """The code leaves the screen (and memory held by the widget) on close."""
        self.recovery.set_code(None)
        super().done(result)


class RecoveryReminderBanner(QFrame):
    """Above the chats while storing the recovery code is put off."""

    #: The reminder ended (the new code was confirmed stored).
    stored = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recoveryReminder")
        self.setAccessibleName("Recovery code reminder")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.session: Session | None = None
        #: The dialog showing a new code (for tests).
        self.dialog: RecoveryCodeDialog | None = None
        self.text_label = QLabel(REMINDER_TEXT)
        self.text_label.setWordWrap(True)
        set_role(self.text_label, "error")
        self.show_button = QPushButton("Show a new recovery &code…")
        self.show_button.setAccessibleName("Show a new recovery code to store")
        self.show_button.clicked.connect(self.new_code)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.addWidget(self.text_label, 1)
        layout.addWidget(self.show_button)
        self.hide()

    def check(self, session: Session) -> None:
        """After an unlock: show the reminder if storing the code is still put off."""
        self.session = session
        tasks.start_for(
            self,
            session.recovery_code_unconfirmed(),
            on_done=self.setVisible,
            on_error=self._failed,
        )

    def new_code(self) -> None:
        """Make a new code and show it; the reminder ends when it is confirmed stored."""
        session = self.session
        if session is None:
            return
        self.show_button.setEnabled(False)
        tasks.start_for(self, session.new_recovery_code(), self._show_code, self._failed)

    def _show_code(self, code: RecoveryCode) -> None:
        self.show_button.setEnabled(True)
        set_role(self.text_label, "error")
        self.text_label.setText(REMINDER_TEXT)
        self.dialog = RecoveryCodeDialog(code, self)
        self.dialog.accepted.connect(self._confirmed)
        self.dialog.finished.connect(self._dialog_closed)
        self.dialog.open()

    def _dialog_closed(self) -> None:
        if self.dialog is not None and shiboken6.isValid(self.dialog):
            self.dialog.deleteLater()
        self.dialog = None

    def _confirmed(self) -> None:
        session = self.session
        if session is None:
            return
        tasks.start_for(self, session.confirm_recovery_code_stored(), self._ended, self._failed)

    def _ended(self, _result: None) -> None:
        self.hide()
        self.stored.emit()

    def _failed(self, error: BaseException) -> None:
        self.show_button.setEnabled(True)
        self.text_label.setText(f"{REMINDER_TEXT} ({error} Try again.)")
        self.show()

    def reset(self) -> None:
        """Locked: hidden until the next unlock's check."""
        self.session = None
        if self.dialog is not None and shiboken6.isValid(self.dialog):
            self.dialog.reject()
        self.hide()

"""The composer: where the user writes a message, and the Send/Stop button.

Enter sends and Shift+Enter starts a new line, or, with ``send_key: ctrl_enter``
in the config's ``ui`` section, Ctrl+Enter sends and Enter starts a new line.
When the chat's tier allows no provider, the composer is disabled and says why.
Editing a sent message reuses the composer: a bar names what is being edited
and Escape cancels.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["ComposerWidget", "MessageEdit"]

SEND_KEYS = ("enter", "ctrl_enter")


class MessageEdit(QPlainTextEdit):
    """A plain-text editor that sends on the configured key."""

    send_requested = Signal()
    cancel_requested = Signal()
    typed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.send_key = "enter"
        self.setTabChangesFocus(True)
        self.setPlaceholderText("Message")
        self.setAccessibleName("Message")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.document().contentsChanged.connect(self.updateGeometry)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        self.typed.emit()
        key = event.key()
        modifiers = event.modifiers()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shift = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
            ctrl = bool(modifiers & Qt.KeyboardModifier.ControlModifier)
            sends = ctrl if self.send_key == "ctrl_enter" else not shift and not ctrl
            if sends or (ctrl and self.send_key == "enter"):
                self.send_requested.emit()
                return
            self.insertPlainText("\n")
            return
        if key == Qt.Key.Key_Escape:
            self.cancel_requested.emit()
        super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        # Grow with the text from 2 to 10 lines, then scroll.
        lines = max(2, min(10, self.document().blockCount()))
        height = self.fontMetrics().lineSpacing() * lines + 2 * self.frameWidth() + 12
        return QSize(super().sizeHint().width(), height)


class ComposerWidget(QWidget):
    """Message editor, Send/Stop button, and the reason when sending is not possible."""

    submitted = Signal(str)  # a new message
    edit_submitted = Signal(str, str)  # message id, new text
    stop_requested = Signal()
    activity = Signal()

    def __init__(self, parent: QWidget | None = None, *, send_key: str = "enter") -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.editor = MessageEdit(self)
        self.editor.send_key = send_key if send_key in SEND_KEYS else "enter"
        self.send_button = QPushButton("Send", self)
        self.send_button.setAccessibleName("Send message")
        self.send_button.setDefault(False)
        self.send_button.setAutoDefault(False)
        self.reason = QLabel(self)
        self.reason.setObjectName("composerReason")
        self.reason.setWordWrap(True)
        self.reason.setAccessibleName("Why sending is not possible")
        self.reason.hide()
        self.edit_bar = QWidget(self)
        self.edit_label = QLabel("Editing a message — Enter resends it as a new version", self)
        cancel = QToolButton(self)
        cancel.setText("Cancel")
        cancel.setAccessibleName("Cancel editing")
        cancel.clicked.connect(self.cancel_edit)
        bar = QHBoxLayout(self.edit_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.edit_label, 1)
        bar.addWidget(cancel)
        self.edit_bar.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.editor, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 10)
        layout.setSpacing(4)
        layout.addWidget(self.edit_bar)
        layout.addWidget(self.reason)
        layout.addLayout(row)

        self._editing: str | None = None
        self._streaming = False
        self._blocked_reason = ""
        self.editor.send_requested.connect(self.submit)
        self.editor.cancel_requested.connect(self._escape)
        self.editor.typed.connect(self.activity)
        self.send_button.clicked.connect(self._button_clicked)
        self._update_hint()

    # state -------------------------------------------------------------------------------

    @property
    def editing_message_id(self) -> str | None:
        return self._editing

    @property
    def is_blocked(self) -> bool:
        """Whether sending is impossible (see ``reason``)."""
        return bool(self._blocked_reason)

    def set_send_key(self, send_key: str) -> None:
        self.editor.send_key = send_key if send_key in SEND_KEYS else "enter"
        self._update_hint()

    def set_blocked(self, reason: str) -> None:
        """Disable sending with a visible ``reason`` ("" enables it again)."""
        self._blocked_reason = reason
        self.reason.setText(reason)
        self.reason.setVisible(bool(reason))
        self.editor.setEnabled(not reason)
        self._update_button()

    def set_streaming(self, streaming: bool) -> None:
        """While an answer streams the button stops it instead of sending."""
        self._streaming = streaming
        self._update_button()

    def start_edit(self, message_id: str, text: str) -> None:
        """Put a sent message into the editor; submitting saves it as a new version."""
        self._editing = message_id
        self.editor.setPlainText(text)
        self.edit_bar.show()
        self.editor.setFocus()
        cursor = self.editor.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.editor.setTextCursor(cursor)

    def cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.editor.clear()
        self.edit_bar.hide()

    def clear(self) -> None:
        """Drop the draft (on lock)."""
        self._editing = None
        self.edit_bar.hide()
        self.editor.clear()

    # actions -----------------------------------------------------------------------------

    def submit(self) -> None:
        """Send the text (or the edit) unless it is empty, blocked or an answer streams."""
        text = self.editor.toPlainText()
        if not text.strip() or self._blocked_reason or self._streaming:
            return
        self.activity.emit()
        editing, self._editing = self._editing, None
        self.editor.clear()
        self.edit_bar.hide()
        if editing is not None:
            self.edit_submitted.emit(editing, text)
        else:
            self.submitted.emit(text)

    def _escape(self) -> None:
        if self._editing is not None:
            self.cancel_edit()
        elif self._streaming:
            self.stop_requested.emit()

    def _button_clicked(self) -> None:
        if self._streaming:
            self.stop_requested.emit()
        else:
            self.submit()

    def _update_button(self) -> None:
        if self._streaming:
            self.send_button.setText("Stop")
            self.send_button.setAccessibleName("Stop the answer")
            self.send_button.setEnabled(True)
        else:
            self.send_button.setText("Send")
            self.send_button.setAccessibleName("Send message")
            self.send_button.setEnabled(not self._blocked_reason)

    def _update_hint(self) -> None:
        if self.editor.send_key == "ctrl_enter":
            hint = "Message — Ctrl+Enter sends, Enter starts a new line"
        else:
            hint = "Message — Enter sends, Shift+Enter starts a new line"
        self.editor.setPlaceholderText(hint)
        self.editor.setToolTip(hint)

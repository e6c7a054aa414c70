"""The composer: where the user writes a message, and the Send/Stop button.

Enter sends and Shift+Enter starts a new line, or, with ``send_key: ctrl_enter``
in the config's ``ui`` section, Ctrl+Enter sends and Enter starts a new line.
When the chat's tier allows no provider, the composer is disabled and says why.
Editing a sent message reuses the composer: a bar names what is being edited
and Escape cancels.

Under the editor a context meter estimates what sending the draft would take of the
model's context window (system prompt, memory, the history that fits, the draft and
the room kept for the answer) and names where the window's size comes from (the
server or the configuration). A draft that cannot fit is not sent: the meter says by
how much to shorten it and offers to choose another model. Sending clears the editor
as an undoable edit (Ctrl+Z brings the text back), and a send refused afterwards
gives the text back.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor
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

from app.chat.context import ContextUse

__all__ = ["ComposerWidget", "MessageEdit"]

SEND_KEYS = ("enter", "ctrl_enter")
METER_DELAY_MS = 150


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
    choose_model_requested = Signal()  # the fix for a draft too long for the model
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
        self.meter = QLabel(self)
        self.meter.setObjectName("contextMeter")
        self.meter.setWordWrap(True)
        self.meter.setAccessibleName("Context use")
        # Its line is always there: the meter appearing or going must not change the
        # composer's height (that would lay the whole message list out again).
        self.meter.setMinimumHeight(self.meter.fontMetrics().lineSpacing())
        self.choose_model = QToolButton(self)
        self.choose_model.setText("Choose another &model")
        self.choose_model.setAccessibleName("Choose a model with a larger context")
        self.choose_model.clicked.connect(self.choose_model_requested)
        self.choose_model.hide()
        meter_row = QHBoxLayout()
        meter_row.setContentsMargins(0, 0, 0, 0)
        meter_row.addWidget(self.meter, 1)
        meter_row.addWidget(self.choose_model, 0, Qt.AlignmentFlag.AlignTop)
        self._context: ContextUse | None = None
        self._meter_timer = QTimer(self)
        self._meter_timer.setSingleShot(True)
        self._meter_timer.setInterval(METER_DELAY_MS)
        self._meter_timer.timeout.connect(self._update_meter)

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
        layout.addLayout(meter_row)

        self._editing: str | None = None
        self._streaming = False
        self._blocked_reason = ""
        self.editor.send_requested.connect(self.submit)
        self.editor.cancel_requested.connect(self._escape)
        self.editor.typed.connect(self.activity)
        self.editor.textChanged.connect(self._meter_timer.start)
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

    @property
    def context_use(self) -> ContextUse | None:
        """What the draft would take of the context window (None: not known yet)."""
        if self._context is None:
            return None
        return self._context.with_draft(self.editor.toPlainText())

    def set_context(self, use: ContextUse | None) -> None:
        """The chat's context use without a draft (None: unknown; the meter is hidden)."""
        self._context = use
        self._update_meter()

    def restore(self, text: str) -> None:
        """Give back ``text`` of a send that was refused, unless something new was typed."""
        if not text or self.editor.toPlainText().strip():
            return
        cursor = self.editor.textCursor()
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.insertText(text)
        self.editor.setTextCursor(cursor)
        self.editor.setFocus()

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
        self.set_context(None)

    # actions -----------------------------------------------------------------------------

    def submit(self) -> None:
        """Send the text (or the edit) unless it is empty, blocked or an answer streams."""
        text = self.editor.toPlainText()
        if not text.strip() or self._blocked_reason or self._streaming:
            return
        self.activity.emit()
        use = self.context_use
        if use is not None and not use.fits:
            self._update_meter()  # says why, and the text stays where it is
            return
        editing, self._editing = self._editing, None
        # An undoable edit (not clear()): Ctrl+Z brings the text back.
        cursor = self.editor.textCursor()
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.removeSelectedText()
        self.edit_bar.hide()
        if editing is not None:
            self.edit_submitted.emit(editing, text)
        else:
            self.submitted.emit(text)

    def give_back(self, text: str) -> None:
        """Put a message that could not be sent back in the box (undoably), unless
        something new was typed meanwhile (then Ctrl+Z still brings it back)."""
        if self.editor.toPlainText():
            return
        self.editor.textCursor().insertText(text)
        self.editor.setFocus(Qt.FocusReason.OtherFocusReason)

    def _update_meter(self) -> None:
        self._meter_timer.stop()
        use = self.context_use
        if use is None:
            self.meter.clear()
            self.meter.setToolTip("")
            self.choose_model.hide()
            return
        parts = [
            ("system prompt", use.system),
            ("memory", use.memory),
            ("history", use.history),
            ("this message", use.draft),
            ("kept for the answer", use.reserve),
        ]
        breakdown = ", ".join(f"{name} {tokens:,}" for name, tokens in parts if tokens)
        if use.more_older:
            dropped = "; the oldest messages will not be sent"
        elif use.dropped:
            plural = "s" if use.dropped != 1 else ""
            dropped = f"; {use.dropped:,} older message{plural} will not be sent"
        else:
            dropped = ""
        self.meter.setToolTip(
            f"Estimated tokens: {breakdown}{dropped}. Context: {use.window.describe()}."
        )
        if use.fits:
            self.meter.setStyleSheet("")
            self.meter.setText(
                f"Context: about {min(use.total, use.window.size):,} of "
                f"{use.window.describe()}{dropped}"
            )
            self.choose_model.hide()
            return
        self.meter.setStyleSheet("color: #c01c28;")
        self.meter.setText(use.overflow_message())
        self.choose_model.show()

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

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

Files are attached with the paperclip button (Ctrl+Shift+A), by dropping them on the
composer (or the chat), or by pasting them; a pasted image is attached as PNG bytes held
in memory. Each waits as a chip above the editor; a chip the chat service refuses
(``check_attachments``) says why and keeps Send disabled until it is removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QKeyEvent, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QFileDialog,
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
from app.ui.attachments import (
    AttachmentChipsWidget,
    files_of,
    new_attachment,
    png_bytes,
    size_of,
)
from app.ui.theme import icon

__all__ = ["ComposerWidget", "MessageEdit"]

SEND_KEYS = ("enter", "ctrl_enter")
METER_DELAY_MS = 150
ATTACH_SHORTCUT = "Ctrl+Shift+A"


def _choose_files(parent: QWidget) -> list[str]:
    """Ask for files to attach (a seam: tests replace it or the dialog)."""
    names, _ = QFileDialog.getOpenFileNames(parent, "Attach files")
    return list(names)


class MessageEdit(QPlainTextEdit):
    """A plain-text editor that sends on the configured key."""

    send_requested = Signal()
    cancel_requested = Signal()
    typed = Signal()
    files_pasted = Signal(list)  # Paths dropped or pasted into the editor
    image_pasted = Signal(QImage)

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

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return bool(files_of(source)) or source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        # Files and images are attached, not pasted as their path or as nothing.
        files = files_of(source)
        if files:
            self.files_pasted.emit(files)
            return
        if source.hasImage() and not source.hasText():
            image = source.imageData()
            if isinstance(image, QImage) and not image.isNull():
                self.image_pasted.emit(image)
                return
        super().insertFromMimeData(source)

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
    #: A message with files: its text and the ``NewAttachment`` list (instead of
    #: ``submitted``).
    submitted_with_attachments = Signal(str, list)
    #: The chips changed: the window asks the service to check them (``set_checks``).
    attachments_changed = Signal()

    def __init__(self, parent: QWidget | None = None, *, send_key: str = "enter") -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.editor = MessageEdit(self)
        self.editor.send_key = send_key if send_key in SEND_KEYS else "enter"
        self.attach_button = QToolButton(self)
        self.attach_button.setIcon(icon("paperclip"))
        self.attach_button.setAutoRaise(True)
        self.attach_button.setAccessibleName("Attach files")
        self.attach_button.setToolTip(f"Attach files ({ATTACH_SHORTCUT})")
        self.attach_button.setShortcut(QKeySequence(ATTACH_SHORTCUT))
        self.attach_button.clicked.connect(self.choose_files)
        self.chips = AttachmentChipsWidget(self)
        self.chips.changed.connect(self._chips_changed)
        self._pasted_images = 0
        self.setAcceptDrops(True)
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
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.editor, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 10)
        layout.setSpacing(4)
        layout.addWidget(self.edit_bar)
        layout.addWidget(self.reason)
        layout.addWidget(self.chips)
        layout.addLayout(row)
        layout.addLayout(meter_row)

        self._editing: str | None = None
        self._streaming = False
        self._blocked_reason = ""
        self.editor.send_requested.connect(self.submit)
        self.editor.cancel_requested.connect(self._escape)
        self.editor.typed.connect(self.activity)
        self.editor.textChanged.connect(self._meter_timer.start)
        self.editor.files_pasted.connect(self.add_files)
        self.editor.image_pasted.connect(self.add_image)
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
        self.editor.setEnabled(not reason)
        self.attach_button.setEnabled(not reason)
        self._show_reason()
        self._update_button()

    def _show_reason(self) -> None:
        reason = self._blocked_reason or self.chips.problem()
        self.reason.setText(reason)
        self.reason.setVisible(bool(reason))

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
        """Drop the draft and its attachments (on lock)."""
        self._editing = None
        self.edit_bar.hide()
        self.editor.clear()
        if self.chips.attachments():
            self.chips.take()
        self.set_context(None)

    # attachments -------------------------------------------------------------------------

    def attachments(self) -> list[Any]:
        """The ``NewAttachment`` of every chip, in order."""
        return self.chips.attachments()

    def choose_files(self) -> None:
        """Ask for files (several at once) and attach them."""
        if self._blocked_reason:
            return
        self.add_files([Path(name) for name in _choose_files(self)])

    def add_files(self, paths: list[Path]) -> None:
        """Attach the files ``paths`` (each as a chip; checked by the window)."""
        if self._blocked_reason:
            return
        for path in paths:
            attachment = new_attachment(path.name, path=path)
            self.chips.add(attachment, size_of(attachment))
        self.editor.setFocus(Qt.FocusReason.OtherFocusReason)

    def add_image(self, image: QImage) -> None:
        """Attach a pasted image as PNG bytes (in memory; never a temporary file)."""
        if self._blocked_reason:
            return
        self._pasted_images += 1
        data = png_bytes(image)
        name = f"pasted-image-{self._pasted_images}.png"
        self.chips.add(new_attachment(name, data=data), len(data))

    def set_checks(self, attachments: list[Any], checks: list[Any]) -> None:
        """Show the service's ``check_attachments`` answer for ``attachments`` (ignored
        when the chips changed since)."""
        if self.chips.set_checks(attachments, checks):
            self._show_reason()
            self._update_button()

    def give_back_attachments(self, attachments: list[Any]) -> None:
        """Put the files of a message that could not be sent back as chips."""
        present = self.chips.attachments()
        for attachment in attachments:
            if attachment not in present:
                self.chips.add(attachment, size_of(attachment))

    def _chips_changed(self) -> None:
        self._show_reason()
        self._update_button()
        self.attachments_changed.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if files_of(event.mimeData()) and not self._blocked_reason:
            event.acceptProposedAction()
            return
        super().dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        files = files_of(event.mimeData())
        if files and not self._blocked_reason:
            event.acceptProposedAction()
            self.add_files(files)
            return
        super().dropEvent(event)

    # actions -----------------------------------------------------------------------------

    def submit(self) -> None:
        """Send the text (or the edit) unless it is empty, blocked or an answer streams."""
        text = self.editor.toPlainText()
        files = self.chips.attachments() if self._editing is None else []
        if (not text.strip() and not files) or self._blocked_reason or self._streaming:
            return
        if files and self.chips.problem():
            return  # the reason is shown, and Send is disabled
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
        elif files:
            self.chips.take()
            self.submitted_with_attachments.emit(text, files)
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
            self.send_button.setEnabled(not self._blocked_reason and not self.chips.problem())

    def _update_hint(self) -> None:
        if self.editor.send_key == "ctrl_enter":
            hint = "Message — Ctrl+Enter sends, Enter starts a new line"
        else:
            hint = "Message — Enter sends, Shift+Enter starts a new line"
        self.editor.setPlaceholderText(hint)
        self.editor.setToolTip(hint)

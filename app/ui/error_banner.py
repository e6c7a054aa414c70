"""Errors the user must see: a banner above the chats that stays until dismissed.

The status bar is for passing information ("Message copied"); a failure that loses or
refuses something (a chat that could not be read, moved, renamed or deleted, a search
that failed) goes here, where the user looks, with what to do in its text. The widgets
emit ``error_message(str)``; the window shows the newest error here (a repeat of the same
text counts it instead of stacking it).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.ui.layout import set_role

__all__ = ["Banner", "ErrorBanner"]


class Banner(QFrame):
    """A line above the chats with a Dismiss button (Esc while it has the focus)."""

    def __init__(self, name: str, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setAccessibleName(what)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text_label = QLabel()
        self.text_label.setWordWrap(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dismiss_button = QPushButton("&Dismiss")
        self.dismiss_button.setAccessibleName(f"Dismiss the {what.lower()}")
        self.dismiss_button.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.addWidget(self.text_label, 1)
        layout.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignTop)

    def dismiss(self) -> None:
        """Hide the banner."""
        self.hide()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.dismiss()
            return
        super().keyPressEvent(event)


class ErrorBanner(Banner):
    """One error with a Dismiss button (Esc while it has the focus)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("errorBanner", "Error", parent)
        set_role(self.text_label, "error")
        self._text = ""
        self._repeats = 0
        self.hide()

    @property
    def text(self) -> str:
        """The error shown (empty when none)."""
        return self._text if self.isVisibleTo(self.parentWidget() or self) else ""

    def show_error(self, text: str) -> None:
        """Show ``text``; the same error again shows how many times it happened."""
        if self.isVisibleTo(self.parentWidget() or self) and text == self._text:
            self._repeats += 1
            self.text_label.setText(f"{text} (\N{MULTIPLICATION SIGN}{self._repeats + 1})")
        else:
            self._text, self._repeats = text, 0
            self.text_label.setText(text)
        self.show()

    def dismiss(self) -> None:
        """Hide the error (also on lock: it may name a chat)."""
        self._text, self._repeats = "", 0
        self.text_label.clear()
        self.hide()

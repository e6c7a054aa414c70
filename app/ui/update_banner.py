"""The link to a newer release, shown when the opt-in update check found one (app/updates.py).

Informational: a line with a link and Dismiss, above the chats. Following the link opens the
release page in the browser; nothing is downloaded by the app.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.updates import Release

__all__ = ["UpdateBanner"]


class UpdateBanner(QFrame):
    """ "Hushchat X is available" with a link to its release page."""

    def __init__(self, release: Release, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("updateBanner")
        self.setAccessibleName("Update available")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.release = release
        self.text_label = QLabel(
            f"Hushchat {escape(release.version)} is available: "
            f'<a href="{escape(release.url, quote=True)}">read what is new and download it</a>.'
        )
        self.text_label.setTextFormat(Qt.TextFormat.RichText)
        self.text_label.setOpenExternalLinks(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.dismiss_button = QPushButton("&Dismiss")
        self.dismiss_button.setAccessibleName("Dismiss the update notice")
        self.dismiss_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.addWidget(self.text_label, 1)
        layout.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignTop)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.hide()
            return
        super().keyPressEvent(event)

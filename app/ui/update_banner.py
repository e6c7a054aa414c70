"""The link to a newer release, shown when the opt-in update check found one (app/updates.py).

Informational: a line with a link and Dismiss, above the chats. Following the link opens the
release page in the browser; nothing is downloaded by the app.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from app.ui.error_banner import Banner
from app.updates import Release

__all__ = ["UpdateBanner"]


class UpdateBanner(Banner):
    """ "Hushchat X is available" with a link to its release page."""

    def __init__(self, release: Release, parent: QWidget | None = None) -> None:
        super().__init__("updateBanner", "Update notice", parent)
        self.release = release
        self.text_label.setTextFormat(Qt.TextFormat.RichText)
        self.text_label.setText(
            f"Hushchat {escape(release.version)} is available: "
            f'<a href="{escape(release.url, quote=True)}">read what is new and download it</a>.'
        )
        self.text_label.setOpenExternalLinks(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

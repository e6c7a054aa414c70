"""File > Import chats… (Ctrl+Shift+O): another app's export (or ours) into a tier.

The file and the tier are asked through two seams (tests replace them); the import runs
in the background (:func:`app.ui.tasks.start`) under a busy cursor, then its summary
shows in a box (and the status bar), the list is read again and the first imported chat
opens. A file that cannot be imported (not an export, a zip bomb, unreadable: a
``UsageError``) shows one message in the window's error banner; nothing was imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog, QMessageBox, QWidget

from app.errors import InternalError
from app.store.models import Tier
from app.ui import tasks
from app.ui.sidebar import TIER_LABELS

if TYPE_CHECKING:
    from app.chat.service import ChatService, ImportedChats
    from app.ui.chat_area import ChatAreaWidget

__all__ = [
    "IMPORT_TIERS",
    "choose_import_file",
    "choose_import_tier",
    "import_chats",
]

log = logging.getLogger(__name__)

#: The tiers an import may go to: an Ephemeral chat would vanish at the next lock.
IMPORT_TIERS = (Tier.STANDARD, Tier.PRIVATE)
FILE_FILTER = "Chat exports (*.json *.zip)"
TIER_TEXT = (
    "Import the chats into which tier? (Not Ephemeral: those chats are gone at the next lock.)"
)


def _ask_file(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Import chats", "", FILE_FILTER)
    return path


def _ask_tier(parent: QWidget) -> Tier | None:
    labels = [TIER_LABELS[tier] for tier in IMPORT_TIERS]
    label, ok = QInputDialog.getItem(parent, "Import chats", TIER_TEXT, labels, 0, False)
    if not ok:
        return None
    return IMPORT_TIERS[labels.index(label)]


#: Asks for the export file ("": cancelled). A seam: tests replace it.
choose_import_file: Callable[[QWidget], str] = _ask_file
#: Asks for the tier (Standard first; ``None``: cancelled). A seam: tests replace it.
choose_import_tier: Callable[[QWidget], Tier | None] = _ask_tier

_BUSY = "_hushchat_importing"


def import_chats(
    area: ChatAreaWidget,
    service: ChatService,
    path: str | None = None,
    tier: Tier | None = None,
) -> bool:
    """Ask for a file and a tier (unless given), then import it in the background.

    Returns whether an import started (not when cancelled or one is still running)."""
    if area.property(_BUSY):
        area.status_message.emit("An import is still running.")
        return False
    area.activity.emit()
    if path is None:
        path = choose_import_file(area)
    if not path:
        return False
    if tier is None:
        tier = choose_import_tier(area)
    if tier is None:
        return False
    source = Path(path)
    area.setProperty(_BUSY, True)
    QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)
    area.status_message.emit(f"Importing {source.name}\N{HORIZONTAL ELLIPSIS}")

    def finish() -> bool:
        """End the busy state; whether the area is still there to report to."""
        QApplication.restoreOverrideCursor()
        if not shiboken6.isValid(area):
            return False
        area.setProperty(_BUSY, False)
        return True

    def done(chats: ImportedChats) -> None:
        if not finish():
            return
        summary = chats.summary()
        text = f"{source.name}: {summary[:1].upper()}{summary[1:]}."
        area.status_message.emit(text)
        box = QMessageBox(QMessageBox.Icon.Information, "Import chats", text, parent=area)
        box.setObjectName("importSummary")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        area.sidebar.load()
        if chats:
            area.open_chat(chats[0])

    def failed(error: BaseException) -> None:
        if not finish():
            return
        # An unexpected error was logged with its traceback by tasks.start already.
        text = str(error)
        if not isinstance(error, InternalError) and "nothing was imported" not in text.lower():
            text = f"{text.rstrip('.')}. Nothing was imported."
        area.status_message.emit(f"{source.name} was not imported.")
        area.error_message.emit(text)

    def cancelled() -> None:
        finish()

    # tasks.start, not start_for: the busy cursor must end even if the area is gone.
    tasks.start(
        service.import_file(source, fmt=None, tier=tier),
        on_done=done,
        on_error=failed,
        on_cancel=cancelled,
    )
    return True

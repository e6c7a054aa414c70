"""Recoveries of the account started on another device: the banner and its actions.

Someone who lost both the passphrase and the recovery code can get the Standard sync key
back from the server's escrow on a new device (``hushchat vault recover --server``, or the
unlock screen's "Recover Standard chats from my sync server"). The server tells the
account's other devices: every changes answer lists the recoveries in progress, which the
engine keeps in ``EngineStatus.recoveries``. While one started by ANOTHER device is
pending, the window shows :class:`RecoveryBanner` above the chats (non-modal): when it
started and when it can complete, with "Cancel it" (if it was not you), "Approve" (only
if it is you: it completes at once) and "Details" (Settings, Sync, which lists them too).

Both actions ask first, then call the server (``SyncClient.cancel_recovery`` /
``approve_recovery``) and fetch once so the list is current. Errors are said in the
banner; a bug is logged with its traceback by ``tasks``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QWidget,
)

from app.errors import HushchatError
from app.ui import tasks
from app.ui.layout import set_role

if TYPE_CHECKING:
    from app.session import Session
    from app.sync.protocol import RecoveryOut

__all__ = [
    "RecoveryBanner",
    "act_on_recovery",
    "confirm_recovery_action",
    "describe_recovery",
]

log = logging.getLogger(__name__)


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def describe_recovery(recovery: RecoveryOut) -> str:
    """One sentence: who started what, when, and when it can complete."""
    complete = (
        "it can complete now"
        if recovery.status == "ready"
        else f"it can complete at {_when(recovery.not_before)}"
    )
    return (
        f"A device started recovering your Standard chats on {_when(recovery.created_at)}; "
        f"{complete}."
    )


def confirm_recovery_action(parent: QWidget, action: str, recovery: RecoveryOut) -> bool:
    """Ask before cancelling or approving ``recovery``."""
    if action == "cancel":
        title = "Cancel the recovery"
        text = (
            f"{describe_recovery(recovery)}\n\nCancel it? If it was not you, cancel it: "
            "that device then gets nothing. If it was you on a new computer, that recovery "
            "stops and must be started again."
        )
    else:
        title = "Approve the recovery"
        text = (
            f"{describe_recovery(recovery)}\n\nApprove it only if this is you: the device "
            f"{recovery.device_id[:12]} then gets the key of your Standard chats at once, "
            "without waiting. Someone else who signed in to your account would read them."
        )
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


async def act_on_recovery(session: Session, action: str, recovery_id: str) -> str:
    """Cancel or approve on the server; fetch once so the list is current. Returns what
    to say."""
    sync = session.sync
    client = sync.client()
    if action == "cancel":
        done = await client.cancel_recovery(recovery_id)
        said = f"Recovery cancelled: the device {done.device_id[:12]} gets nothing."
    else:
        done = await client.approve_recovery(recovery_id)
        said = (
            f"Recovery approved: the device {done.device_id[:12]} can get your Standard chats now."
        )
    log.info("sync: recovery %s %s from this device", done.id, action)
    try:
        await sync.sync_now()  # the changes answer lists the recoveries in progress
    except HushchatError as error:  # done all the same; the next sync updates the list
        log.info("sync after a recovery %s failed: %s", action, type(error).__name__)
    return said


class RecoveryBanner(QFrame):
    """Above the chats while another device recovers the account's Standard chats."""

    #: "Details": open Settings, Sync.
    details_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recoveryBanner")
        self.setAccessibleName("Recovery notice")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.session: Session | None = None
        self.recoveries: list[RecoveryOut] = []
        self._handled: set[str] = set()
        self._busy = False
        self.text_label = QLabel()
        self.text_label.setWordWrap(True)
        self.text_label.setAccessibleName("Recovery in progress")
        set_role(self.text_label, "error")
        self.cancel_button = QPushButton("Ca&ncel it…")
        self.cancel_button.setAccessibleName("Cancel the recovery (it was not you)")
        self.cancel_button.clicked.connect(lambda: self.act("cancel"))
        self.approve_button = QPushButton("A&pprove…")
        self.approve_button.setAccessibleName("Approve the recovery (only if it is you)")
        self.approve_button.clicked.connect(lambda: self.act("approve"))
        self.details_button = QPushButton("&Details")
        self.details_button.setAccessibleName("Recovery details in Settings, Sync")
        self.details_button.clicked.connect(self.details_requested.emit)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.addWidget(self.text_label, 1)
        for button in (self.cancel_button, self.approve_button, self.details_button):
            layout.addWidget(button)
        self.hide()

    @property
    def current(self) -> RecoveryOut | None:
        shown = [r for r in self.recoveries if r.id not in self._handled]
        return shown[0] if shown else None

    def show_recoveries(self, session: Session | None, recoveries: list[RecoveryOut]) -> None:
        """The account's recoveries started on other devices (empty: hide)."""
        self.session = session
        self.recoveries = recoveries
        self._handled &= {r.id for r in recoveries}
        if not self._busy:
            self._show()

    def _show(self) -> None:
        recovery = self.current
        if recovery is None or self.session is None:
            self.hide()
            return
        text = describe_recovery(recovery)
        others = len([r for r in self.recoveries if r.id not in self._handled]) - 1
        if others > 0:
            text += f" ({others} more in Settings, Sync.)"
        self.text_label.setText(text)
        set_role(self.text_label, "error")
        for button in (self.cancel_button, self.approve_button, self.details_button):
            button.setEnabled(True)
            button.show()
        self.show()

    def act(self, action: str, *, confirm: bool = True) -> None:
        """Cancel or approve the recovery shown, after asking."""
        recovery, session = self.current, self.session
        if recovery is None or session is None or self._busy:
            return
        if confirm and not confirm_recovery_action(self, action, recovery):
            return
        self._busy = True
        for button in (self.cancel_button, self.approve_button):
            button.setEnabled(False)
        self.text_label.setText(
            "Cancelling the recovery…" if action == "cancel" else "Approving the recovery…"
        )

        def done(said: str) -> None:
            if not shiboken6.isValid(self):
                return
            self._busy = False
            self._handled.add(recovery.id)
            if self.current is not None:
                self._show()
                return
            self.text_label.setText(said)
            set_role(self.text_label, "hint")
            for button in (self.cancel_button, self.approve_button):
                button.hide()
            self.show()

        def failed(error: BaseException) -> None:
            if not shiboken6.isValid(self):
                return
            from app.ui.sync_settings import plain

            self._busy = False
            self._show()
            verb = "cancel" if action == "cancel" else "approve"
            self.text_label.setText(
                f"Could not {verb} the recovery: {plain(error)} Try again, or use Settings, Sync."
            )

        tasks.start(act_on_recovery(session, action, recovery.id), on_done=done, on_error=failed)

    def reset(self) -> None:
        """Locked: nothing is shown until the next status after the unlock."""
        self.session = None
        self.recoveries = []
        self._handled.clear()
        self._busy = False
        self.hide()

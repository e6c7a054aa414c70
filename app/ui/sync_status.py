"""The sync indicator of the main window's status bar, and the words for sync states.

``SyncStatusButton`` shows in a word how sync is doing (synced, syncing, offline, error,
signed out, paused, not set up; "Recovery pending", with a warning icon, while another
device recovers the account's Standard chats) with the reason in its tooltip; the window
feeds it from ``SyncService.add_status_listener`` and what it reads after an unlock or a
change made in Settings, Sync. Clicking it opens that page. It is hidden while the
profile is not signed in to a sync server. :func:`describe` gives the settings page the same words.

Loaded after an unlock (it imports the sync engine's types), never on the unlock path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QStyle, QToolButton, QWidget

from app.sync.engine import EngineStatus, SyncStatus
from app.sync.protocol import RecoveryOut

__all__ = ["SyncState", "SyncStatusButton", "describe", "without_exception_names"]

_OPEN = "Click to open Settings, Sync."

# "(ConnectError)" or ": ReadError." in the transport's messages: what failed, in words
# a person does not need (the log has them).
_NAMED = re.compile(r" \((?:[A-Z][a-z0-9]+){1,5}(?:Error|Exception|Timeout)\)")
_NAMED_END = re.compile(r": (?:[A-Z][a-z0-9]+){1,5}(?:Error|Exception|Timeout)\.$")


def without_exception_names(text: str) -> str:
    """``text`` without the exception class names some sync messages carry."""
    return _NAMED_END.sub(".", _NAMED.sub("", text))


@dataclass(frozen=True)
class SyncState:
    """What the window knows about sync: whether this profile is signed in, holds the
    account's keys (``set_up``), syncs in the background (``running``), the last status
    the engine reported since the unlock (None: none yet), and how many local changes
    wait to be sent (``waiting``, read when sync is not keeping up), and this device's id
    on the server (``device_id``: a recovery another device started is a warning)."""

    signed_in: bool = False
    set_up: bool = False
    running: bool = False
    status: EngineStatus | None = None
    waiting: int = 0
    device_id: str | None = None

    @property
    def recoveries(self) -> list[RecoveryOut]:
        """Recoveries of the account in progress that another device started."""
        if self.status is None or not self.signed_in:
            return []
        return [
            r
            for r in self.status.recoveries
            if r.status in ("pending", "ready") and r.device_id != (self.device_id or "")
        ]


def describe(state: SyncState) -> tuple[str, str]:
    """A word or two for the status bar and a sentence with the reason."""
    short, long = _describe(state)
    recoveries = state.recoveries
    if recoveries and short != "Signed out":
        first = recoveries[0]
        when = first.not_before.astimezone().strftime("%Y-%m-%d %H:%M")
        more = f" ({len(recoveries)} in all)" if len(recoveries) > 1 else ""
        return (
            "Recovery pending",
            f"A device started recovering your Standard chats from the sync server{more}; "
            f"it can complete at {when}. If it was not you, cancel it. (Sync: {short}.)",
        )
    if state.waiting and short not in ("Synced", "Syncing…", "Not syncing"):
        long += (
            f" {state.waiting} change{'s' if state.waiting != 1 else ''} on this device "
            f"wait{'s' if state.waiting == 1 else ''} to be sent."
        )
    return short, long


def _describe(state: SyncState) -> tuple[str, str]:
    if not state.signed_in:
        return "Not syncing", "This profile is not signed in to a sync server."
    status = state.status
    reason = ""
    if status is not None and status.reason:
        reason = f" ({without_exception_names(status.reason).rstrip('.')})"
    if status is not None and status.state == SyncStatus.SIGNED_OUT:
        return (
            "Signed out",
            f"The sync server no longer accepts this device{reason}. Sign in again; "
            "your chats stay on this device.",
        )
    if not state.set_up:
        return (
            "Sync not set up",
            "Signed in, but this device does not have the account's sync keys yet: "
            "finish setting up sync.",
        )
    if not state.running:
        return "Sync paused", "Sync is paused on this device: changes wait until you resume."
    if status is None or status.state == SyncStatus.SYNCING:
        return "Syncing…", "Sending and fetching changes."
    if status.state == SyncStatus.IDLE:
        return "Synced", "Your chats are up to date with the sync server."
    if status.state == SyncStatus.OFFLINE:
        return "Offline", f"The sync server cannot be reached{reason}; Hushchat keeps trying."
    return "Sync error", f"Syncing failed{reason}; Hushchat tries again in a while."


class SyncStatusButton(QToolButton):
    """The status bar's sync indicator (hidden while not signed in)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("syncStatus")
        self.setAutoRaise(True)
        self.state = SyncState()
        self.show_state(self.state)

    def show_state(self, state: SyncState) -> None:
        """Show ``state``: its words, the reason as tooltip; hidden when not signed in."""
        self.state = state
        short, long = describe(state)
        self.setText(short)
        self.setToolTip(f"{long}\n{_OPEN}")
        self.setAccessibleName(f"Sync: {short}")
        self.setAccessibleDescription(long)
        warning = bool(state.recoveries) and short == "Recovery pending"
        self.setProperty("warning", warning)
        if warning:
            self.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
            self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        else:
            self.setIcon(QIcon())
            self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setVisible(state.signed_in)

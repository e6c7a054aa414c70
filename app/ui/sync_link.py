"""Settings, Sync, "Link a device…": show a pairing code and wait for the new device.

The dialog asks ``app.sync.pairing.start_link`` for a code (the existing device reserves a
pairing session on the sync server), shows it large and selectable with the time it stays
valid, and waits for the new device with ``offer.wait()`` in a task on the event loop (the
window stays responsive). It then says "Linked <device>" or, in plain words, what went
wrong: a wrong code typed on the other computer, an expired code, a device that stopped
answering. Cancel, Escape or closing the dialog cancels the wait; ``LinkOffer.wait``
deletes (tombstones) the pairing records on the server whatever ends it, so the code can
no longer be used. "New code" starts again.

The code is a secret for its ten minutes: it is shown, never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QFont, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import HushchatError
from app.session import Session
from app.sync.pairing import (
    CODE_LIFETIME,
    LinkOffer,
    LinkResult,
    PairingError,
    PairingExpiredError,
    WrongPairingCodeError,
)
from app.ui import tasks
from app.ui.layout import set_role
from app.ui.sync_status import without_exception_names

if TYPE_CHECKING:
    from app.sync.account import SyncAccount

__all__ = ["LinkDeviceDialog", "pairing_message"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def pairing_message(error: BaseException, *, new_device: bool) -> str:
    """What a failed link means, said for the window (the library's messages name the
    CLI's commands)."""
    again = (
        "Show a new code on the other computer (Settings, Sync, Link a device…) and type it."
        if new_device
        else "Press New code and type the new one on the other computer."
    )
    if isinstance(error, WrongPairingCodeError):
        if new_device:
            return (
                "The code does not match the one the other computer shows (mistyped?): "
                f"nothing was received. {again}"
            )
        return (
            "The code typed on the other computer was not this one (or a message was "
            f"changed on the way): nothing was sent. {again}"
        )
    if isinstance(error, PairingExpiredError):
        if new_device:
            return (
                "This code expired, was cancelled or was used already (a code works once, "
                f"for ten minutes), or its number is wrong. {again}"
            )
        return f"The code expired (ten minutes) before a device used it. {again}"
    if isinstance(error, PairingError):
        return f"{_without_commands(without_exception_names(str(error)))} {again}"
    from app.ui.sync_settings import plain

    return plain(error)


def _without_commands(text: str) -> str:
    """``text`` without its sentences that name a command (the window has buttons)."""
    sentences = re.split(r"(?<=[.;])\s+", text.strip())
    kept = [
        sentence
        for sentence in sentences
        if "`hushchat" not in sentence and not sentence.lower().startswith("run the link")
    ]
    said = " ".join(kept).rstrip(";").strip()
    return said if not said or said.endswith((".", ")")) else f"{said}."


def _remaining(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s"


class LinkDeviceDialog(QDialog):
    """Show a pairing code; wait (off the UI thread) for the new device to use it."""

    def __init__(
        self,
        session: Session,
        account: SyncAccount | None,
        parent: QWidget | None = None,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: float = CODE_LIFETIME,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Link a device")
        self.setModal(True)
        self.session = session
        self.account = account
        self.clock = clock
        self.lifetime = lifetime
        self.offer: LinkOffer | None = None
        self.linked_name: str | None = None
        self._task: asyncio.Task[Any] | None = None

        server = account.server_url if account is not None else "your sync server"
        who = (account.email or account.account_id) if account is not None else "this account"
        intro = QLabel(
            f"On the new computer, sign in to {server} as {who}, then type this code: in "
            "Hushchat's first run, tick \u201cBring my chats from my sync server\u201d and "
            "choose \u201cLink from another computer with a pairing code\u201d; or in "
            "Settings, Sync, choose \u201cUse a pairing code instead of the "
            "passphrase\u201d. It gets your Standard and Private chats; no passphrase is "
            "typed there, and the server never sees the code."
        )
        intro.setWordWrap(True)
        intro.setProperty("role", "hint")
        self.code_label = QLabel("…")
        self.code_label.setAccessibleName("Pairing code")
        self.code_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.code_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = QFont(self.code_label.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.0) * 2)
        font.setBold(True)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.code_label.setFont(font)
        self.expiry_label = QLabel()
        self.expiry_label.setAccessibleName("How long the code is valid")
        self.expiry_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.expiry_label.setProperty("role", "hint")
        self.message_label = QLabel("Asking the sync server for a pairing code…")
        self.message_label.setWordWrap(True)
        self.message_label.setAccessibleName("Link status")
        self.message_label.setProperty("role", "hint")

        self.copy_button = QPushButton("C&opy code")
        self.copy_button.setAccessibleName("Copy the pairing code")
        self.copy_button.clicked.connect(self.copy_code)
        self.copy_button.setEnabled(False)
        self.new_code_button = QPushButton("&New code")
        self.new_code_button.setAccessibleName("Show a new pairing code")
        self.new_code_button.clicked.connect(self.start)
        self.new_code_button.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel linking; the code stops working")
        self.cancel_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.new_code_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.code_label)
        layout.addWidget(self.expiry_label)
        layout.addWidget(self.message_label)
        layout.addLayout(buttons)
        self.resize(520, self.sizeHint().height())

        self.countdown = QTimer(self)
        self.countdown.setInterval(1000)
        self.countdown.timeout.connect(self._tick)

    # ----------------------------------------------------------------- plumbing

    def _run(
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None],
        on_error: Callable[[BaseException], None],
    ) -> asyncio.Task[T]:
        def done(result: T) -> None:
            if shiboken6.isValid(self):
                on_done(result)

        def failed(error: BaseException) -> None:
            if shiboken6.isValid(self):
                on_error(error)

        task = tasks.start(coro, on_done=done, on_error=failed)
        self._task = task
        return task

    def _say(self, text: str, *, error: bool = False) -> None:
        set_role(self.message_label, "error" if error else "hint")
        self.message_label.setText(text)

    @property
    def waiting(self) -> bool:
        """A code is being asked for or offered (for tests)."""
        return self._task is not None and not self._task.done()

    # ----------------------------------------------------------------- the flow

    def start(self) -> None:
        """Ask the server for a code, show it, and wait for the new device."""
        from app.sync.pairing import start_link

        if self.waiting:
            return
        self.offer = None
        self.linked_name = None
        self.code_label.setText("…")
        self.expiry_label.setText("")
        self.copy_button.setEnabled(False)
        self.new_code_button.hide()
        self.cancel_button.setText("Cancel")
        self._say("Asking the sync server for a pairing code…")
        self._run(
            start_link(self.session.sync, clock=self.clock, lifetime=self.lifetime),
            self._offered,
            self._failed,
        )

    def _offered(self, offer: LinkOffer) -> None:
        self.offer = offer
        self.code_label.setText(str(offer.code))
        self.copy_button.setEnabled(True)
        self._tick()
        self.countdown.start()
        self._say("Waiting for the new computer to use the code…")
        self.cancel_button.setFocus()
        self._run(self._wait(offer), self._linked, self._failed)

    async def _wait(self, offer: LinkOffer) -> str:
        result: LinkResult = await offer.wait()
        name = f"the device {result.device_id[:12]}"
        try:
            for device in await self.session.sync.client().devices():
                if device.id == result.device_id and device.name:
                    name = f"\u201c{device.name}\u201d"
        except HushchatError as error:  # linked all the same; the name is only shown
            log.info("linked device's name not read: %s", type(error).__name__)
        return name

    def _tick(self) -> None:
        offer = self.offer
        if offer is None:
            self.countdown.stop()
            return
        left = offer.expires_at - self.clock()
        if left <= 0:
            self.expiry_label.setText("The code has expired.")
            self.countdown.stop()
            return
        self.expiry_label.setText(f"Works once, for {_remaining(left)} more.")

    def _ended(self) -> None:
        self.countdown.stop()
        self.copy_button.setEnabled(False)
        self.cancel_button.setText("Close")
        self.cancel_button.setAccessibleName("Close")

    def _linked(self, name: str) -> None:
        self._ended()
        self.linked_name = name
        self.expiry_label.setText("")
        self._say(f"Linked {name}: it holds this account's sync keys now and fetches your chats.")
        self.cancel_button.setFocus()

    def _failed(self, error: BaseException) -> None:
        self._ended()
        self.code_label.setText("—")
        self.expiry_label.setText("")
        self._say(pairing_message(error, new_device=False), error=True)
        self.new_code_button.show()
        self.new_code_button.setFocus()

    def copy_code(self) -> None:
        if self.offer is not None:
            clipboard = QGuiApplication.clipboard()
            clipboard.setText(str(self.offer.code))
            self._say("Copied. Waiting for the new computer to use the code…")

    # ----------------------------------------------------------------- closing

    def _stop(self) -> None:
        """Cancel the wait and withdraw the code (its pairing records are deleted)."""
        self.countdown.stop()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        offer, self.offer = self.offer, None
        if offer is not None:
            # A wait cancelled before it began never reaches its clean-up: withdraw the
            # code here too (deleting twice is harmless).
            tasks.start(offer.cancel())

    def reject(self) -> None:
        self._stop()
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._stop()
        super().closeEvent(event)

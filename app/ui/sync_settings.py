"""Settings, Sync: sign in to a sync server, set sync up or join it, devices, sign out.

The page shows one of four steps, as the profile's state says:

* **sign in**: the server address and this device's name; "Sign in" asks the server how
  (``app.sync.login.sign_in_methods``) and starts the browser flow, or shows the e-mail
  and password fields of a server with its own accounts; "Sign in with a code" when the
  identity provider offers it;
* **waiting**: "Continue in your browser…" (or the code to enter elsewhere) with Cancel,
  which cancels the sign-in task (its loopback listener closes);
* **keys**: after the sign-in, the first device of an account sets sync up (its vault
  passphrase, checked against the vault, and optionally the recovery code open the keys
  on other devices); another device joins with the account's passphrase, or with a
  pairing code a computer that syncs already shows ("Use a pairing code instead of the
  passphrase", ``app.sync.pairing.join_with_code``);
* **account**: the account, server and device name, the status, the account's devices
  with Revoke, "Link a device…" (a pairing code for a new computer, ``app.ui.sync_link``),
  the recoveries in progress started on other devices (Cancel/Approve), Sync now,
  Pause/Resume and Sign out.

Everything runs through ``tasks.start`` on the session's sync service; errors are shown
on the page in plain words (a bug is logged with its traceback by ``tasks``). Typed
passphrases, passwords and recovery codes are cleared once used and never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.errors import HushchatError, InternalError
from app.session import Session
from app.sync import login
from app.sync.account import SyncAccount
from app.sync.crypto import WrongKeySecretError
from app.sync.engine import EngineStatus, SyncKeysExistError, SyncNotSetUpError
from app.ui import tasks
from app.ui.layout import set_role
from app.ui.sign_in_form import (
    ShownText,
    SignInFlow,
    SignInForm,
    hint_label,
    on_enter,
    password_edit,
)
from app.ui.sync_status import SyncState, describe, without_exception_names
from app.vault.recovery_code import RecoveryCode

if TYPE_CHECKING:
    from app.sync.protocol import DeviceOut, RecoveryOut
    from app.ui.sync_link import LinkDeviceDialog

__all__ = ["SyncPageWidget"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def plain(error: BaseException) -> str:
    """The message a person reads: a bug says only where its details are."""
    if isinstance(error, InternalError):
        return "Something went wrong; the details are in Hushchat's log. Please report this."
    return without_exception_names(str(error))


_hint = hint_label
_password_edit = password_edit
_on_enter = on_enter


@dataclass(frozen=True)
class _Read:
    """The profile's sync state as read for the page."""

    account: SyncAccount | None
    set_up: bool
    running: bool


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


class SyncPageWidget(QWidget):
    """The Sync tab of the settings dialog."""

    #: Signed in or out (the window shows or hides its indicator).
    account_changed = Signal()
    #: Set up, joined, paused or resumed.
    state_changed = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.account: SyncAccount | None = None
        self.joining = False
        self.status: EngineStatus | None = None
        self.devices: list[DeviceOut] = []
        self._sign_in_task: asyncio.Task[Any] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._running = False
        self.link_dialog: LinkDeviceDialog | None = None
        #: Joining: offer the pairing code first (the first run's choice).
        self.prefer_pairing_code = False
        self.recoveries: list[RecoveryOut] = []

        self.stack = QStackedWidget()
        self.sign_in_step = self._sign_in_widget()
        self.waiting_step = self._waiting_widget()
        self.keys_step = self._keys_widget()
        self.account_step = self._account_widget()
        for step in (self.sign_in_step, self.waiting_step, self.keys_step, self.account_step):
            self.stack.addWidget(step)
        self.message_label = _hint()
        self.message_label.setAccessibleName("Sync status message")
        layout = QVBoxLayout(self)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.message_label)
        self._set_busy(True)  # until the profile's state is read
        self.refresh()

    # ----------------------------------------------------------------- building

    def _sign_in_widget(self) -> QWidget:
        page = QWidget()
        self.sign_in_form = SignInForm(
            "Keep your chats in step between your computers through a sync server you "
            "or your organisation runs. It stores only what this computer encrypted; "
            "Ephemeral chats are never synced."
        )
        form = self.sign_in_form
        form.chosen.connect(self._sign_in_chosen)
        form.said.connect(lambda text, error: self.show_message(text, error=error))
        # The form's fields and buttons, by the names tests and the rest of the page use.
        self.server_edit, self.device_name_edit = form.server_edit, form.device_name_edit
        self.sign_in_button, self.code_button = form.sign_in_button, form.code_button
        self.email_edit, self.password_edit = form.email_edit, form.password_edit
        self.local_button, self.local_box = form.local_button, form.local_box
        layout = QVBoxLayout(page)
        layout.addWidget(form)
        layout.addStretch(1)
        return page

    def _waiting_widget(self) -> QWidget:
        page = QWidget()
        self.waiting_title = QLabel("Continue in your browser…")
        self.waiting_title.setAccessibleName("Signing in")
        self.waiting_detail = _hint()
        self.waiting_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.waiting_detail.setAccessibleName("Sign-in instructions")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel the sign-in")
        self.cancel_button.clicked.connect(self.cancel_sign_in)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(self.waiting_title)
        layout.addWidget(self.waiting_detail)
        layout.addLayout(row)
        layout.addStretch(1)
        return page

    def _keys_widget(self) -> QWidget:
        page = QWidget()
        self.keys_intro = _hint()
        self.keys_passphrase_edit = _password_edit("Passphrase")
        self.recovery_check = QCheckBox("Also let my &recovery code open them")
        self.recovery_check.setAccessibleName("Also let the recovery code open the sync keys")
        self.recovery_edit = QLineEdit()
        self.recovery_edit.setAccessibleName("Recovery code")
        self.recovery_edit.setPlaceholderText("1234-5678-…")
        self.recovery_edit.setEnabled(False)
        self.recovery_check.toggled.connect(self.recovery_edit.setEnabled)
        self.keys_button = QPushButton("Set &up sync")
        self.keys_button.clicked.connect(self.finish_keys)
        self.keys_sign_out_button = QPushButton("Sign &out")
        self.keys_sign_out_button.setAccessibleName("Sign out of the sync server")
        self.keys_sign_out_button.clicked.connect(lambda: self.sign_out())
        _on_enter(self.keys_passphrase_edit, self.finish_keys)
        _on_enter(self.recovery_edit, self.finish_keys)
        # Joining: the account's passphrase, or a pairing code another computer shows.
        self.join_passphrase_radio = QRadioButton("Use the pa&ssphrase sync was set up with")
        self.join_passphrase_radio.setAccessibleName("Join with the account's passphrase")
        self.join_code_radio = QRadioButton("Use a pairing code &instead of the passphrase")
        self.join_code_radio.setAccessibleName("Join with a pairing code from another computer")
        self.join_passphrase_radio.setChecked(True)
        self.join_code_radio.toggled.connect(lambda _on: self._show_join_way())
        self.pairing_code_edit = QLineEdit()
        self.pairing_code_edit.setAccessibleName("Pairing code")
        self.pairing_code_edit.setPlaceholderText("4127-abacus-nimble-tundra")
        self.pairing_code_hint = _hint(
            "On a computer that syncs already: Settings, Sync, Link a device… shows the "
            "code (or `hushchat sync link` there). It works once, for ten minutes."
        )
        _on_enter(self.pairing_code_edit, self.finish_keys)
        self.keys_form = QFormLayout()
        self.keys_form.addRow("", self.join_passphrase_radio)
        self.keys_form.addRow("", self.join_code_radio)
        self.keys_form.addRow("Passp&hrase:", self.keys_passphrase_edit)
        self.keys_form.addRow("Pairing co&de:", self.pairing_code_edit)
        self.keys_form.addRow("", self.pairing_code_hint)
        self.keys_form.addRow("", self.recovery_check)
        self.keys_form.addRow("Recovery code:", self.recovery_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.keys_button)
        buttons.addWidget(self.keys_sign_out_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(self.keys_intro)
        layout.addLayout(self.keys_form)
        layout.addLayout(buttons)
        layout.addStretch(1)
        return page

    def _account_widget(self) -> QWidget:
        page = QWidget()
        self.email_label = QLabel()
        self.email_label.setAccessibleName("Account")
        self.server_label = QLabel()
        self.server_label.setAccessibleName("Sync server")
        self.device_label = QLabel()
        self.device_label.setAccessibleName("This device")
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        self.state_label.setAccessibleName("Sync status")
        for label in (self.email_label, self.server_label, self.device_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        info = QFormLayout()
        info.addRow("Account:", self.email_label)
        info.addRow("Server:", self.server_label)
        info.addRow("This device:", self.device_label)
        info.addRow("Status:", self.state_label)
        self.device_tree = QTreeWidget()
        self.device_tree.setAccessibleName("Devices signed in to the account")
        self.device_tree.setHeaderLabels(["Device", "Last seen", ""])
        self.device_tree.setRootIsDecorated(False)
        self.device_tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.device_tree.currentItemChanged.connect(lambda *_: self._update_revoke())
        self.revoke_button = QPushButton("&Revoke…")
        self.revoke_button.setAccessibleName("Revoke the selected device")
        self.revoke_button.setToolTip("Sign that device out for good (a lost laptop).")
        self.revoke_button.clicked.connect(lambda: self.revoke_selected())
        self.refresh_devices_button = QPushButton("Re&fresh")
        self.refresh_devices_button.setAccessibleName("Refresh the device list")
        self.refresh_devices_button.clicked.connect(self.load_devices)
        self.link_button = QPushButton("&Link a device…")
        self.link_button.setAccessibleName("Link a new device with a pairing code")
        self.link_button.setToolTip(
            "Show a pairing code to type on your new computer: it gets this account's "
            "chats without the passphrase."
        )
        self.link_button.clicked.connect(lambda: self.link_device())
        self.sync_now_button = QPushButton("Sync &now")
        self.sync_now_button.clicked.connect(self.sync_now)
        self.pause_button = QPushButton("Pa&use sync")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.sign_out_button = QPushButton("Sign &out…")
        self.sign_out_button.setAccessibleName("Sign out of the sync server")
        self.sign_out_button.clicked.connect(lambda: self.sign_out())
        self.recovery_box = QGroupBox("Recoveries in progress")
        self.recovery_box.setAccessibleName("Recoveries of the account in progress")
        self.recovery_tree = QTreeWidget()
        self.recovery_tree.setAccessibleName("Recoveries started on other devices")
        self.recovery_tree.setHeaderLabels(["Device", "Started", "Can complete", "Status"])
        self.recovery_tree.setRootIsDecorated(False)
        self.recovery_tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.recovery_tree.setMaximumHeight(110)
        self.cancel_recovery_button = QPushButton("&Cancel recovery…")
        self.cancel_recovery_button.setAccessibleName("Cancel the selected recovery")
        self.cancel_recovery_button.clicked.connect(lambda: self.recovery_action("cancel"))
        self.approve_recovery_button = QPushButton("Appro&ve recovery…")
        self.approve_recovery_button.setAccessibleName(
            "Approve the selected recovery (only if it is you)"
        )
        self.approve_recovery_button.clicked.connect(lambda: self.recovery_action("approve"))
        recovery_buttons = QHBoxLayout()
        recovery_buttons.addWidget(self.cancel_recovery_button)
        recovery_buttons.addWidget(self.approve_recovery_button)
        recovery_buttons.addStretch(1)
        recovery_layout = QVBoxLayout(self.recovery_box)
        recovery_layout.addWidget(
            _hint(
                "Someone who lost the passphrase and the recovery code is getting your "
                "Standard chats back on a new device. If it was not you, cancel it; approve "
                "it only if it is you (it then completes at once)."
            )
        )
        recovery_layout.addWidget(self.recovery_tree)
        recovery_layout.addLayout(recovery_buttons)
        self.recovery_box.hide()
        device_buttons = QHBoxLayout()
        device_buttons.addWidget(self.revoke_button)
        device_buttons.addWidget(self.refresh_devices_button)
        device_buttons.addStretch(1)
        device_buttons.addWidget(self.link_button)
        sync_buttons = QHBoxLayout()
        for button in (self.sync_now_button, self.pause_button):
            sync_buttons.addWidget(button)
        sync_buttons.addStretch(1)
        sync_buttons.addWidget(self.sign_out_button)
        layout = QVBoxLayout(page)
        layout.addLayout(info)
        layout.addWidget(self.recovery_box)
        layout.addWidget(self.device_tree, 1)
        layout.addLayout(device_buttons)
        layout.addLayout(sync_buttons)
        return page

    # ----------------------------------------------------------------- plumbing

    def _run(
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None],
        on_error: Callable[[BaseException], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> asyncio.Task[T]:
        """``tasks.start`` whose callbacks are skipped once the page is gone."""
        return tasks.start_for(self, coro, on_done, on_error or self._failed, on_cancel)

    def show_message(self, text: str, *, error: bool = False) -> None:
        """A line under the step: what happened, or what went wrong and what to do."""
        set_role(self.message_label, "error" if error else "hint")
        self.message_label.setText(text)

    def _failed(self, error: BaseException) -> None:
        self._set_busy(False)
        self.show_message(plain(error), error=True)

    def _set_busy(self, busy: bool) -> None:
        for button in (
            self.sign_in_button,
            self.code_button,
            self.local_button,
            self.keys_button,
            self.keys_sign_out_button,
            self.sync_now_button,
            self.pause_button,
            self.sign_out_button,
            self.refresh_devices_button,
            self.link_button,
        ):
            button.setEnabled(not busy)
        if not busy:
            self._update_revoke()
        else:
            self.revoke_button.setEnabled(False)

    @property
    def step(self) -> str:
        """``sign_in``, ``waiting``, ``keys`` or ``account`` (for tests)."""
        current = self.stack.currentWidget()
        steps = {
            "sign_in": self.sign_in_step,
            "waiting": self.waiting_step,
            "keys": self.keys_step,
            "account": self.account_step,
        }
        return next(name for name, step in steps.items() if step is current)

    def _watch_status(self) -> None:
        if self._unsubscribe is not None:
            return

        def changed(status: EngineStatus) -> None:
            if not shiboken6.isValid(self):
                self.stop_watching()
                return
            self.status = status
            self._running = self.session.sync.running
            self._show_state()

        self._unsubscribe = self.session.sync.add_status_listener(changed)

    def stop_watching(self) -> None:
        """Stop following the sync status, and cancel a sign-in waiting for the browser
        (the settings dialog closes)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self.cancel_sign_in()
        dialog = self.link_dialog
        if dialog is not None and shiboken6.isValid(dialog) and dialog.isVisible():
            dialog.reject()  # its code stops working

    def follow_new_service(self) -> None:
        """The chats were closed and reopened: the session has a new sync service (the
        old one, and the listener on it, are gone)."""
        self._unsubscribe = None
        self.status = None
        self.refresh()

    # ----------------------------------------------------------------- state

    def refresh(self) -> None:
        """Read the profile's sync state and show the step it calls for."""

        async def read() -> _Read:
            sync = self.session.sync
            self._watch_status()
            account = await sync.account()
            set_up = account is not None and await sync.is_set_up()
            return _Read(account, set_up, sync.running)

        self._run(read(), self._show_read)

    def _show_read(self, read: _Read) -> None:
        if self._sign_in_task is not None:  # read before a sign-in that is under way
            return
        self.account = read.account
        self._set_busy(False)
        if read.account is None:
            self.stack.setCurrentWidget(self.sign_in_step)
            self.server_edit.setFocus()
            return
        if not read.set_up:
            self._choose_keys_step()
            return
        self._show_account(read.running)

    def _show_account(self, running: bool) -> None:
        account = self.account
        assert account is not None
        self.email_label.setText(account.email or account.account_id)
        self.server_label.setText(account.server_url)
        self.device_label.setText(account.device_name or "(no name)")
        self._running = running
        self._show_state()
        self.stack.setCurrentWidget(self.account_step)
        self.load_devices()

    def _show_state(self) -> None:
        running = self._running
        state = SyncState(
            signed_in=self.account is not None,
            set_up=True,
            running=running,
            status=self.status,
            device_id=self.account.device_id if self.account is not None else None,
        )
        self.state_label.setText(describe(state)[1])
        if self.status is None:  # none since the page opened: the service's last one
            state = replace(state, status=self.session.sync.status)
        self._show_recoveries(state.recoveries)
        self.pause_button.setText("Resu&me sync" if not running else "Pa&use sync")
        self.pause_button.setAccessibleName("Resume sync" if not running else "Pause sync")

    # ----------------------------------------------------------------- signing in

    @property
    def methods(self) -> login.SignInMethods | None:
        """How the server said one signs in (once asked)."""
        return self.sign_in_form.methods

    def sign_in(self) -> None:
        """Ask the server how to sign in; start the browser flow, or show the e-mail and
        password fields of a server with only its own accounts."""
        self.sign_in_form.sign_in()

    def sign_in_with_browser(self) -> None:
        """The identity provider's page in the browser; waits for its answer."""
        self.sign_in_form.sign_in_with_browser()

    def sign_in_with_code(self) -> None:
        """A code to enter on another device (the device authorization grant)."""
        self.sign_in_form.sign_in_with_code()

    def sign_in_local(self) -> None:
        """The server's own account: e-mail and password."""
        self.sign_in_form.sign_in_local()

    def _sign_in_chosen(self, title: str, flow: SignInFlow) -> None:
        shown = ShownText(self.waiting_detail)
        if title:  # the browser, or a code: wait on the waiting step
            self._wait(title)
        else:  # e-mail and password: a moment, on this step
            self._set_busy(True)
        self._start_sign_in(lambda: flow(shown))

    def _wait(self, title: str) -> None:
        self.waiting_title.setText(title)
        self.waiting_detail.setText("")
        self.show_message("")
        self.stack.setCurrentWidget(self.waiting_step)
        self.cancel_button.setFocus()

    def _start_sign_in(self, flow: Callable[[], Coroutine[Any, Any, SyncAccount]]) -> None:
        # The flow's coroutine is made in the task: one cancelled before it ran leaves
        # no coroutine never awaited.
        async def sign_in() -> _Read:
            account = await flow()
            sync = self.session.sync
            await sync.sign_in(account)
            set_up = await sync.is_set_up()  # signed in again: the keys are still here
            if set_up:
                await sync.start()
            return _Read(account, set_up, sync.running)

        self._sign_in_task = self._run(
            sign_in(),
            self._signed_in,
            on_error=self._sign_in_failed,
            on_cancel=self._sign_in_cancelled,
        )

    def _signed_in(self, read: _Read) -> None:
        self._sign_in_task = None
        self.password_edit.clear()
        self.status = None
        account = read.account
        assert account is not None
        self.show_message(f"Signed in as {account.email or account.account_id}.")
        self.account_changed.emit()
        self._show_read(read)

    def _sign_in_failed(self, error: BaseException) -> None:
        self._sign_in_task = None
        self.password_edit.clear()
        self.stack.setCurrentWidget(self.sign_in_step)
        self._failed(error)

    def _sign_in_cancelled(self) -> None:
        self._sign_in_task = None
        self.stack.setCurrentWidget(self.sign_in_step)
        self._set_busy(False)
        self.show_message("Sign-in cancelled.")
        self.sign_in_button.setFocus()

    def cancel_sign_in(self) -> None:
        """Stop waiting for the browser (or the code): nothing is signed in."""
        task = self._sign_in_task
        if task is not None and not task.done():
            task.cancel()

    # ----------------------------------------------------------------- set up or join

    def _choose_keys_step(self) -> None:
        self.stack.setCurrentWidget(self.keys_step)
        self._set_busy(True)

        def failed(error: BaseException) -> None:
            self._show_keys_step(joining=True)
            self._failed(error)

        self._run(
            self.session.sync.account_has_keys(),
            lambda has: self._show_keys_step(joining=has),
            on_error=failed,
        )

    def _show_keys_step(self, *, joining: bool) -> None:
        self.joining = joining
        self._set_busy(False)
        account = self.account
        who = account.email or account.account_id if account is not None else "your account"
        if joining:
            self.keys_intro.setText(
                f"{who} already syncs from another device. Type the passphrase sync was set "
                "up with there (that device's vault passphrase): it opens the account's sync "
                "keys here; it never goes to the server. Or type a pairing code that device "
                "shows: it hands the keys over, no passphrase needed."
            )
        else:
            self.keys_intro.setText(
                f"This is the first device of {who}. Hushchat makes the account's sync keys "
                "and locks them with your vault passphrase: your other devices open them "
                "with the same passphrase. Ephemeral chats are never synced."
            )
            self.keys_button.setText("Set &up sync")
            self.keys_button.setAccessibleName("Set up sync")
        self.keys_form.setRowVisible(self.recovery_check, not joining)
        self.keys_form.setRowVisible(self.recovery_edit, not joining)
        self.keys_form.setRowVisible(self.join_passphrase_radio, joining)
        self.keys_form.setRowVisible(self.join_code_radio, joining)
        if joining and self.prefer_pairing_code:
            self.join_code_radio.setChecked(True)
        self.stack.setCurrentWidget(self.keys_step)
        self._show_join_way()

    @property
    def with_pairing_code(self) -> bool:
        """Joining with a pairing code rather than the account's passphrase."""
        return self.joining and self.join_code_radio.isChecked()

    def _show_join_way(self) -> None:
        code = self.with_pairing_code
        self.keys_form.setRowVisible(self.keys_passphrase_edit, not code)
        self.keys_form.setRowVisible(self.pairing_code_edit, code)
        self.keys_form.setRowVisible(self.pairing_code_hint, code)
        if not self.joining:
            return
        if code:
            self.keys_button.setText("&Link")
            self.keys_button.setAccessibleName("Link this computer with the pairing code")
            self.pairing_code_edit.setFocus()
        else:
            self.keys_button.setText("&Join")
            self.keys_button.setAccessibleName("Join the account's sync")
            self.keys_passphrase_edit.setFocus()

    def finish_keys(self) -> None:
        """Set sync up (first device) or join it (another one), then start syncing."""
        if self.with_pairing_code:
            self.join_with_pairing_code()
            return
        passphrase = self.keys_passphrase_edit.text()
        if not passphrase:
            self.show_message("Type the passphrase.", error=True)
            self.keys_passphrase_edit.setFocus()
            return
        recovery: bytes | None = None
        if not self.joining and self.recovery_check.isChecked():
            try:
                recovery = RecoveryCode.parse(self.recovery_edit.text()).secret
            except HushchatError as error:  # a typo: the message says which group
                self.show_message(str(error), error=True)
                self.recovery_edit.setFocus()
                return
        self._set_busy(True)
        session, sync = self.session, self.session.sync

        async def set_up() -> str:
            await session.verify_passphrase(passphrase)
            kdf = await sync.keys_record_kdf(session.slots(), session.kdf)
            await sync.set_up(passphrase=passphrase, recovery_secret=recovery, kdf=kdf)
            await sync.start()
            also = " and your recovery code" if recovery is not None else ""
            return (
                "Sync is set up: the account's keys are on the server, locked with your "
                f"passphrase{also}. Your chats are being sent."
            )

        async def join() -> str:
            report = await sync.join(passphrase=passphrase)
            await sync.start()
            return f"Joined: {report.pulled} changes fetched from your other devices."

        if self.joining:
            self.show_message("Opening the account's keys…")
        else:
            self.show_message("Setting up sync…")
        self._run(join() if self.joining else set_up(), self._keys_done, self._keys_failed)

    def join_with_pairing_code(self) -> None:
        """Join with a pairing code shown on another computer (``join_with_code``): that
        computer hands over the account's keys; every chat is then fetched."""
        from app.sync.pairing import PairingCode, join_with_code

        try:
            code = PairingCode.parse(self.pairing_code_edit.text())
        except HushchatError as error:  # a typo: said before anything is sent
            self.show_message(
                str(error).replace("`hushchat sync link`", "Link a device…"), error=True
            )
            self.pairing_code_edit.setFocus()
            return
        self._set_busy(True)
        sync = self.session.sync

        async def link() -> str:
            report = await join_with_code(sync, code)
            await sync.start()
            return (
                f"Linked: joined the account's chats, Standard and Private ({report.pulled} "
                "changes fetched)."
            )

        self.show_message("Linking with the other computer (it must still show the code)…")
        self._run(link(), self._keys_done, self._keys_failed)

    def _keys_done(self, message: str) -> None:
        self.pairing_code_edit.clear()
        self.keys_passphrase_edit.clear()
        self.recovery_edit.clear()
        self.status = None
        self.state_changed.emit()
        self._show_account(self.session.sync.running)
        self.show_message(message)

    def _keys_failed(self, error: BaseException) -> None:
        self._set_busy(False)
        from app.sync.pairing import PairingError

        if isinstance(error, PairingError):
            from app.ui.sync_link import pairing_message

            self.show_message(pairing_message(error, new_device=True), error=True)
            self.pairing_code_edit.clear()  # a code works once
            self.pairing_code_edit.setFocus()
            return
        if isinstance(error, SyncNotSetUpError):  # nobody set it up after all
            self._show_keys_step(joining=False)
            self.show_message(
                "This account has no sync keys yet: set sync up here with your vault passphrase.",
                error=True,
            )
            return
        if isinstance(error, SyncKeysExistError):  # another device was first
            self._show_keys_step(joining=True)
            self.show_message(
                "Another device set this account up meanwhile: join it with the passphrase "
                "it was set up with.",
                error=True,
            )
            return
        if isinstance(error, WrongKeySecretError):
            self.show_message(
                "This passphrase does not open the account's sync keys: type the passphrase "
                "of the device sync was first set up on.",
                error=True,
            )
        else:
            self.show_message(plain(error), error=True)
        self.keys_passphrase_edit.setFocus()
        self.keys_passphrase_edit.selectAll()

    # ----------------------------------------------------------------- account

    def load_devices(self) -> None:
        """List the account's devices (from the server)."""
        self.refresh_devices_button.setEnabled(False)

        async def read() -> list[DeviceOut]:
            return await self.session.sync.client().devices()

        def failed(error: BaseException) -> None:
            self.refresh_devices_button.setEnabled(True)
            self.show_message(f"Could not list the devices: {plain(error)}", error=True)

        self._run(read(), self._show_devices, failed)

    def _is_this_device(self, device: DeviceOut) -> bool:
        account = self.account
        return device.current or (account is not None and device.id == account.device_id)

    def _show_devices(self, devices: list[DeviceOut]) -> None:
        self.refresh_devices_button.setEnabled(True)
        self.devices = devices
        self.device_tree.clear()
        for device in devices:
            seen = "revoked" if device.revoked_at is not None else _when(device.last_seen_at)
            here = "this device" if self._is_this_device(device) else ""
            item = QTreeWidgetItem([device.name or "(no name)", seen, here])
            item.setData(0, Qt.ItemDataRole.UserRole, device.id)
            self.device_tree.addTopLevelItem(item)
        for column in range(3):
            self.device_tree.resizeColumnToContents(column)
        self._update_revoke()

    def _selected_device(self) -> DeviceOut | None:
        item = self.device_tree.currentItem()
        if item is None:
            return None
        device_id = item.data(0, Qt.ItemDataRole.UserRole)
        return next((d for d in self.devices if d.id == device_id), None)

    def _update_revoke(self) -> None:
        device = self._selected_device()
        self.revoke_button.setEnabled(
            device is not None and device.revoked_at is None and not self._is_this_device(device)
        )

    def revoke_selected(self, *, confirm: bool = True) -> None:
        """Sign the selected device out for good, after confirmation."""
        device = self._selected_device()
        if device is None or self._is_this_device(device):
            self.show_message("Select another device to revoke.", error=True)
            return
        name = device.name or "this unnamed device"
        if confirm:
            answer = QMessageBox.question(
                self,
                "Revoke device",
                f"Revoke “{name}”? It is signed out for good and can never sign in again "
                "with its key; its chats stay on it but no longer sync.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.revoke_button.setEnabled(False)

        def done(_none: None) -> None:
            self.show_message(f"Revoked “{name}”.")
            self.load_devices()

        self._run(self.session.sync.client().revoke(device.id), done)

    def link_device(self) -> LinkDeviceDialog:
        """Show a pairing code for a new device and wait for it (a modal dialog)."""
        from app.ui.sync_link import LinkDeviceDialog

        dialog = LinkDeviceDialog(self.session, self.account, self)
        self.link_dialog = dialog
        dialog.finished.connect(lambda _result: self._link_closed(dialog))
        dialog.open()
        dialog.start()
        return dialog

    def _link_closed(self, dialog: LinkDeviceDialog) -> None:
        if dialog.linked_name is not None:
            self.show_message(f"Linked {dialog.linked_name}.")
            self.load_devices()
        if self.link_dialog is dialog:
            self.link_dialog = None
        dialog.deleteLater()

    def _show_recoveries(self, recoveries: list[RecoveryOut]) -> None:
        """The account's recoveries started on other devices (the box hides when none)."""
        from app.ui.sync_recovery_notice import describe_recovery

        self.recoveries = recoveries
        selected = self._selected_recovery()
        self.recovery_tree.clear()
        names = {device.id: device.name for device in self.devices}
        for recovery in recoveries:
            device = names.get(recovery.device_id) or recovery.device_id[:12]
            can = "now" if recovery.status == "ready" else _when(recovery.not_before)
            item = QTreeWidgetItem([device, _when(recovery.created_at), can, recovery.status])
            item.setData(0, Qt.ItemDataRole.UserRole, recovery.id)
            item.setToolTip(0, describe_recovery(recovery))
            self.recovery_tree.addTopLevelItem(item)
            if selected is None or recovery.id == selected.id:
                self.recovery_tree.setCurrentItem(item)
                selected = recovery
        for column in range(4):
            self.recovery_tree.resizeColumnToContents(column)
        self.recovery_box.setVisible(bool(recoveries))

    def _selected_recovery(self) -> RecoveryOut | None:
        item = self.recovery_tree.currentItem()
        if item is None:
            return None
        recovery_id = item.data(0, Qt.ItemDataRole.UserRole)
        return next((r for r in self.recoveries if r.id == recovery_id), None)

    def recovery_action(self, action: str, *, confirm: bool = True) -> None:
        """Cancel or approve the selected recovery, after asking."""
        from app.ui.sync_recovery_notice import act_on_recovery, confirm_recovery_action

        recovery = self._selected_recovery()
        if recovery is None:
            self.show_message("Select a recovery first.", error=True)
            return
        if confirm and not confirm_recovery_action(self, action, recovery):
            return
        for button in (self.cancel_recovery_button, self.approve_recovery_button):
            button.setEnabled(False)

        def done(said: str) -> None:
            for button in (self.cancel_recovery_button, self.approve_recovery_button):
                button.setEnabled(True)
            self.show_message(said)

        def failed(error: BaseException) -> None:
            for button in (self.cancel_recovery_button, self.approve_recovery_button):
                button.setEnabled(True)
            verb = "cancel" if action == "cancel" else "approve"
            self.show_message(f"Could not {verb} the recovery: {plain(error)}", error=True)

        self._run(act_on_recovery(self.session, action, recovery.id), done, failed)

    def sync_now(self) -> None:
        """Send and fetch once, now."""
        self.sync_now_button.setEnabled(False)
        self.show_message("Syncing…")

        def done(report: Any) -> None:
            self.sync_now_button.setEnabled(True)
            text = f"Synced: {report.pushed} sent, {report.pulled} fetched."
            if report.deferred:
                text += f" {report.deferred} wait until Private chats are open."
            self.show_message(text)

        self._run(self.session.sync.sync_now(), done)

    def toggle_pause(self) -> None:
        """Pause background sync (until Resume or the next unlock), or resume it."""
        sync = self.session.sync
        self.pause_button.setEnabled(False)
        pausing = sync.running

        async def toggle() -> bool:
            if pausing:
                await sync.stop()
            else:
                await sync.start()
            return sync.running

        def done(running: bool) -> None:
            self.pause_button.setEnabled(True)
            self._running = running
            self._show_state()
            self.show_message(
                "Sync paused until you resume it or lock Hushchat." if pausing else "Sync resumed."
            )
            self.state_changed.emit()

        self._run(toggle(), done)

    def sign_out(self, *, confirm: bool = True) -> None:
        """Sign this device out of the server (after confirmation); chats stay here."""
        account = self.account
        if account is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Sign out of sync",
                f"Sign this device out of {account.server_url}? Your chats stay on this "
                "device; they are no longer synced, and this device leaves the account's "
                "device list.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._set_busy(True)

        def done(_none: None) -> None:
            self.account = None
            self.status = None
            self.devices = []
            self.device_tree.clear()
            self.keys_passphrase_edit.clear()
            self.server_edit.setText(account.server_url)
            self.account_changed.emit()
            self._set_busy(False)
            self.stack.setCurrentWidget(self.sign_in_step)
            self.show_message("Signed out. Your chats stay on this device.")

        self._run(self.session.sync.sign_out(revoke=True), done)

"""Unlock screen, "Recover Standard chats from my sync server": for someone who lost the
passphrase AND the recovery code.

The window drives the same steps as ``hushchat vault recover --server URL``, through the
Qt-free functions of ``app.sync.recovery``; the dialog only shows them:

1. **explain**: what happens, in plain words (the Standard chats that were synced come
   back after the server's delay; Private chats and anything never synced are lost; the
   old vault is not deleted but moved into ``vault-before-recovery-<date-time>`` of the
   profile) and an explicit "I understand" before anything is done;
2. **sign in** to the sync server (browser, a code entered elsewhere, or e-mail and
   password), with a new device key, or the one of the recovery being finished;
3. **start** (``start_recovery``: the pending-recovery file is written before anything
   else) and **wait** (``complete_or_forget``, honouring the server's Retry-After), showing
   when it can complete, that the account's other devices and e-mail address were told
   and can cancel it, with a progress bar and Cancel (the recovery goes on on the server;
   the next start offers "Finish the recovery…" because the pending file is there);
4. **new passphrase** (the strength fields of the first run): the old vault is set aside,
   a NEW vault is made, the recovered Standard key installed and the chats fetched
   (``set_session_vault_aside``, ``Session.create_vault``, ``install_recovered_key``);
5. **done**: the new recovery code, shown once, with "I have stored it" before Finish.

``recovered`` is emitted when the new vault is unlocked and holds the key: the window
then shows the chats. Errors are said in the dialog; a bug is logged with its traceback
by ``tasks``. Typed passwords and passphrases are cleared once used and never logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.errors import HushchatError, UsageError
from app.session import Session
from app.sync import login
from app.sync.dpop import DeviceKey
from app.sync.recovery import (
    PendingRecovery,
    Recovered,
    RecoveryEndedError,
    complete_or_forget,
    install_recovered_key,
    set_session_vault_aside,
    start_recovery,
)
from app.ui import tasks
from app.ui.first_run import PassphraseFieldsWidget, RecoveryCodeWidget
from app.ui.layout import set_role
from app.ui.sign_in_form import ShownText, SignInFlow, SignInForm
from app.ui.sign_in_form import hint_label as _hint
from app.ui.sync_settings import plain
from app.vault.errors import WeakPassphraseError

if TYPE_CHECKING:
    from pathlib import Path

    from app.sync.account import SyncAccount
    from app.sync.client import SyncClient
    from app.sync.crypto import SyncKey
    from app.vault.recovery_code import RecoveryCode

__all__ = ["ServerRecoveryDialog", "has_pending_recovery"]

T = TypeVar("T")


def _sync_client(account: SyncAccount) -> SyncClient:
    from app.sync.client import SyncClient

    return SyncClient(account)


def has_pending_recovery(profile_dir: Path) -> bool:
    """Whether this profile started a recovery it has not finished."""
    return PendingRecovery.path(profile_dir).exists()


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds % 60:02d} s"


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "title")
    label.setWordWrap(True)
    return label


EXPLANATION = (
    "<p>For when you lost <b>both</b> your passphrase and your recovery code. Unless you "
    "turned it off, your sync server keeps a copy of the key of your <b>Standard</b> "
    "chats (its escrow).</p><ul>"
    "<li>You sign in to your sync server. It waits its recovery delay (often two days) "
    "and tells your other devices and your e-mail address: any of them can cancel the "
    "recovery, or approve it to end the wait.</li>"
    "<li>Then Hushchat makes a <b>new vault</b>, with a new passphrase and a new recovery "
    "code, and fetches your synced Standard chats.</li>"
    "<li><b>Private chats, and anything that was never synced, are lost</b>: only the old "
    "passphrase or recovery code opens them.</li>"
    "<li>The old vault is <b>not deleted</b>: its files move into a folder named "
    "<i>vault-before-recovery-</i>&lt;date and time&gt; in your profile, in case you find "
    "your passphrase later.</li></ul>"
)


class ServerRecoveryDialog(QDialog):
    """Recover the Standard chats from the sync server's escrow into a new vault."""

    #: The new vault is unlocked and holds the recovered key (the window shows the chats).
    recovered = Signal()

    def __init__(
        self,
        session: Session,
        parent: QWidget | None = None,
        *,
        client_factory: Callable[[SyncAccount], SyncClient] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Recover Standard chats from your sync server")
        self.setModal(True)
        self.session = session
        self.client_factory = client_factory or (lambda account: _sync_client(account))
        self.clock = clock
        self.pending: PendingRecovery | None = None
        self.account: SyncAccount | None = None
        self.key: SyncKey | None = None
        self.aside: Path | None = None
        self.result_said = ""
        self.started_at = clock()
        # The new vault once made (its recovery code, where the old one went): a failed
        # fetch is tried again without making another.
        self._made: tuple[RecoveryCode, Path | None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._load_error = ""
        try:
            self.pending = PendingRecovery.load(session.profile_dir)
        except HushchatError as error:
            self._load_error = str(error)
        self.device_key = (
            DeviceKey.from_pem(self.pending.device_key_pem)
            if self.pending is not None
            else DeviceKey.generate()
        )

        self.pages = QStackedWidget()
        self.explain_page = self._explain_widget()
        self.sign_in_page = self._sign_in_widget()
        self.waiting_page = self._waiting_widget()
        self.passphrase_page = self._passphrase_widget()
        self.done_page = self._done_widget()
        for page in (
            self.explain_page,
            self.sign_in_page,
            self.waiting_page,
            self.passphrase_page,
            self.done_page,
        ):
            self.pages.addWidget(page)
        self.message_label = _hint()
        self.message_label.setAccessibleName("Recovery message")
        self.close_button = QPushButton("Cancel")
        self.close_button.setAccessibleName("Cancel the recovery dialog")
        self.close_button.clicked.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message_label, 1)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages, 1)
        layout.addLayout(bottom)
        self.resize(620, 520)

        self.countdown = QTimer(self)
        self.countdown.setInterval(1000)
        self.countdown.timeout.connect(self._tick)
        if self._load_error:
            self.say(self._load_error, error=True)

    # ----------------------------------------------------------------- pages

    def _explain_widget(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(_title("Recover Standard chats from your sync server"))
        self.resume_label = _hint()
        self.resume_label.setAccessibleName("Recovery in progress")
        pending = self.pending
        if pending is not None:
            self.resume_label.setText(
                f"A recovery with {pending.server_url} is in progress: it can complete after "
                f"{_when(pending.not_before)} (it expires {_when(pending.expires_at)}). Sign "
                "in again to finish it."
            )
        else:
            self.resume_label.hide()
        text = QLabel(EXPLANATION)
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        text.setAccessibleName("What a recovery from the sync server does")
        self.understand_check = QCheckBox(
            "I &understand: my old vault is set aside and a new one is made"
        )
        self.understand_check.setAccessibleName(
            "I understand: the old vault is set aside and a new vault is made"
        )
        self.continue_button = QPushButton("C&ontinue")
        self.continue_button.setEnabled(False)
        self.continue_button.setDefault(True)
        self.understand_check.toggled.connect(self.continue_button.setEnabled)
        self.continue_button.clicked.connect(self.show_sign_in)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.continue_button)
        layout.addWidget(self.resume_label)
        layout.addWidget(text)
        layout.addWidget(self.understand_check)
        layout.addStretch(1)
        layout.addLayout(row)
        return page

    def _sign_in_widget(self) -> QWidget:
        page = QWidget()
        self.sign_in_form = SignInForm(
            "The account your chats were synced with. The server asks for a fresh "
            "sign-in before it starts a recovery.",
            device_key=lambda: self.device_key,
        )
        form = self.sign_in_form
        form.chosen.connect(self._sign_in_chosen)
        form.said.connect(lambda text, error: self.say(text, error=error))
        # The form's fields and buttons, by the names tests and the rest of the dialog use.
        self.server_edit, self.device_name_edit = form.server_edit, form.device_name_edit
        self.sign_in_button, self.code_button = form.sign_in_button, form.code_button
        self.email_edit, self.password_edit = form.email_edit, form.password_edit
        self.local_button, self.local_box = form.local_button, form.local_box
        if self.pending is not None:
            self.server_edit.setText(self.pending.server_url)
            self.server_edit.setReadOnly(True)
            if self.pending.device_name:
                self.device_name_edit.setText(self.pending.device_name)
        self.sign_in_button.setDefault(True)
        self.sign_in_detail = _hint()
        self.sign_in_detail.setAccessibleName("Sign-in instructions")
        self.sign_in_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_sign_in_button = QPushButton("Cancel sign-in")
        self.cancel_sign_in_button.setAccessibleName("Cancel the sign-in")
        self.cancel_sign_in_button.clicked.connect(self._cancel_task)
        self.cancel_sign_in_button.hide()
        form.buttons.insertWidget(2, self.cancel_sign_in_button)
        layout = QVBoxLayout(page)
        layout.addWidget(_title("Sign in to your sync server"))
        layout.addWidget(form)
        layout.addWidget(self.sign_in_detail)
        layout.addStretch(1)
        return page

    def _waiting_widget(self) -> QWidget:
        page = QWidget()
        self.waiting_text = QLabel()
        self.waiting_text.setWordWrap(True)
        self.waiting_text.setAccessibleName("Recovery started")
        self.waiting_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Time until the recovery can complete")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.left_label = _hint()
        self.left_label.setAccessibleName("Time left")
        self.wait_status = _hint()
        self.wait_status.setAccessibleName("What the server said")
        self.stop_button = QPushButton("Stop &waiting")
        self.stop_button.setAccessibleName("Stop waiting; finish the recovery later")
        self.stop_button.setToolTip(
            "The recovery goes on on the server: the unlock screen offers to finish it."
        )
        self.stop_button.clicked.connect(self.stop_waiting)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.stop_button)
        layout = QVBoxLayout(page)
        layout.addWidget(_title("Waiting for the sync server"))
        layout.addWidget(self.waiting_text)
        layout.addWidget(self.progress)
        layout.addWidget(self.left_label)
        layout.addWidget(self.wait_status)
        layout.addStretch(1)
        layout.addLayout(row)
        return page

    def _passphrase_widget(self) -> QWidget:
        page = QWidget()
        self.passphrase_fields = PassphraseFieldsWidget(self.session.runner)
        self.passphrase_fields.changed.connect(self._update_create)
        self.passphrase_fields.weak_accepted.connect(self.create_vault)
        self.create_button = QPushButton("Create the &new vault")
        self.create_button.setAccessibleName("Create the new vault and install the key")
        self.create_button.setEnabled(False)
        self.create_button.setDefault(True)
        self.create_button.clicked.connect(self.create_vault)
        self.passphrase_fields.confirm_edit.returnPressed.connect(self.create_vault)
        self.aside_label = _hint()
        self.aside_label.setAccessibleName("What happens to the old vault")
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.create_button)
        layout = QVBoxLayout(page)
        layout.addWidget(_title("The key is back: choose a new passphrase"))
        layout.addWidget(
            _hint(
                "It opens the new vault on this computer. A few unrelated words are strong "
                "and easy to remember."
            )
        )
        layout.addWidget(self.passphrase_fields)
        layout.addWidget(self.aside_label)
        layout.addStretch(1)
        layout.addLayout(row)
        return page

    def _done_widget(self) -> QWidget:
        page = QWidget()
        self.done_text = QLabel()
        self.done_text.setWordWrap(True)
        self.done_text.setAccessibleName("Recovery result")
        self.done_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.recovery = RecoveryCodeWidget()
        self.finish_button = QPushButton("&Finish")
        self.finish_button.setEnabled(False)
        self.finish_button.setDefault(True)
        self.recovery.confirmed.connect(self.finish_button.setEnabled)
        self.finish_button.clicked.connect(self.accept)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.finish_button)
        layout = QVBoxLayout(page)
        layout.addWidget(_title("Your Standard chats are back"))
        layout.addWidget(self.done_text)
        layout.addWidget(_label_plain("Your new recovery code (shown only now):"))
        layout.addWidget(self.recovery)
        layout.addStretch(1)
        layout.addLayout(row)
        return page

    # ----------------------------------------------------------------- plumbing

    @property
    def step(self) -> str:
        """``explain``, ``sign_in``, ``waiting``, ``passphrase`` or ``done`` (for tests)."""
        pages = {
            "explain": self.explain_page,
            "sign_in": self.sign_in_page,
            "waiting": self.waiting_page,
            "passphrase": self.passphrase_page,
            "done": self.done_page,
        }
        current = self.pages.currentWidget()
        return next(name for name, page in pages.items() if page is current)

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def _run(
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None],
        on_error: Callable[[BaseException], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self._task = tasks.start_for(self, coro, on_done, on_error or self._failed, on_cancel)

    def say(self, text: str, *, error: bool = False) -> None:
        set_role(self.message_label, "error" if error else "hint")
        self.message_label.setText(text)

    def _failed(self, error: BaseException) -> None:
        self.say(plain(error), error=True)

    def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    # ----------------------------------------------------------------- 2. sign in

    def show_sign_in(self) -> None:
        if not self.understand_check.isChecked():
            return
        self.pages.setCurrentWidget(self.sign_in_page)
        self.say("")
        (self.device_name_edit if self.pending is not None else self.server_edit).setFocus()

    @property
    def methods(self) -> login.SignInMethods | None:
        """How the server said one signs in (once asked)."""
        return self.sign_in_form.methods

    def _signing_in(self, busy: bool) -> None:
        self.sign_in_form.set_busy(busy)
        self.cancel_sign_in_button.setVisible(busy)

    def sign_in(self) -> None:
        """Ask the server how to sign in; the browser, or the e-mail and password fields."""
        if not self.busy:
            self.sign_in_form.sign_in()

    def sign_in_with_code(self) -> None:
        if not self.busy:
            self.sign_in_form.sign_in_with_code()

    def sign_in_local(self) -> None:
        if not self.busy:
            self.sign_in_form.sign_in_local()

    def _sign_in_chosen(self, title: str, flow: SignInFlow) -> None:
        shown = ShownText(self.sign_in_detail)
        if title:
            self.say(title)
        self._start_sign_in(lambda: flow(shown))

    def _start_sign_in(self, flow: Callable[[], Coroutine[Any, Any, SyncAccount]]) -> None:
        self._signing_in(True)
        self._run(self._begin(flow), self._started, self._sign_in_failed, self._sign_in_cancelled)

    async def _begin(self, flow: Callable[[], Coroutine[Any, Any, SyncAccount]]) -> PendingRecovery:
        """Sign in; start the recovery (or check it is the same account's)."""
        account = await flow()  # made here: a task cancelled before it ran leaves none
        pending = self.pending
        if pending is not None:
            if account.account_id != pending.account_id:
                raise UsageError(
                    "You signed in to another account than the one the recovery was started "
                    "for: sign in with that account."
                )
            self.account = account
            return pending
        client = self.client_factory(account)
        try:
            pending = await start_recovery(
                client, self.session.profile_dir, device_key_pem=self.device_key.to_pem()
            )
        finally:
            await client.aclose()
        self.account = account
        return pending

    def _sign_in_failed(self, error: BaseException) -> None:
        self._task = None
        self.password_edit.clear()
        self._signing_in(False)
        self.sign_in_detail.clear()
        self._failed(error)

    def _sign_in_cancelled(self) -> None:
        self._signing_in(False)
        self.sign_in_detail.clear()
        self.say("Sign-in cancelled.")

    # ----------------------------------------------------------------- 3. wait

    def _started(self, pending: PendingRecovery) -> None:
        self.password_edit.clear()
        self._signing_in(False)
        self.pending = pending
        self.started_at = self.clock()
        self.waiting_text.setText(
            f"Recovery started with {pending.server_url}. It can complete after "
            f"{_when(pending.not_before)} (it expires {_when(pending.expires_at)}).\n\n"
            "Your other devices and your e-mail address were told: from any of them the "
            "recovery can be cancelled (if it was not you) or approved, which ends the wait "
            "(Settings, Sync, or `hushchat sync recovery approve`).\n\n"
            "You can stop waiting and close Hushchat: the recovery goes on on the server, and "
            "the unlock screen then offers \u201cFinish the recovery…\u201d."
        )
        self.pages.setCurrentWidget(self.waiting_page)
        self.say("")
        self.wait_status.setText("Asking the server…")
        self._tick()
        self.countdown.start()
        self.stop_button.setFocus()
        self._run(self._complete(pending), self._completed, self._wait_failed)

    async def _complete(self, pending: PendingRecovery) -> SyncKey:
        assert self.account is not None
        client = self.client_factory(self.account)
        try:
            return await complete_or_forget(
                client, pending, self.session.profile_dir, on_wait=self._server_said
            )
        finally:
            await client.aclose()

    def _server_said(self, slug: str, seconds: float) -> None:
        if not shiboken6.isValid(self):
            return
        why = (
            "the recovery delay is running"
            if slug == "recovery-delay"
            else "the server's escrow step has not answered yet"
        )
        self.wait_status.setText(f"Waiting: {why}; asking again in {seconds:.0f} s.")

    def _tick(self) -> None:
        pending = self.pending
        if pending is None:
            return
        start = self.started_at
        end = pending.not_before.timestamp()
        now = self.clock()
        if end <= start or now >= end:
            self.progress.setValue(1000)
            self.left_label.setText("The delay is over: waiting for the server's answer.")
            return
        self.progress.setValue(int(1000 * (now - start) / (end - start)))
        self.left_label.setText(f"About {_left(end - now)} left (unless it is approved).")

    def stop_waiting(self) -> None:
        """Close; the pending-recovery file lets a later start finish."""
        self.reject()

    def _wait_failed(self, error: BaseException) -> None:
        self.countdown.stop()
        if isinstance(error, RecoveryEndedError):
            self.pending = None
            self.say(
                f"{error} If it was you, start a new recovery (Forgot passphrase? on the "
                "unlock screen).",
                error=True,
            )
            self.stop_button.setText("&Close")
            self.wait_status.setText("")
            return
        self.say(
            f"{plain(error)} The recovery is kept: close this and choose \u201cFinish the "
            "recovery…\u201d to try again.",
            error=True,
        )

    def _completed(self, key: SyncKey) -> None:
        self.countdown.stop()
        self.key = key
        stamp = datetime.fromtimestamp(self.clock(), UTC).astimezone()
        self.aside_label.setText(
            "Creating the new vault moves the old vault's files into "
            f"\u201cvault-before-recovery-{stamp:%Y%m%d}-…\u201d in {self.session.profile_dir} "
            "(kept, not deleted)."
            if self.session.vault_exists
            else ""
        )
        self.pages.setCurrentWidget(self.passphrase_page)
        self.say("The server handed the key of your Standard chats over.")
        self.passphrase_fields.passphrase_edit.setFocus()

    # ----------------------------------------------------------------- 4. new vault

    def _update_create(self) -> None:
        problem = self.passphrase_fields.problem()
        self.create_button.setEnabled(problem is None and not self.busy)
        typed_both = bool(self.passphrase_fields.confirm_edit.text())
        self.say(problem if problem and typed_both else "", error=bool(problem))

    def create_vault(self) -> None:
        """Set the old vault aside, make the new one, install the key and fetch."""
        if (self.passphrase_fields.problem() is not None and self._made is None) or self.busy:
            return
        key, account = self.key, self.account
        if key is None or account is None:
            return
        self.create_button.setEnabled(False)
        self.say("Creating the new vault and fetching your Standard chats…")
        passphrase = self.passphrase_fields.passphrase()
        session, fields, now = self.session, self.passphrase_fields, self.clock()

        async def create() -> tuple[RecoveryCode, Recovered, Path | None]:
            made = self._made
            if made is None:  # (a second try after a failed fetch skips this)
                await fields.check_strength()
                aside = await set_session_vault_aside(session, datetime.fromtimestamp(now, UTC))
                code = await session.create_vault(passphrase)
                made = self._made = (code, aside)
            code, aside = made
            recovered = await install_recovered_key(session, account, key, session.profile_dir)
            return code, recovered, aside

        self._run(create(), self._created, self._create_failed)

    def _create_failed(self, error: BaseException) -> None:
        self.create_button.setEnabled(True)
        if isinstance(error, WeakPassphraseError):
            self.say(str(error), error=True)
            self.passphrase_fields.offer_use_anyway(error)
            return
        if self._made is not None:  # the vault is made; installing or fetching failed
            self.passphrase_fields.setEnabled(False)
            self.create_button.setText("T&ry again")
            self.say(
                f"The new vault is made, but the key could not be installed or the chats "
                f"fetched: {plain(error)} Try again.",
                error=True,
            )
            return
        self._failed(error)

    def _created(self, result: tuple[RecoveryCode, Recovered, Path | None]) -> None:
        code, recovered, aside = result
        self.passphrase_fields.clear()
        self.aside = aside
        kept = f" The old vault's files are in {aside}." if aside is not None else ""
        self.result_said = (
            f"{recovered.chats} Standard chats are back ({recovered.pulled} records fetched); "
            "more arrive as sync runs. Private chats stay unreadable: their key was never "
            f"escrowed.{kept}"
        )
        self.done_text.setText(self.result_said)
        self.recovery.set_code(code)
        self.pages.setCurrentWidget(self.done_page)
        self.close_button.hide()
        self.say("")
        self.recovered.emit()

    # ----------------------------------------------------------------- closing

    def accept(self) -> None:
        self.recovery.set_code(None)
        super().accept()

    def reject(self) -> None:
        if self.step == "done":  # the new vault is made: Finish, after the code is kept
            return
        self.countdown.stop()
        self._cancel_task()
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.step == "done":
            event.ignore()
            return
        self.countdown.stop()
        self._cancel_task()
        super().closeEvent(event)


def _label_plain(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label

"""First run: create the vault, keep the recovery code, add a first provider.

Three pages in a stack (four for someone who already uses Hushchat elsewhere):

1. a passphrase (typed twice) with a strength meter (zxcvbn, off the UI thread); a
   weak one (score below 3 of 4) is refused with the reason until "Use anyway" is chosen;
2. the recovery code with Copy, Save as file… and an "I have stored it" check that
   gates Continue, plus optional security-key enrolment;
2b. when "I use Hushchat on another computer" was ticked on page 1: the Sync page of
   Settings (sign in to the sync server, then join with the account's passphrase or, as
   chosen under the tick, with a pairing code another computer shows: then the passphrase
   of page 1 is any new one), so this computer fetches the chats of the others before
   anything else; it can be skipped;
3. a first LLM provider: local servers found on their default ports are offered,
   or one is entered by hand; "Test connection" shows the models or the error.

``completed`` is emitted when the user is done; the vault is then unlocked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.config import LoadedConfig
from app.executor import BlockingRunner
from app.provider_setup import (
    DEFAULT_LOCAL_SERVERS,
    DetectedServer,
    LocalServer,
    detect_local_servers,
)
from app.session import Session
from app.ui import tasks
from app.ui.key_prompts import QtKeyPrompts
from app.ui.layout import centered_page, set_role
from app.ui.provider_form import ProviderFormWidget, plural
from app.ui.sync_settings import SyncPageWidget
from app.vault.atomic_file import write_atomically
from app.vault.errors import WeakPassphraseError
from app.vault.recovery_code import RecoveryCode
from app.vault.strength import PassphraseStrength, assess_passphrase, require_strong_passphrase

__all__ = ["FirstRunWidget", "PassphraseFieldsWidget", "RecoveryCodeWidget"]

_STRENGTH_WORDS = ("Very weak", "Weak", "Fair", "Strong", "Very strong")


log = logging.getLogger(__name__)


def _label(text: str, role: str | None = None) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    if role:
        label.setProperty("role", role)
    return label


class PassphraseFieldsWidget(QWidget):
    """A new passphrase typed twice, with a strength meter and advice.

    A weak passphrase is refused by :meth:`check_strength` (its message says why);
    ``use_anyway_button`` then appears, and choosing it emits ``weak_accepted`` so the
    page can go on with that passphrase. Typing again withdraws the choice.
    """

    changed = Signal()
    weak_accepted = Signal()

    def __init__(self, runner: BlockingRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._runner = runner
        self.strength: PassphraseStrength | None = None
        self.allow_weak = False
        self.use_anyway_button = QPushButton("Use this passphrase &anyway")
        self.use_anyway_button.setAccessibleName("Use the weak passphrase anyway")
        self.use_anyway_button.hide()
        self.use_anyway_button.clicked.connect(self._use_anyway)
        self.passphrase_edit = QLineEdit()
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName("New passphrase")
        self.confirm_edit = QLineEdit()
        self.confirm_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm_edit.setAccessibleName("Repeat the passphrase")
        self.meter = QProgressBar()
        self.meter.setRange(0, 4)
        self.meter.setValue(0)
        self.meter.setTextVisible(False)
        self.meter.setMaximumHeight(8)
        self.meter.setAccessibleName("Passphrase strength")
        self.verdict = _label("", "hint")
        self.verdict.setAccessibleName("Passphrase strength advice")
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(200)
        self._debounce.timeout.connect(self._assess)
        self.passphrase_edit.textChanged.connect(self._typed)
        self.confirm_edit.textChanged.connect(lambda _text: self.changed.emit())

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("&Passphrase:", self.passphrase_edit)
        form.addRow("", self.meter)
        form.addRow("", self.verdict)
        form.addRow("&Repeat:", self.confirm_edit)
        form.addRow("", self.use_anyway_button)

    def passphrase(self) -> str:
        """The typed passphrase."""
        return self.passphrase_edit.text()

    def problem(self) -> str | None:
        """Why the passphrase cannot be used yet, or None."""
        if not self.passphrase():
            return "Choose a passphrase."
        if self.passphrase() != self.confirm_edit.text():
            return "The two passphrases differ."
        return None

    def clear(self) -> None:
        """Forget the typed text."""
        self.passphrase_edit.clear()
        self.confirm_edit.clear()

    async def check_strength(self) -> None:
        """Refuse a weak passphrase (``WeakPassphraseError``, with the reason) unless
        "Use anyway" was chosen for it. The caller's failure handler passes the error to
        ``offer_use_anyway`` once its form is usable again: a button shown here, before
        that, could be clicked while the form still counts as busy, and the click lost."""
        await self._runner.blocking(
            require_strong_passphrase,
            self.passphrase(),
            allow_weak=self.allow_weak,
            override="choose “Use this passphrase anyway”",
        )

    def offer_use_anyway(self, error: BaseException) -> None:
        """Show "Use this passphrase anyway" if ``error`` refused a weak passphrase."""
        if isinstance(error, WeakPassphraseError):
            self.use_anyway_button.show()

    def _use_anyway(self) -> None:
        self.allow_weak = True
        self.use_anyway_button.hide()
        self.weak_accepted.emit()

    def _typed(self, _text: str) -> None:
        self.strength = None
        self.allow_weak = False
        self.use_anyway_button.hide()
        self._debounce.start()
        self.changed.emit()

    def _assess(self) -> None:
        text = self.passphrase()
        if not text:
            self.meter.setValue(0)
            self.verdict.setText("")
            return
        tasks.start(self._runner.blocking(assess_passphrase, text), on_done=self._assessed)

    def _assessed(self, strength: PassphraseStrength) -> None:
        self.strength = strength
        self.meter.setValue(strength.score)
        advice = f"{_STRENGTH_WORDS[strength.score]} — guessed in {strength.crack_time}."
        if strength.is_weak:
            extra = " ".join([strength.warning, *strength.suggestions]).strip()
            advice += f" {extra}" if extra else ""
        self.verdict.setText(advice)
        set_role(self.verdict, "error" if strength.is_weak else "hint")
        self.changed.emit()


class RecoveryCodeWidget(QWidget):
    """The recovery code with Copy, Save as file… and an "I have stored it" check."""

    confirmed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._code: RecoveryCode | None = None
        self.code_view = QPlainTextEdit()
        self.code_view.setReadOnly(True)
        self.code_view.setProperty("role", "code")
        self.code_view.setAccessibleName("Recovery code")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(mono.pointSizeF() + 2)
        self.code_view.setFont(mono)
        self.code_view.setFixedHeight(self.code_view.fontMetrics().lineSpacing() * 5 + 16)
        self.copy_button = QPushButton("&Copy")
        self.copy_button.setAccessibleName("Copy the recovery code")
        self.copy_button.clicked.connect(self.copy)
        self.save_button = QPushButton("&Save as file…")
        self.save_button.setAccessibleName("Save the recovery code as a file")
        self.save_button.clicked.connect(self._choose_file)
        self.stored_check = QCheckBox("I have stored my recovery code somewhere safe")
        self.stored_check.setAccessibleName("I have stored my recovery code")
        self.stored_check.toggled.connect(self.confirmed.emit)
        self.status = _label("", "hint")
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.code_view)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.stored_check)

    def set_code(self, code: RecoveryCode | None) -> None:
        """Show ``code`` (None clears it); the confirmation starts unchecked."""
        self._code = code
        self.code_view.setPlainText(code.formatted() if code is not None else "")
        self.stored_check.setChecked(False)
        self.status.clear()

    def copy(self) -> None:
        """Put the code on the clipboard."""
        if self._code is not None:
            QGuiApplication.clipboard().setText(self._code.formatted())
            self.status.setText("Copied. Paste it into your password manager, then clear it.")

    def save_to(self, path: Path) -> None:
        """Write the code to ``path`` (owner-only permissions)."""
        if self._code is None:
            return
        text = (
            "Hushchat recovery code\n\n"
            f"{self._code.formatted()}\n\n"
            "It unlocks your vault if you forget the passphrase. Keep it offline and private.\n"
        )
        write_atomically(path, text.encode("utf-8"))
        self.status.setText(f"Saved to {path}.")

    def _choose_file(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Save recovery code", "hushchat-recovery-code.txt", "Text files (*.txt)"
        )
        if name:
            try:
                self.save_to(Path(name))
            except OSError as error:
                QMessageBox.warning(self, "Not saved", f"Could not save the file: {error}")


class FirstRunWidget(QStackedWidget):
    """Create the vault, confirm the recovery code, add a first provider."""

    vault_created = Signal()
    completed = Signal()
    config_changed = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        # Which servers "detect" asks; tests point it at their own server.
        self.local_servers: Sequence[LocalServer] = DEFAULT_LOCAL_SERVERS
        self.detected: list[DetectedServer] = []
        #: The one local server found while the recovery code is shown (used at once).
        self.quick_server: DetectedServer | None = None
        self.sync_page: SyncPageWidget | None = None  # made once the vault is unlocked
        #: The dialog finishing a recovery from the sync server (for tests).
        self.server_recovery: QDialog | None = None
        self._build_create_page()
        self._build_recovery_page()
        self._build_sync_page()
        self._build_provider_page()
        self.currentChanged.connect(self._page_shown)
        self._page_shown(self.currentIndex())

    def _page_shown(self, _index: int) -> None:
        """Name each page in the log (``--debug``): support and the screen-count test
        read which screens a first run went through."""
        pages = {
            id(self.create_page): "passphrase",
            id(self.recovery_page): "recovery code",
            id(self.sync_step_page): "sync server",
            id(self.provider_page): "provider",
        }
        log.info("first run: the %s page", pages.get(id(self.currentWidget()), "other"))

    def forget(self) -> None:
        """Wipe what is on screen now: the recovery code and the typed passphrase (on
        lock, before the widget is deleted: deletion waits for the event loop)."""
        self.recovery.set_code(None)
        self.passphrase_fields.clear()

    # ----------------------------------------------------------------- page 1

    def _build_create_page(self) -> None:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.addWidget(_label("Welcome to Hushchat", "title"))
        layout.addWidget(
            _label(
                "Your chats are kept encrypted on this computer. Choose a passphrase to "
                "unlock them: a few unrelated words are strong and easy to remember."
            )
        )
        self.passphrase_fields = PassphraseFieldsWidget(self.session.runner)
        self.passphrase_fields.changed.connect(self._update_create_button)
        self.passphrase_fields.weak_accepted.connect(self.create_vault)
        layout.addSpacing(8)
        layout.addWidget(self.passphrase_fields)
        self.from_server_check = QCheckBox("I use Hushchat on another computer: &bring my chats")
        self.from_server_check.setAccessibleName("Bring my chats from my sync server")
        self.from_server_check.setToolTip(
            "Sign in to your sync server after the recovery code and fetch the chats of "
            "your other computers."
        )
        # How this computer gets the account's keys after signing in (the Sync page's
        # keys step offers both again).
        self.with_passphrase_radio = QRadioButton("With the passphrase I use &there")
        self.with_passphrase_radio.setAccessibleName(
            "Join with the passphrase used on the other computer"
        )
        self.with_code_radio = QRadioButton("With a pairing &code from the other computer")
        self.with_code_radio.setAccessibleName("Link from another computer with a pairing code")
        self.with_passphrase_radio.setChecked(True)
        self.from_server_hint = _label("", "hint")
        self.from_server_options = QWidget()
        options = QVBoxLayout(self.from_server_options)
        options.setContentsMargins(24, 0, 0, 0)
        options.addWidget(self.with_passphrase_radio)
        options.addWidget(self.with_code_radio)
        options.addWidget(self.from_server_hint)
        self.from_server_options.hide()
        self.from_server_check.toggled.connect(self.from_server_options.setVisible)
        self.with_code_radio.toggled.connect(lambda _on: self._explain_from_server())
        self._explain_from_server()
        layout.addWidget(self.from_server_check)
        layout.addWidget(self.from_server_options)
        # A recovery from the sync server started in this profile (the old vault moved
        # away, or `hushchat vault recover --server --no-wait`): finish it.
        self.finish_recovery_button = QPushButton("Fi&nish the recovery from the sync server…")
        self.finish_recovery_button.setAccessibleName("Finish the recovery from the sync server")
        self.finish_recovery_button.setToolTip(
            "A recovery of your Standard chats was started in this profile: finish it "
            "instead of starting afresh."
        )
        self.finish_recovery_button.clicked.connect(lambda: self.finish_recovery())
        self.finish_recovery_button.setVisible(self._has_pending_recovery())
        layout.addWidget(self.finish_recovery_button)
        self.create_error = _label("", "error")
        self.create_error.setAccessibleName("Vault creation error")
        layout.addWidget(self.create_error)
        self.create_button = QPushButton("Create &vault")
        self.create_button.setAccessibleName("Create vault")
        self.create_button.setDefault(True)
        self.create_button.setEnabled(False)
        self.create_button.clicked.connect(self.create_vault)
        self.passphrase_fields.confirm_edit.returnPressed.connect(self.create_vault)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.create_button)
        layout.addLayout(row)
        self.create_page = centered_page(box)
        self.addWidget(self.create_page)

    def _has_pending_recovery(self) -> bool:
        from app.sync.recovery import PendingRecovery

        return PendingRecovery.path(self.session.profile_dir).exists()

    def finish_recovery(self) -> QDialog:
        """Finish the recovery from the sync server started in this profile: it makes the
        vault, and the first run is done."""
        from app.ui.server_recovery import ServerRecoveryDialog

        dialog = ServerRecoveryDialog(self.session, self.window())
        dialog.recovered.connect(self.completed.emit)
        dialog.finished.connect(lambda _result: self._recovery_closed(dialog))
        self.server_recovery = dialog
        dialog.open()
        return dialog

    def _recovery_closed(self, dialog: QDialog) -> None:
        if shiboken6.isValid(self):
            self.server_recovery = None
            self.finish_recovery_button.setVisible(self._has_pending_recovery())
        dialog.deleteLater()

    @property
    def with_pairing_code(self) -> bool:
        """Bring the chats with a pairing code (rather than the account's passphrase)."""
        return self.from_server_check.isChecked() and self.with_code_radio.isChecked()

    def _explain_from_server(self) -> None:
        if self.with_code_radio.isChecked():
            self.from_server_hint.setText(
                "After the recovery code you sign in to the sync server and type the code "
                "your other computer shows (there: Settings, Sync, Link a device…). It hands "
                "over your Standard and Private chats; this passphrase is only this "
                "computer's."
            )
        else:
            self.from_server_hint.setText(
                "Choose the passphrase you use there: it also opens your account's sync "
                "keys. You sign in to the server after the recovery code."
            )

    def _update_create_button(self) -> None:
        problem = self.passphrase_fields.problem()
        self.create_button.setEnabled(problem is None)
        typed_both = bool(self.passphrase_fields.confirm_edit.text())
        self.create_error.setText(problem if problem and typed_both else "")

    def create_vault(self) -> None:
        """Create the vault in the background (Argon2 takes about a second); a weak
        passphrase is refused with the reason until "Use anyway" is chosen."""
        if self.passphrase_fields.problem() is not None or not self.create_button.isEnabled():
            return
        self.create_button.setEnabled(False)
        self.create_button.setText("Creating…")
        self.create_error.clear()
        passphrase = self.passphrase_fields.passphrase()

        async def create() -> RecoveryCode:
            await self.passphrase_fields.check_strength()
            return await self.session.create_vault(passphrase)

        tasks.start(create(), on_done=self._created, on_error=self._create_failed)

    def _created(self, code: RecoveryCode) -> None:
        self.passphrase_fields.clear()
        self.create_button.setText("Create &vault")
        self.recovery.set_code(code)
        self.setCurrentWidget(self.recovery_page)
        self._look_for_a_local_server()
        self.vault_created.emit()

    def _create_failed(self, error: BaseException) -> None:
        self.create_button.setText("Create &vault")
        self.create_button.setEnabled(True)
        self.create_error.setText(str(error))
        self.passphrase_fields.offer_use_anyway(error)

    # ----------------------------------------------------------------- page 2

    def _build_recovery_page(self) -> None:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.addWidget(_label("Your recovery code", "title"))
        layout.addWidget(
            _label(
                "If you forget your passphrase, this code is the only way back into your "
                "Private chats. Store it offline — on paper or in a password manager. It is "
                "shown only now."
            )
        )
        self.recovery = RecoveryCodeWidget()
        layout.addWidget(self.recovery)
        self.security_key_button = QPushButton("Add a security &key…")
        self.security_key_button.setAccessibleName("Add a security key")
        self.security_key_button.setToolTip(
            "Unlock with a FIDO2 key such as a YubiKey (needs hmac-secret)."
        )
        self.security_key_button.clicked.connect(self.enrol_security_key)
        self.security_key_status = _label("", "hint")
        self.continue_button = QPushButton("C&ontinue")
        self.continue_button.setAccessibleName("Continue")
        self.continue_button.setEnabled(False)
        self.continue_button.clicked.connect(self.after_recovery_code)
        self.recovery.confirmed.connect(self.continue_button.setEnabled)
        self.later_button = QPushButton("Remind me &later")
        self.later_button.setAccessibleName("Store the recovery code later")
        self.later_button.setToolTip(
            "Go on without storing the code now: the window reminds you after every "
            "unlock and shows a new code when you are ready."
        )
        self.later_button.clicked.connect(self.postpone_recovery_code)
        # What comes next: a local server found while the passphrase was chosen is used
        # straight away (one page less); "Choose another model…" shows the provider page.
        self.next_hint = _label("", "hint")
        self.next_hint.setAccessibleName("What comes next")
        self.next_hint.hide()
        self.choose_model_button = QPushButton("C&hoose another model…")
        self.choose_model_button.setAccessibleName("Choose another model")
        self.choose_model_button.hide()
        self.choose_model_button.clicked.connect(self._choose_another_model)
        next_row = QHBoxLayout()
        next_row.addWidget(self.next_hint, 1)
        next_row.addWidget(self.choose_model_button)
        row = QHBoxLayout()
        row.addWidget(self.security_key_button)
        row.addStretch(1)
        row.addWidget(self.later_button)
        row.addWidget(self.continue_button)
        layout.addWidget(self.security_key_status)
        layout.addLayout(next_row)
        layout.addLayout(row)
        self.recovery_page = centered_page(box)
        self.addWidget(self.recovery_page)

    def enrol_security_key(self) -> None:
        """Find a security key and add it as another way to unlock."""
        prompts = QtKeyPrompts(self)
        prompts.touch_requested.connect(
            lambda: self.security_key_status.setText("Touch your security key now…")
        )
        self.security_key_button.setEnabled(False)
        self.security_key_status.setText("Looking for a security key…")

        async def enrol() -> str:
            key = await self.session.find_security_key(prompts)
            slot = await self.session.add_security_key(key, "Security key")
            return slot.label

        tasks.start(enrol(), on_done=self._enrolled, on_error=self._enrol_failed)

    def _enrolled(self, label: str) -> None:
        self.security_key_button.setEnabled(True)
        set_role(self.security_key_status, "hint")
        self.security_key_status.setText(f"Added “{label}”: it can unlock this vault.")

    def _enrol_failed(self, error: BaseException) -> None:
        self.security_key_button.setEnabled(True)
        set_role(self.security_key_status, "error")
        self.security_key_status.setText(str(error))

    # ----------------------------------------------------------------- page 2b

    def _build_sync_page(self) -> None:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.addWidget(_label("Bring your chats from your sync server", "title"))
        layout.addWidget(
            _label(
                "Sign in to the sync server your other computer uses, then type the "
                "passphrase sync was set up with there, or a pairing code that computer "
                "shows. Your chats arrive in the background."
            )
        )
        self.sync_holder = QVBoxLayout()
        layout.addLayout(self.sync_holder, 1)
        self.sync_skip_button = QPushButton("S&kip")
        self.sync_skip_button.setAccessibleName("Skip syncing for now")
        self.sync_skip_button.setToolTip("You can sign in later: Settings, Sync.")
        self.sync_skip_button.clicked.connect(self.show_provider_page)
        self.sync_continue_button = QPushButton("C&ontinue")
        self.sync_continue_button.setAccessibleName("Continue")
        self.sync_continue_button.clicked.connect(self.show_provider_page)
        row = QHBoxLayout()
        row.addWidget(self.sync_skip_button)
        row.addStretch(1)
        row.addWidget(self.sync_continue_button)
        layout.addLayout(row)
        self.sync_step_page = centered_page(box, 620)
        self.addWidget(self.sync_step_page)

    def postpone_recovery_code(self) -> None:
        """ "Remind me later": remember that the code was not stored, and go on."""
        self.later_button.setEnabled(False)
        tasks.start_for(
            self,
            self.session.postpone_recovery_code(),
            lambda _none: self.after_recovery_code(),
            self._postpone_failed,
        )

    def _postpone_failed(self, error: BaseException) -> None:
        self.later_button.setEnabled(True)
        set_role(self.security_key_status, "error")
        self.security_key_status.setText(str(error))

    def _look_for_a_local_server(self) -> None:
        """While the recovery code is read: is there exactly one local server with a
        model? Then it becomes the first provider without the provider page."""
        self.quick_server = None
        if self.session.config.config.llms:
            return
        tasks.start_for(
            self,
            detect_local_servers(self.local_servers),
            self._local_servers_found,
            self._local_servers_failed,
        )

    def _local_servers_found(self, found: list[DetectedServer]) -> None:
        usable = [server for server in found if server.models]
        if len(usable) != 1 or self.from_server_check.isChecked():
            return
        self.quick_server = usable[0]
        log.info("first run: found the model %s on %s", usable[0].models[0], usable[0].server.label)
        self.next_hint.setText(
            f"Next: chat with {usable[0].models[0]} on {usable[0].server.label}, found on "
            "this computer (Settings, Providers changes it)."
        )
        self.next_hint.show()
        self.choose_model_button.show()

    def _local_servers_failed(self, error: BaseException) -> None:
        log.warning("looking for local servers failed", exc_info=error)

    def _choose_another_model(self) -> None:
        self.quick_server = None
        self.next_hint.hide()
        self.choose_model_button.hide()

    def after_recovery_code(self) -> None:
        """Continue from the recovery code: to the sync server when this computer joins
        the others; else straight to the chats with the local server found meanwhile, or
        to the provider page."""
        if not self.from_server_check.isChecked():
            if self.quick_server is not None:
                self._use_local_server(self.quick_server)
                return
            self.show_provider_page()
            return
        self.recovery.set_code(None)  # the code leaves the screen once stored
        if self.sync_page is None:
            self.sync_page = SyncPageWidget(self.session)
            self.sync_page.prefer_pairing_code = self.with_pairing_code
            self.sync_page.stack.currentChanged.connect(self._sync_state_changed)
            self.sync_holder.addWidget(self.sync_page)
        self._sync_state_changed()
        self.setCurrentWidget(self.sync_step_page)

    def _sync_state_changed(self) -> None:
        joined = self.sync_page is not None and self.sync_page.step == "account"
        self.sync_skip_button.setVisible(not joined)
        self.sync_continue_button.setDefault(joined)

    # ----------------------------------------------------------------- page 3

    def _build_provider_page(self) -> None:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.addWidget(_label("Connect a model", "title"))
        layout.addWidget(
            _label(
                "Hushchat talks straight to the LLM servers you choose. Local servers found "
                "on this computer are listed below; pick one, or enter a server by hand."
            )
        )
        self.detect_status = _label("", "hint")
        self.detect_status.setAccessibleName("Local server detection")
        self.detected_list = QListWidget()
        self.detected_list.setAccessibleName("Local servers found")
        self.detected_list.setMaximumHeight(110)
        self.detected_list.hide()  # shown when a server answers
        self.detected_list.currentRowChanged.connect(self._pick_detected)
        self.detect_button = QPushButton("&Look again")
        self.detect_button.setAccessibleName("Look for local servers again")
        self.detect_button.clicked.connect(self.detect)
        detect_row = QHBoxLayout()
        detect_row.addWidget(self.detect_status, 1)
        detect_row.addWidget(self.detect_button)
        layout.addLayout(detect_row)
        layout.addWidget(self.detected_list)
        self.provider_form = ProviderFormWidget()
        self.provider_form.tested.connect(self._provider_tested)
        layout.addWidget(self.provider_form)
        self.provider_error = _label("", "error")
        self.provider_error.setAccessibleName("Problem saving the provider")
        layout.addWidget(self.provider_error)
        self.skip_button = QPushButton("&Skip for now")
        self.skip_button.setAccessibleName("Skip adding a provider")
        self.skip_button.clicked.connect(self.completed.emit)
        self.finish_button = QPushButton("Save and &start")
        self.finish_button.setAccessibleName("Save the provider and start")
        self.finish_button.setDefault(True)
        self.finish_button.clicked.connect(self.save_provider)
        row = QHBoxLayout()
        row.addWidget(self.skip_button)
        row.addStretch(1)
        row.addWidget(self.finish_button)
        layout.addLayout(row)
        self.provider_page = centered_page(box, 620)
        self.addWidget(self.provider_page)

    def show_provider_page(self) -> None:
        """Go to the provider page and look for local servers."""
        self.recovery.set_code(None)  # the code leaves the screen once stored
        if self.sync_page is not None:  # stop following sync (it goes on in the background)
            self.sync_page.stop_watching()
        self.setCurrentWidget(self.provider_page)
        if self.session.config.config.llms:
            self.provider_form.set_entry(self.session.config.config.llms[0])
        self.detect()

    def detect(self) -> None:
        """Ask the local servers on their default ports, in the background."""
        self.detect_button.setEnabled(False)
        self.detect_status.setText("Looking for Ollama, llama.cpp and LM Studio on this computer…")
        tasks.start(
            detect_local_servers(self.local_servers),
            on_done=self._detected,
            on_error=self._detect_failed,
        )

    def _detected(self, found: list[DetectedServer]) -> None:
        self.detect_button.setEnabled(True)
        self.detected = found
        self.detected_list.clear()
        for server in found:
            models = ", ".join(server.models[:3]) or "no models yet"
            item = QListWidgetItem(f"{server.server.label} — {server.server.base_url} — {models}")
            item.setData(Qt.ItemDataRole.UserRole, server.server.base_url)
            self.detected_list.addItem(item)
        self.detected_list.setVisible(bool(found))
        if found:
            self.detect_status.setText(
                f"Found {plural(len(found), 'local server')}; pick one, or choose a preset below."
            )
            self.detected_list.setCurrentRow(0)
        else:
            self.detect_status.setText(
                "No local server answered; choose a preset below or enter a server by hand."
            )

    def _detect_failed(self, error: BaseException) -> None:
        self.detect_button.setEnabled(True)
        self.detect_status.setText(
            f"Looking for local servers failed ({error}); choose a preset below or enter a "
            "server by hand."
        )

    def _pick_detected(self, row: int) -> None:
        if not 0 <= row < len(self.detected):
            return
        found = self.detected[row]
        self.provider_form.set_entry(
            {
                "provider_name": found.server.provider_name,
                "type": found.server.type,
                "base_url": found.server.base_url,
                "model_name": found.models[0] if found.models else "",
                "models": list(found.models),
            }
        )

    def _use_local_server(self, found: DetectedServer) -> None:
        self.recovery.set_code(None)  # the code leaves the screen
        self.continue_button.setEnabled(False)
        self.later_button.setEnabled(False)
        self.next_hint.setText(f"Connecting to {found.server.label}…")
        entry = {
            "provider_name": found.server.provider_name,
            "type": found.server.type,
            "base_url": found.server.base_url,
            "model_name": found.models[0],
            "locality": "on_prem",
        }
        tasks.start_for(
            self,
            self.session.save_provider(entry, api_key=None, make_default=True),
            self._provider_saved,
            self._local_server_failed,
        )

    def _local_server_failed(self, error: BaseException) -> None:
        """Saving the found server failed: the provider page says why and offers the rest."""
        self.quick_server = None
        self.later_button.setEnabled(True)
        self.show_provider_page()
        self.provider_error.setText(str(error))

    def _provider_tested(self, ok: bool) -> None:
        """A successful test answers the last complaint (e.g. "Choose a model")."""
        if ok and self.provider_form.problem() is None:
            self.provider_error.clear()

    def save_provider(self) -> None:
        """Save the entry (API key to the vault or the keychain) and finish."""
        problem = self.provider_form.problem()
        if problem:
            self.provider_error.setText(problem)
            return
        self.provider_error.clear()
        self.finish_button.setEnabled(False)
        entry = self.provider_form.entry()
        api_key = self.provider_form.api_key()
        tasks.start(
            self.session.save_provider(
                entry,
                api_key=api_key,
                key_place=self.provider_form.key_place(),
                make_default=True,
            ),
            on_done=self._provider_saved,
            on_error=self._provider_failed,
        )

    def _provider_saved(self, config: LoadedConfig) -> None:
        self.finish_button.setEnabled(True)
        self.session.apply_config(config)
        self.config_changed.emit()
        self.completed.emit()

    def _provider_failed(self, error: BaseException) -> None:
        self.finish_button.setEnabled(True)
        self.provider_error.setText(str(error))

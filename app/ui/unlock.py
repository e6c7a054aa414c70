"""The unlock screen: passphrase, security key, Touch ID, recovery code.

A wrong secret is shown inline under the field, the typed text is kept (selected, so
typing replaces it) and nothing on disk changes. "Use security key" appears when the
vault has a security-key slot (on Windows it may be Windows Hello); Touch ID only on
macOS with a Touch ID slot. The page says what each way opens: the passphrase, a
security key and the recovery code open Standard and Private chats; this device's
keychain and Touch ID open Standard chats only. After an unlock with the recovery code
it offers to set a new passphrase. Next to the recovery code, for someone who lost it
too, "Recover Standard chats from my sync server…" opens ``app.ui.server_recovery`` (a
new vault with the Standard chats the server kept; the old one is set aside), and
"Finish the recovery…" appears while such a recovery is in progress.

The page can be shown before the session exists (start-up); an unlock asked for then
starts once :meth:`UnlockWidget.set_session` hands the session over.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.errors import WrongSecretError
from app.ui.layout import centered_page, set_role
from app.ui.theme import icon

if TYPE_CHECKING:  # the session's modules load after the first paint: start-up time
    from app.session import Session

__all__ = ["UnlockWidget"]

#: ``app.sync.recovery.PENDING_FILE``, named here: importing the sync layer on the unlock
#: path costs a tenth of a second (a test checks the two agree).
PENDING_RECOVERY_FILE = "sync-recovery.json"

_STANDARD_ONLY = (
    "Opens Standard chats only: Private chats need your passphrase, a security key or the "
    "recovery code."
)


class UnlockWidget(QWidget):
    """Unlock the vault; emits ``unlocked`` on success."""

    unlocked = Signal()

    def __init__(self, session: Session | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self._busy = False
        self._unlock_when_ready = False
        self._method = "passphrase"
        #: The offer to set a new passphrase after a recovery-code unlock (for tests).
        self.passphrase_offer: QMessageBox | None = None
        self.new_passphrase_dialog: QDialog | None = None
        box = QWidget()
        layout = QVBoxLayout(box)
        logo = QLabel()
        logo.setPixmap(icon("hushchat").pixmap(56, 56))
        logo.setAccessibleName("Hushchat")
        title = QLabel("Hushchat is locked")
        title.setProperty("role", "title")
        head = QHBoxLayout()
        head.addWidget(logo)
        head.addSpacing(8)
        head.addWidget(title, 1)
        layout.addLayout(head)
        layout.addSpacing(12)

        self.modes = QStackedWidget()
        self.modes.addWidget(self._passphrase_mode())
        self.modes.addWidget(self._recovery_mode())
        layout.addWidget(self.modes)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setProperty("role", "error")
        self.error_label.setAccessibleName("Unlock error")
        layout.addWidget(self.error_label)

        self.security_key_button = QPushButton(
            "Use Windows &Hello or security key" if sys.platform == "win32" else "Use security &key"
        )
        self.security_key_button.setIcon(icon("key"))
        self.security_key_button.setAccessibleName("Unlock with a security key")
        self.security_key_button.setToolTip("Opens Standard and Private chats.")
        self.security_key_button.clicked.connect(self.unlock_with_security_key)
        self.touch_id_button = QPushButton("Use &Touch ID")
        self.touch_id_button.setAccessibleName("Unlock with Touch ID")
        self.touch_id_button.setToolTip(_STANDARD_ONLY)
        self.touch_id_button.clicked.connect(self.unlock_with_touch_id)
        self.keychain_button = QPushButton("Unlock from this &device's keychain")
        self.keychain_button.setAccessibleName("Unlock with this device's keychain")
        self.keychain_button.setToolTip(_STANDARD_ONLY)
        self.keychain_button.clicked.connect(self.unlock_with_keychain)
        self.recovery_toggle = QPushButton("Use &recovery code")
        self.recovery_toggle.setFlat(True)
        # Reads as a link, aligned with the field above it.
        self.recovery_toggle.setStyleSheet(
            "QPushButton { padding: 4px 0px; text-align: left; color: palette(link); }"
        )
        self.recovery_toggle.setAccessibleName("Use the recovery code instead")
        self.recovery_toggle.clicked.connect(self.toggle_recovery_mode)
        # Lost the passphrase AND the recovery code: the sync server's escrow
        # (``app.ui.server_recovery``). Shown with the recovery code field.
        self.server_recovery_button = QPushButton(
            "Lost the recovery code too? Recover Standard chats from my &sync server…"
        )
        self.server_recovery_button.setFlat(True)
        self.server_recovery_button.setStyleSheet(
            "QPushButton { padding: 4px 0px; text-align: left; color: palette(link); }"
        )
        self.server_recovery_button.setAccessibleName("Recover Standard chats from my sync server")
        self.server_recovery_button.setToolTip(
            "Makes a new vault with the Standard chats your sync server kept; Private chats "
            "are lost. The old vault is kept aside."
        )
        self.server_recovery_button.clicked.connect(lambda: self.recover_from_server())
        self.server_recovery_button.hide()
        self.finish_recovery_button = QPushButton("Fi&nish the recovery from the sync server…")
        self.finish_recovery_button.setAccessibleName("Finish the recovery from the sync server")
        self.finish_recovery_button.setToolTip(
            "A recovery of your Standard chats was started on this computer."
        )
        self.finish_recovery_button.clicked.connect(lambda: self.recover_from_server())
        self.finish_recovery_button.hide()
        #: The dialog of a recovery from the sync server (for tests).
        self.server_recovery: QDialog | None = None
        self.tiers_label = QLabel()
        self.tiers_label.setWordWrap(True)
        self.tiers_label.setProperty("role", "hint")
        self.tiers_label.setAccessibleName("What each way to unlock opens")
        others = QVBoxLayout()
        for button in (self.security_key_button, self.touch_id_button, self.keychain_button):
            others.addWidget(button)
        others.addWidget(self.tiers_label)
        links = QHBoxLayout()
        links.addWidget(self.recovery_toggle)
        links.addStretch(1)
        layout.addSpacing(8)
        layout.addWidget(self.finish_recovery_button)
        layout.addLayout(others)
        layout.addLayout(links)
        layout.addWidget(self.server_recovery_button)
        self.status_label = QLabel()
        self.status_label.setProperty("role", "hint")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(centered_page(box, 440))
        self.refresh()

    def _passphrase_mode(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        label = QLabel("&Passphrase:")
        layout.addWidget(label)
        self.passphrase_edit = QLineEdit()
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName("Passphrase")
        self.passphrase_edit.setPlaceholderText("Your vault passphrase")
        self.passphrase_edit.returnPressed.connect(self.unlock)
        label.setBuddy(self.passphrase_edit)
        self.unlock_button = QPushButton("&Unlock")
        self.unlock_button.setDefault(True)
        self.unlock_button.setAccessibleName("Unlock")
        self.unlock_button.clicked.connect(self.unlock)
        row = QHBoxLayout()
        row.addWidget(self.passphrase_edit, 1)
        row.addWidget(self.unlock_button)
        layout.addLayout(row)
        return page

    def _recovery_mode(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Recovery code (16 groups of 6 digits):"))
        self.recovery_edit = QLineEdit()
        self.recovery_edit.setAccessibleName("Recovery code")
        self.recovery_edit.setPlaceholderText("123456-234567-…")
        self.recovery_edit.returnPressed.connect(self.unlock)
        self.recovery_button = QPushButton("&Unlock")
        self.recovery_button.setAccessibleName("Unlock with the recovery code")
        self.recovery_button.clicked.connect(self.unlock)
        row = QHBoxLayout()
        row.addWidget(self.recovery_edit, 1)
        row.addWidget(self.recovery_button)
        layout.addLayout(row)
        return page

    # ----------------------------------------------------------------- state

    @property
    def session(self) -> Session:
        """The session unlocked here; raises ``RuntimeError`` before it is set."""
        if self._session is None:
            raise RuntimeError("the unlock page has no session yet")
        return self._session

    def set_session(self, session: Session) -> None:
        """Use ``session`` from now on; runs an unlock asked for while there was none."""
        self._session = session
        self.refresh()
        if self._unlock_when_ready:
            self._unlock_when_ready = False
            self._set_busy(False)
            self.unlock()

    def _has_slot(self, kind: str) -> bool:
        return self._session is not None and self._session.has_slot(kind)

    def refresh(self) -> None:
        """Show the unlock methods this vault has; clear any previous message."""
        self.security_key_button.setVisible(self._has_slot("security-key"))
        touch_id = sys.platform == "darwin" and self._has_slot("touch-id")
        self.touch_id_button.setVisible(touch_id)
        keychain = self._has_slot("keychain")
        self.keychain_button.setVisible(keychain)
        device = [name for name, shown in (("keychain", keychain), ("Touch ID", touch_id)) if shown]
        self.tiers_label.setText(
            "Your passphrase, a security key or the recovery code open all your chats; "
            f"this device's {' and '.join(device)} {'open' if len(device) > 1 else 'opens'} "
            "Standard chats only."
            if device
            else ""
        )
        self.tiers_label.setVisible(bool(device))
        self.finish_recovery_button.setVisible(self.has_pending_recovery)
        self.error_label.clear()
        self.status_label.clear()

    def reset(self) -> None:
        """Back to the passphrase mode with empty fields (after a lock)."""
        self.passphrase_edit.clear()
        self.recovery_edit.clear()
        self.modes.setCurrentIndex(0)
        self.recovery_toggle.setText("Use &recovery code")
        self.server_recovery_button.hide()
        self._set_busy(False)
        self.refresh()

    def focus_field(self) -> None:
        """Put the cursor in the secret field."""
        edit = self.recovery_edit if self.in_recovery_mode else self.passphrase_edit
        edit.setFocus()

    @property
    def in_recovery_mode(self) -> bool:
        """Whether the recovery code field is shown instead of the passphrase."""
        return self.modes.currentIndex() == 1

    def toggle_recovery_mode(self) -> None:
        """Switch between passphrase and recovery code."""
        recovery = not self.in_recovery_mode
        self.modes.setCurrentIndex(1 if recovery else 0)
        self.recovery_toggle.setText("Use &passphrase" if recovery else "Use &recovery code")
        self.server_recovery_button.setVisible(recovery)
        self.error_label.clear()
        self.focus_field()

    @property
    def has_pending_recovery(self) -> bool:
        """Whether a recovery from the sync server was started here and not finished."""
        if self._session is None:
            return False
        return (self._session.profile_dir / PENDING_RECOVERY_FILE).exists()

    def recover_from_server(self) -> QDialog | None:
        """Open the recovery from the sync server (or finish the one in progress)."""
        if self._session is None or self._busy:
            return None
        from app.ui.server_recovery import ServerRecoveryDialog

        dialog = ServerRecoveryDialog(self.session, self.window())
        dialog.recovered.connect(self._recovered_from_server)
        dialog.finished.connect(lambda _result: self._server_recovery_closed(dialog))
        self.server_recovery = dialog
        dialog.open()
        return dialog

    def _recovered_from_server(self) -> None:
        """A new vault was made and unlocked with the recovered Standard chats."""
        self.passphrase_edit.clear()
        self.recovery_edit.clear()
        self.modes.setCurrentIndex(0)
        self.recovery_toggle.setText("Use &recovery code")
        self.server_recovery_button.hide()
        self.refresh()
        self.unlocked.emit()

    def _server_recovery_closed(self, dialog: QDialog) -> None:
        if self.server_recovery is dialog:
            self.server_recovery = None
        self.finish_recovery_button.setVisible(self.has_pending_recovery)
        dialog.deleteLater()

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self._busy = busy
        for widget in (
            self.unlock_button,
            self.recovery_button,
            self.security_key_button,
            self.touch_id_button,
            self.keychain_button,
            self.recovery_toggle,
            self.server_recovery_button,
            self.finish_recovery_button,
        ):
            widget.setEnabled(not busy)
        self.status_label.setText(text)

    # ----------------------------------------------------------------- unlocking

    def unlock(self) -> None:
        """Unlock with the typed passphrase or recovery code."""
        if self._busy:
            return
        if self._session is None:  # still starting: unlock as soon as the session is there
            self._unlock_when_ready = True
            self._set_busy(True, "Unlocking…")
            return
        if self.in_recovery_mode:
            code = self.recovery_edit.text().strip()
            if not code:
                self._show_error("Type the recovery code.")
                return
            self._run(self.session.unlock_with_recovery_code(code), "Unlocking…", "recovery")
        else:
            passphrase = self.passphrase_edit.text()
            if not passphrase:
                self._show_error("Type your passphrase.")
                return
            self._run(self.session.unlock_with_passphrase(passphrase), "Unlocking…")

    def unlock_with_security_key(self) -> None:
        """Find the security key and unlock with it (touch and maybe PIN prompts)."""
        if self._busy:
            return
        from app.ui.key_prompts import QtKeyPrompts  # Qt's namespace: after the first paint

        prompts = QtKeyPrompts(self)
        prompts.touch_requested.connect(
            lambda: self.status_label.setText("Touch your security key now…")
        )

        async def unlock() -> None:
            key = await self.session.find_security_key(prompts)
            await self.session.unlock_with_security_key(key)

        self._run(unlock(), "Looking for a security key…", "security-key")

    def unlock_with_touch_id(self) -> None:
        """Unlock with Touch ID (macOS)."""
        if not self._busy:
            self._run(self.session.unlock_with_touch_id(), "Waiting for Touch ID…", "touch-id")

    def unlock_with_keychain(self) -> None:
        """Unlock with the secret remembered in this device's keychain."""
        if not self._busy:
            self._run(self.session.unlock_with_keychain(), "Unlocking…", "keychain")

    def _run(self, coro: Coroutine[Any, Any, None], text: str, method: str = "passphrase") -> None:
        from app.ui import tasks  # loads the provider layer's types: after the first paint

        self._method = method
        self.error_label.clear()
        self._set_busy(True, text)
        tasks.start(coro, on_done=self._unlocked, on_error=self._failed)

    def _unlocked(self, _result: None) -> None:
        self._set_busy(False)
        self.passphrase_edit.clear()
        self.recovery_edit.clear()
        self.unlocked.emit()
        if self.session.locked_tiers:
            self._tell_window(
                "Standard chats are open. Unlock with your passphrase to open Private chats "
                "(Settings, Security page: Open Private chats…)."
            )
        if self._method == "recovery":
            self.offer_new_passphrase()

    def _tell_window(self, message: str) -> None:
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(message)

    def offer_new_passphrase(self) -> QMessageBox:
        """After a recovery-code unlock: offer to set a new passphrase (the recovery code
        is for a forgotten one). Yes opens the change-passphrase dialog, which then needs
        no current passphrase."""
        offer = QMessageBox(self.window())
        offer.setIcon(QMessageBox.Icon.Question)
        offer.setWindowTitle("Set a new passphrase?")
        offer.setText(
            "You unlocked with the recovery code. Set a new passphrase now? (You can also "
            "do it later in Settings, on the Security page.)"
        )
        offer.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        offer.setDefaultButton(QMessageBox.StandardButton.Yes)
        offer.finished.connect(self._offer_answered)
        self.passphrase_offer = offer
        offer.open()
        return offer

    def _offer_answered(self, result: int) -> None:
        offer, self.passphrase_offer = self.passphrase_offer, None
        if offer is None or offer.standardButton(offer.clickedButton()) != (
            QMessageBox.StandardButton.Yes
        ):
            return
        from app.ui.settings import ChangePassphraseDialog  # Qt dialogs of the settings

        dialog = ChangePassphraseDialog(self.session, self.window())
        dialog.accepted.connect(lambda: self._tell_window("Passphrase set."))
        self.new_passphrase_dialog = dialog
        dialog.open()

    def _failed(self, error: BaseException) -> None:
        self._set_busy(False)
        if isinstance(error, WrongSecretError) and not self.in_recovery_mode:
            message = str(error) or "That passphrase does not unlock this vault."
        else:
            message = str(error) or type(error).__name__
        self._show_error(message)

    def _show_error(self, message: str) -> None:
        set_role(self.error_label, "error")
        self.error_label.setText(message)
        edit = self.recovery_edit if self.in_recovery_mode else self.passphrase_edit
        edit.setFocus()
        edit.selectAll()

"""Signing in to a sync server: the form the Sync settings page and the server recovery share.

The form holds the server address, this device's name and the ways to sign in the server
offers (asked with :func:`app.sync.login.sign_in_methods` the first time): the browser
(OIDC, the default), a code entered on another device, or the server's own e-mail and
password accounts. It does not run the sign-in itself: it emits :attr:`SignInForm.chosen`
with a title ("Continue in your browser…", or "" for e-mail and password) and a
``flow(output)`` that makes the sign-in's coroutine; the page that hosts it runs that
(with its own waiting screen, cancel and error handling) and writes what the flow prints
for the user (an address, a code) to ``output``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeyEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.sync import login
from app.sync.account import SyncAccount
from app.sync.dpop import DeviceKey
from app.ui import tasks

__all__ = ["ShownText", "SignInFlow", "SignInForm", "hint_label", "on_enter", "password_edit"]

#: Makes a sign-in's coroutine; what it prints for the user goes to the stream given.
SignInFlow = Callable[[TextIO], Coroutine[Any, Any, SyncAccount]]

DEFAULT_SERVER_HINT = "https://sync.example.org"


def hint_label(text: str = "") -> QLabel:
    """A wrapped label in the theme's hint style."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setProperty("role", "hint")
    return label


def password_edit(name: str) -> QLineEdit:
    """A field whose text is not shown, with its accessible name."""
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    edit.setAccessibleName(name)
    return edit


class _EnterFilter(QObject):
    """Enter in a field runs the step's action (and goes no further: the dialog's own
    default button would close it)."""

    def __init__(self, action: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self._action = action

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            self._action()
            return True
        return False


def on_enter(edit: QLineEdit, action: Callable[[], None]) -> None:
    """Enter in ``edit`` runs ``action``."""
    edit.installEventFilter(_EnterFilter(action, edit))


class ShownText(io.StringIO):
    """What a sign-in flow writes for the user (the browser address when no browser
    opened, the code to enter elsewhere), shown in a label as it arrives."""

    def __init__(self, label: QLabel) -> None:
        super().__init__()
        self._label = label

    def write(self, text: str) -> int:
        written = super().write(text)
        if shiboken6.isValid(self._label):
            self._label.setText(self.getvalue().strip())
        return written


class SignInForm(QWidget):
    """Server address, device name, and the sign-in buttons the server calls for."""

    #: ``(title, flow)``: a sign-in for the host to run (title "" for e-mail/password).
    chosen = Signal(str, object)
    #: ``(text, is_error)``: a line for the host's message area.
    said = Signal(str, bool)

    def __init__(
        self,
        intro: str,
        *,
        device_key: Callable[[], DeviceKey | None] = lambda: None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._device_key = device_key
        self.methods: login.SignInMethods | None = None
        self.server_edit = QLineEdit()
        self.server_edit.setPlaceholderText(DEFAULT_SERVER_HINT)
        self.server_edit.setAccessibleName("Sync server address")
        self.server_edit.textEdited.connect(lambda _text: self.forget_methods())
        self.device_name_edit = QLineEdit(login.default_device_name())
        self.device_name_edit.setAccessibleName("This device's name")
        self.sign_in_button = QPushButton("Si&gn in")
        self.sign_in_button.setAccessibleName("Sign in to the sync server")
        self.sign_in_button.clicked.connect(self.sign_in)
        self.code_button = QPushButton("Sign in with a &code")
        self.code_button.setAccessibleName("Sign in with a code entered on another device")
        self.code_button.setToolTip(
            "For when the browser is on another device: you get a code to enter there."
        )
        self.code_button.clicked.connect(self.sign_in_with_code)
        self.code_button.hide()
        self.email_edit = QLineEdit()
        self.email_edit.setAccessibleName("E-mail address")
        self.password_edit = password_edit("Password")
        self.local_button = QPushButton("Sign in with &e-mail")
        self.local_button.setAccessibleName("Sign in with e-mail and password")
        self.local_button.clicked.connect(self.sign_in_local)
        self.local_box = QGroupBox("E-mail and password")
        local = QFormLayout(self.local_box)
        local.addRow("E-&mail:", self.email_edit)
        local.addRow("Pass&word:", self.password_edit)
        local.addRow("", self.local_button)
        self.local_box.hide()
        on_enter(self.server_edit, self.sign_in)
        on_enter(self.device_name_edit, self.sign_in)
        on_enter(self.email_edit, self.sign_in_local)
        on_enter(self.password_edit, self.sign_in_local)

        form = QFormLayout()
        form.addRow("Sync ser&ver:", self.server_edit)
        form.addRow("This &device:", self.device_name_edit)
        self.buttons = QHBoxLayout()
        self.buttons.addWidget(self.sign_in_button)
        self.buttons.addWidget(self.code_button)
        self.buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(hint_label(intro))
        layout.addLayout(form)
        layout.addLayout(self.buttons)
        layout.addWidget(self.local_box)

    def set_busy(self, busy: bool) -> None:
        """Disable the sign-in buttons while something runs."""
        for button in (self.sign_in_button, self.code_button, self.local_button):
            button.setEnabled(not busy)

    def forget_methods(self) -> None:
        """Another server address: ask again how to sign in."""
        self.methods = None
        self.code_button.hide()
        self.local_box.hide()

    def server_url(self) -> str | None:
        """The typed address, or None (said, with the focus on the field)."""
        url = self.server_edit.text().strip()
        if not url:
            self.said.emit("Type the address of your sync server first.", True)
            self.server_edit.setFocus()
            return None
        return url

    def device_name(self) -> str:
        return self.device_name_edit.text().strip() or login.default_device_name()

    def sign_in(self) -> None:
        """Ask the server how to sign in; the browser flow, or the e-mail and password
        fields of a server with only its own accounts."""
        url = self.server_url()
        if url is None or not self.sign_in_button.isEnabled():
            return
        if self.methods is not None and self.methods.server_url.rstrip("/") == url.rstrip("/"):
            self._sign_in_with(self.methods)
            return
        self.set_busy(True)
        self.said.emit(f"Asking {url} how to sign in…", False)
        tasks.start_for(self, login.sign_in_methods(url), self._sign_in_with, self._methods_failed)

    def _methods_failed(self, error: BaseException) -> None:
        from app.ui.sync_settings import plain

        self.set_busy(False)
        self.said.emit(plain(error), True)

    def _sign_in_with(self, methods: login.SignInMethods) -> None:
        self.methods = methods
        self.set_busy(False)
        self.code_button.setVisible(methods.device_code)
        self.local_box.setVisible(methods.local_accounts)
        if methods.browser:
            self.sign_in_with_browser()
        elif methods.local_accounts:
            self.said.emit(
                "This server has its own accounts: sign in with your e-mail and password.", False
            )
            self.email_edit.setFocus()
        else:
            self.said.emit(
                "This sync server offers no way to sign in that Hushchat knows; ask its "
                "administrator.",
                True,
            )

    def sign_in_with_browser(self) -> None:
        """The identity provider's page in the browser."""
        url = self.server_url()
        if url is None:
            return
        name, key = self.device_name(), self._device_key()

        def flow(output: TextIO) -> Coroutine[Any, Any, SyncAccount]:
            return login.sign_in_with_browser(
                url,
                device_name=name,
                device_key=key,
                open_browser=lambda address: QDesktopServices.openUrl(QUrl(address)),
                output=output,
            )

        self.chosen.emit("Continue in your browser…", flow)

    def sign_in_with_code(self) -> None:
        """A code to enter on another device (the device authorization grant)."""
        url = self.server_url()
        if url is None:
            return
        name, key = self.device_name(), self._device_key()

        def flow(output: TextIO) -> Coroutine[Any, Any, SyncAccount]:
            return login.sign_in_with_device_code(
                url, device_name=name, device_key=key, output=output
            )

        self.chosen.emit("Enter the code on another device…", flow)

    def sign_in_local(self) -> None:
        """The server's own account: e-mail and password."""
        url = self.server_url()
        if url is None:
            return
        email, password = self.email_edit.text().strip(), self.password_edit.text()
        if not email or not password:
            self.said.emit("Type your e-mail address and password.", True)
            (self.email_edit if not email else self.password_edit).setFocus()
            return
        self.said.emit(f"Signing in to {url}…", False)
        name, key = self.device_name(), self._device_key()

        def flow(_output: TextIO) -> Coroutine[Any, Any, SyncAccount]:
            return login.sign_in_local(url, email, password, device_name=name, device_key=key)

        self.chosen.emit("", flow)

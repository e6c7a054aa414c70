"""The settings dialog: providers, appearance, behaviour, attachments, voice, security, sync.

Changes apply at once and are written to the config file (comments kept, atomic
write); API keys go to the vault or the OS keychain, the file says ``api_key: vault`` or
``api_key: keychain``.
Security actions (key slots, passphrase, recovery code, key rotation, opening Private
chats after a keychain unlock) call the vault through the session, off the UI thread.
A rotation or a Private unlock closes and reopens every chat like a lock and unlock: the
window's chat area (``MainWindow.chat_area``) is cleared before and reloaded after.
The Sync tab is ``app.ui.sync_settings.SyncPageWidget``, the Voice tab
``app.ui.voice_settings.VoicePageWidget``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pydantic import ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.config import AttachmentSettings, LLMEntry, LoadedConfig
from app.errors import HushchatError, WrongSecretError
from app.provider_setup import (
    connection_problem,
    save_attachment_settings,
    save_ui_settings,
    test_connection,
)
from app.session import Session
from app.ui import tasks
from app.ui.first_run import PassphraseFieldsWidget, RecoveryCodeWidget
from app.ui.key_prompts import QtKeyPrompts
from app.ui.layout import set_role
from app.ui.provider_form import ProviderFormWidget
from app.ui.sync_settings import SyncPageWidget
from app.ui.voice_settings import VoicePageWidget
from app.vault.recovery_code import RecoveryCode
from app.vault.vault import Rotation, SlotInfo, TouchedKey

if TYPE_CHECKING:
    from app.ui.voice import Speaker

__all__ = [
    "ChangePassphraseDialog",
    "ProviderDialog",
    "RecoveryCodeDialog",
    "RotateKeysDialog",
    "SettingsDialog",
]

T = TypeVar("T")

_SLOT_KINDS = {
    "passphrase": "Passphrase",
    "recovery": "Recovery code",
    "security-key": "Security key",
    "keychain": "Device keychain",
    "touch-id": "Touch ID",
}


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setProperty("role", "hint")
    return label


def _description(model: type[Any], name: str) -> str:
    """The config schema's description of field ``name`` (tooltips say what it does)."""
    return str(model.model_fields[name].description or "")


def _bounds(model: type[Any], name: str) -> tuple[Any, Any]:
    """The smallest and largest value the config schema allows for field ``name``."""
    low = high = None
    for rule in model.model_fields[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


class ProviderDialog(QDialog):
    """Add or edit one provider; saving keeps the API key in the vault or the keychain."""

    def __init__(
        self, session: Session, entry: dict[str, Any] | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self._replaces = str(entry["provider_name"]) if entry else None
        self.setWindowTitle("Edit provider" if entry else "Add provider")
        self.form = ProviderFormWidget()
        if entry:
            self.form.set_entry(entry)
            if entry.get("api_key"):
                stored = LLMEntry.model_validate(entry)
                self.form.stored_key = lambda: session.api_keys.resolve(stored)
        self.form.tested.connect(self._tested)
        self.error_label = QLabel()
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.error_label.setAccessibleName("Problem saving the provider")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = self._layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(
            _hint(
                "API keys are kept in the vault or your operating system's keychain, never "
                "in the config file."
            )
        )
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.resize(600, self.sizeHint().height())

    def showEvent(self, event: QShowEvent) -> None:
        """Fit the height to the contents once the style is applied."""
        super().showEvent(event)
        self._fit_height()

    def _fit_height(self) -> None:
        """Keep the form at its natural height when a wrapped message grows: Qt does not
        count word-wrapped labels in a window's minimum height, so a long error used to
        squeeze the fields instead of making the dialog taller."""
        self._layout.activate()
        needed = self._layout.totalHeightForWidth(self.width())
        if needed > 0:
            self.setMinimumHeight(needed)
            if needed > self.height():
                self.resize(self.width(), needed)

    def _tested(self, ok: bool) -> None:
        """A successful test answers the last complaint (e.g. "Choose a model")."""
        if ok and self.form.problem() is None:
            self.error_label.clear()
        self._fit_height()

    def save(self) -> None:
        """Validate, write the config entry and keep the key, then close."""
        problem = self.form.problem()
        if problem:
            self.error_label.setText(problem)
            return
        self.error_label.clear()
        self.buttons.setEnabled(False)
        tasks.start_for(
            self,
            self.session.save_provider(
                self.form.entry(),
                api_key=self.form.api_key(),
                key_place=self.form.key_place(),
                replaces=self._replaces,
                make_default=not self.session.config.config.llms,
            ),
            self._saved,
            self._failed,
        )

    def _saved(self, config: LoadedConfig) -> None:
        self.session.apply_config(config)
        self.buttons.setEnabled(True)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.buttons.setEnabled(True)
        self.error_label.setText(str(error))
        self._fit_height()


class ChangePassphraseDialog(QDialog):
    """The current passphrase, then a new one typed twice with the strength meter.

    The current passphrase is asked for (and checked) unless the vault has none or was
    unlocked with the recovery code (a forgotten passphrase is what that code is for). A
    weak new passphrase is refused with the reason until "Use anyway" is chosen. With
    "Also rotate all keys" ticked, ``rotation_requested(new, current)`` is emitted instead
    of changing the slot: the settings dialog runs the rotation (it reopens the chats).
    """

    rotation_requested = Signal(str, object)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Change passphrase")
        self.needs_current = session.has_slot("passphrase") and session.unlocked_with != "recovery"
        self.current_edit = QLineEdit()
        self.current_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.current_edit.setAccessibleName("Current passphrase")
        self.current_edit.setVisible(self.needs_current)
        self.fields = PassphraseFieldsWidget(session.runner)
        self.fields.weak_accepted.connect(self.change)
        self.rotate_check = QCheckBox("Also &rotate all keys")
        self.rotate_check.setAccessibleName("Also rotate all keys")
        self.rotate_check.setToolTip(
            "New vault and database keys and a new recovery code: an old copy of the vault "
            "file opens nothing with the old passphrase. Chats close and reopen (Ephemeral "
            "chats vanish)."
        )
        self.error_label = QLabel()
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.change)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(
            _hint("Your chats stay as they are; only the passphrase that unlocks them changes.")
        )
        if self.needs_current:
            current = QFormLayout()
            current.addRow("C&urrent passphrase:", self.current_edit)
            layout.addLayout(current)
        else:
            layout.addWidget(
                _hint("You unlocked with the recovery code: choose a new passphrase.")
                if session.unlocked_with == "recovery"
                else _hint("This vault has no passphrase yet.")
            )
        layout.addWidget(self.fields)
        layout.addWidget(self.rotate_check)
        layout.addWidget(
            _hint(
                "Without rotation, a copy of the vault file made earlier still opens with "
                "the old passphrase."
            )
        )
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.resize(480, self.sizeHint().height())

    def change(self) -> None:
        """Check the current and the new passphrase, then change it (in the background)."""
        problem = self.fields.problem()
        current = self.current_edit.text() if self.needs_current else None
        if self.needs_current and not current:
            problem = "Type your current passphrase."
        if problem:
            self.error_label.setText(problem)
            return
        self.buttons.setEnabled(False)
        self.error_label.clear()
        new = self.fields.passphrase()
        rotate = self.rotate_check.isChecked()

        async def change() -> bool:
            await self.fields.check_strength()
            if rotate:
                if current is not None:
                    await self.session.verify_passphrase(current)
                return True
            await self.session.change_passphrase(new, current=current)
            return False

        def done(rotating: bool) -> None:
            self.rotating = rotating
            self.accept()
            if rotating:
                self.rotation_requested.emit(new, current)

        tasks.start(change(), on_done=done, on_error=self._failed)

    def _failed(self, error: BaseException) -> None:
        self.buttons.setEnabled(True)
        self.error_label.setText(str(error))
        self.fields.offer_use_anyway(error)
        if isinstance(error, WrongSecretError) and self.needs_current:
            self.current_edit.setFocus()
            self.current_edit.selectAll()

    def done(self, result: int) -> None:
        """Forget the typed passphrases when the dialog closes."""
        self.fields.clear()
        self.current_edit.clear()
        super().done(result)


class RotateKeysDialog(QDialog):
    """Rotate every key: the passphrase typed again, security keys touched again.

    Says which slots the rotation keeps and which it drops before anything happens;
    ``rotation_requested(passphrase, touched, drop)`` starts it (the settings dialog runs
    it). ``drop`` holds slots removed on the way (remove-and-rotate).
    """

    rotation_requested = Signal(object, object, object)

    def __init__(
        self, session: Session, drop: tuple[str, ...] = (), parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.drop = drop
        self.touched: list[TouchedKey] = []
        self.setWindowTitle("Rotate keys")
        slots = [slot for slot in session.slots() if slot.id not in drop]
        self.keeps_passphrase = any(slot.kind == "passphrase" for slot in slots)
        layout = QVBoxLayout(self)
        layout.addWidget(
            _hint(
                "Hushchat makes a new vault key and new database keys and re-encrypts both "
                "databases. Afterwards an old copy of the vault file opens nothing, with any "
                "old secret. You get a new recovery code; the old one stops working."
            )
        )
        form = QFormLayout()
        self.passphrase_edit = QLineEdit()
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName("Passphrase to keep")
        self.passphrase_edit.textChanged.connect(lambda _text: self._update())
        if self.keeps_passphrase:
            form.addRow("Your &passphrase:", self.passphrase_edit)
        self.key_buttons: dict[str, QPushButton] = {}
        for slot in slots:
            if slot.kind != "security-key":
                continue
            button = QPushButton("&Touch to keep")
            button.setAccessibleName(f"Touch security key {slot.label} to keep it")
            button.clicked.connect(self.touch_security_key)
            self.key_buttons[slot.id] = button
            form.addRow(f"{slot.label}:", button)
        layout.addLayout(form)
        if self.keeps_passphrase and session.unlocked_with == "recovery":
            layout.addWidget(
                _hint("Forgot it? Use Change passphrase… instead, with “Also rotate all keys”.")
            )
        if any(slot.kind in ("keychain", "touch-id") for slot in slots):
            layout.addWidget(_hint("This device's keychain and Touch ID slots are re-created."))
        self.drops_label = QLabel()
        self.drops_label.setWordWrap(True)
        self.drops_label.setAccessibleName("Key slots the rotation drops")
        layout.addWidget(self.drops_label)
        self.status_label = _hint("")
        layout.addWidget(self.status_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.rotate_button = self.buttons.addButton(
            "&Rotate keys", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.rotate_button.setAccessibleName("Rotate keys")
        self.buttons.accepted.connect(self.rotate)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._update()
        self.resize(500, self.sizeHint().height())

    def dropped(self) -> list[SlotInfo]:
        """The slots the rotation would drop with what is typed and touched now."""
        return self.session.rotation_drops(
            keep_passphrase=bool(self.passphrase_edit.text()),
            touched=[item.slot_id for item in self.touched],
            drop=self.drop,
        )

    def _update(self) -> None:
        dropped = self.dropped()
        if dropped:
            names = ", ".join(f"{_SLOT_KINDS.get(s.kind, s.kind)} “{s.label}”" for s in dropped)
            self.drops_label.setText(f"Dropped (their secrets will open nothing): {names}.")
            set_role(self.drops_label, "error")
        else:
            self.drops_label.setText("Every way to unlock is kept.")
            set_role(self.drops_label, "hint")

    def touch_security_key(self) -> None:
        """Find a security key and touch it: its slot is kept under a fresh secret."""
        prompts = QtKeyPrompts(self)
        prompts.touch_requested.connect(
            lambda: self.status_label.setText("Touch your security key now…")
        )
        self.status_label.setText("Looking for a security key…")

        async def touch() -> TouchedKey:
            key = await self.session.find_security_key(prompts)
            return await self.session.touch_security_key(key)

        tasks.start(touch(), on_done=self.add_touched, on_error=self._failed)

    def add_touched(self, item: TouchedKey) -> None:
        """Keep the security key that was touched."""
        self.touched = [t for t in self.touched if t.slot_id != item.slot_id] + [item]
        button = self.key_buttons.get(item.slot_id)
        if button is not None:
            button.setText("Kept")
            button.setEnabled(False)
        self.status_label.setText("")
        self._update()

    def _failed(self, error: BaseException) -> None:
        set_role(self.status_label, "error")
        self.status_label.setText(str(error))

    def rotate(self) -> None:
        """Hand the secrets to the settings dialog, which rotates and reopens the chats."""
        passphrase = self.passphrase_edit.text() or None
        if self.keeps_passphrase and passphrase is None:
            answer = QMessageBox.question(
                self,
                "Rotate keys",
                "Without your passphrase the rotated vault has no passphrase slot: only the "
                "other ways listed will unlock it. Rotate anyway?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.rotation_requested.emit(passphrase, tuple(self.touched), self.drop)
        self.accept()

    def done(self, result: int) -> None:
        """Forget the typed passphrase and the touched secrets."""
        self.passphrase_edit.clear()
        self.touched = []
        super().done(result)


class _ChatArea(Protocol):
    """What the window's chat area offers around a lock (``MainWindow.chat_area``)."""

    def clear(self) -> None: ...

    def load(self) -> None: ...

    def has_ephemeral_chats(self) -> bool: ...


class RecoveryCodeDialog(QDialog):
    """Shows a new recovery code; closes only once the user confirmed storing it."""

    def __init__(self, code: RecoveryCode, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New recovery code")
        self.code_widget = RecoveryCodeWidget()
        self.code_widget.set_code(code)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(False)
        self.code_widget.confirmed.connect(ok.setEnabled)
        self.buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(_hint("The old recovery code no longer works. Store this one offline."))
        layout.addWidget(self.code_widget)
        layout.addWidget(self.buttons)

    def done(self, result: int) -> None:
        """Take the code off the screen."""
        self.code_widget.set_code(None)
        super().done(result)


class SettingsDialog(QDialog):
    """Providers, appearance, behaviour, security and sync, in tabs."""

    appearance_changed = Signal()
    config_changed = Signal()
    #: The ``attachments:`` settings or an ``embedding_model`` were saved (and applied).
    attachment_settings_changed = Signal()
    #: Every chat was closed and reopened (a rotation, opening Private chats): the
    #: session's services are new ones (sync included).
    chats_reopened = Signal()

    def __init__(
        self,
        session: Session,
        parent: QWidget | None = None,
        *,
        speaker_source: Callable[[], Speaker] | None = None,
    ) -> None:
        """``speaker_source`` gives the window's speaker (the Voice tab lists voices and
        reads its test phrase with it)."""
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Settings")
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Settings sections")
        self.tabs.addTab(self._providers_tab(), "&Providers")
        self.tabs.addTab(self._appearance_tab(), "&Appearance")
        self.tabs.addTab(self._behaviour_tab(), "&Behaviour")
        self.tabs.addTab(self._security_tab(), "&Security")
        self.attachments_page = self._attachments_tab()
        self.tabs.addTab(self.attachments_page, "A&ttachments")
        self.voice_page = VoicePageWidget(session, speaker_source)
        self.tabs.addTab(self.voice_page, "Vo&ice")
        self.voice_page.config_changed.connect(self.config_changed)
        self.voice_page.status_changed.connect(self._show_status)
        self.sync_page = SyncPageWidget(session)
        self.tabs.addTab(self.sync_page, "S&ync")
        self.chats_reopened.connect(self.sync_page.follow_new_service)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setAccessibleName("Settings status")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.status_label)
        layout.addWidget(buttons)
        self.resize(640, 480)
        self.refresh_providers()
        self.refresh_slots()

    def _show_status(self, text: str, *, error: bool = False) -> None:
        set_role(self.status_label, "error" if error else "hint")
        self.status_label.setText(text)

    def show_page(self, name: str) -> None:
        """Show the tab ``name`` (``"sync"``, ``"attachments"``, ``"voice"``; the others by
        their index in ``tabs``)."""
        if name == "sync":
            self.tabs.setCurrentWidget(self.sync_page)
        elif name == "voice":
            self.tabs.setCurrentWidget(self.voice_page)
        elif name == "attachments":
            self.tabs.setCurrentWidget(self.attachments_page)

    def done(self, result: int) -> None:
        """Closing: a sign-in waiting for the browser stops, the Sync tab stops following
        the sync status."""
        self.sync_page.stop_watching()
        super().done(result)

    # ----------------------------------------------------------------- providers

    def _providers_tab(self) -> QWidget:
        page = QWidget()
        self.provider_list = QListWidget()
        self.provider_list.setAccessibleName("Configured providers")
        self.provider_list.setSpacing(3)
        self.provider_list.itemDoubleClicked.connect(lambda _item: self.edit_provider())
        self.add_provider_button = QPushButton("A&dd…")
        self.add_provider_button.setAccessibleName("Add provider")
        self.add_provider_button.clicked.connect(self.add_provider)
        self.edit_provider_button = QPushButton("&Edit…")
        self.edit_provider_button.setAccessibleName("Edit provider")
        self.edit_provider_button.clicked.connect(self.edit_provider)
        self.remove_provider_button = QPushButton("&Remove")
        self.remove_provider_button.setAccessibleName("Remove provider")
        self.remove_provider_button.clicked.connect(self.remove_selected_provider)
        buttons = QVBoxLayout()
        for button in (
            self.add_provider_button,
            self.edit_provider_button,
            self.remove_provider_button,
        ):
            buttons.addWidget(button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.provider_list, 1)
        row.addLayout(buttons)
        layout = QVBoxLayout(page)
        layout.addLayout(row)
        layout.addWidget(
            _hint(
                "Private chats may use on-prem providers only; Ephemeral chats on-prem or "
                "free ones. Test a provider from its Edit dialog."
            )
        )
        return page

    def refresh_providers(self) -> None:
        """List the configured providers, the default first-marked."""
        config = self.session.config.config
        default = config.default_llm or (config.llms[0].provider_name if config.llms else None)
        self.provider_list.clear()
        for entry in config.llms:
            mark = "  (default)" if entry.provider_name == default else ""
            text = (
                f"{entry.provider_name}{mark}\n{entry.model_name} · {entry.base_url} · "
                f"{entry.effective_locality.value.replace('_', '-')}"
            )
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, entry.provider_name)
            self.provider_list.addItem(item)
        has = bool(config.llms)
        self.edit_provider_button.setEnabled(has)
        self.remove_provider_button.setEnabled(has)
        if has:
            self.provider_list.setCurrentRow(0)

    def _selected_provider(self) -> str | None:
        item = self.provider_list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def add_provider(self) -> ProviderDialog:
        """Open the add-provider dialog (returned for tests)."""
        return self._open_provider_dialog(None)

    def edit_provider(self) -> ProviderDialog | None:
        """Open the edit dialog of the selected provider."""
        name = self._selected_provider()
        if name is None:
            return None
        entry = self.session.config.config.llm(name).model_dump(mode="json")
        return self._open_provider_dialog(entry)

    def _open_provider_dialog(self, entry: dict[str, Any] | None) -> ProviderDialog:
        dialog = ProviderDialog(self.session, entry, self)
        dialog.accepted.connect(self._provider_saved)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _provider_saved(self) -> None:
        self.refresh_providers()
        self.config_changed.emit()
        self._show_status("Provider saved.")

    def remove_selected_provider(self, *, confirm: bool = True) -> None:
        """Remove the selected provider (and its kept API key) after confirmation."""
        name = self._selected_provider()
        if name is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Remove provider",
                f"Remove “{name}”? Chats that use it will use the default provider.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        tasks.start(
            self.session.remove_provider(name),
            on_done=self._config_saved,
            on_error=lambda error: self._show_status(str(error), error=True),
        )

    def _config_saved(self, config: LoadedConfig) -> None:
        self.session.apply_config(config)
        self.refresh_providers()
        self.config_changed.emit()
        self._show_status("Saved.")

    # ----------------------------------------------------------------- appearance

    def _appearance_tab(self) -> QWidget:
        ui = self.session.config.config.ui
        page = QWidget()
        self.theme_group = QButtonGroup(self)
        self.theme_buttons: dict[str, QRadioButton] = {}
        theme_box = QVBoxLayout()
        for value, label in (
            ("system", "F&ollow the system"),
            ("light", "&Light"),
            ("dark", "&Dark"),
        ):
            button = QRadioButton(label)
            button.setAccessibleName(f"Theme: {value}")
            button.setChecked(ui.theme == value)
            self.theme_group.addButton(button)
            self.theme_buttons[value] = button
            theme_box.addWidget(button)
            button.toggled.connect(lambda on, v=value: self._theme_toggled(on, v))
        self.font_spin = QSpinBox()
        self.font_spin.setRange(8, 32)
        self.font_spin.setValue(ui.font_size)
        self.font_spin.setSuffix(" pt")
        self.font_spin.setAccessibleName("Font size")
        self.font_spin.valueChanged.connect(lambda size: self.set_ui(font_size=size))
        form = QFormLayout(page)
        form.addRow("Theme:", theme_box)
        form.addRow("&Font size:", self.font_spin)
        return page

    # ----------------------------------------------------------------- behaviour

    def _behaviour_tab(self) -> QWidget:
        ui = self.session.config.config.ui
        page = QWidget()
        self.send_key_combo = QComboBox()
        self.send_key_combo.setAccessibleName("Send key")
        self.send_key_combo.addItem("Enter sends, Shift+Enter starts a new line", "enter")
        self.send_key_combo.addItem("Ctrl+Enter sends, Enter starts a new line", "ctrl_enter")
        self.send_key_combo.setCurrentIndex(max(0, self.send_key_combo.findData(ui.send_key)))
        self.send_key_combo.currentIndexChanged.connect(
            lambda _i: self.set_ui(send_key=self.send_key_combo.currentData())
        )
        self.auto_lock_spin = QSpinBox()
        self.auto_lock_spin.setRange(0, 1440)
        self.auto_lock_spin.setValue(ui.auto_lock_minutes)
        self.auto_lock_spin.setSuffix(" min")
        self.auto_lock_spin.setSpecialValueText("Never")
        self.auto_lock_spin.setAccessibleName("Lock after idle minutes")
        self.auto_lock_spin.valueChanged.connect(
            lambda minutes: self.set_ui(auto_lock_minutes=minutes)
        )
        form = QFormLayout(page)
        form.addRow("Se&nding:", self.send_key_combo)
        form.addRow("&Lock when idle for:", self.auto_lock_spin)
        form.addRow("", _hint("Locking closes all chats; Ephemeral chats vanish."))
        return page

    def _theme_toggled(self, on: bool, theme: str) -> None:
        if on:
            self.set_ui(theme=theme)

    def set_ui(self, **values: Any) -> None:
        """Apply ``ui:`` settings now and write them to the config file."""
        current = self.session.config.config.ui.model_dump(mode="json")
        current.update(values)
        # Apply at once (the file write follows in the background).
        ui = type(self.session.config.config.ui).model_validate(current)
        config = self.session.config.config.model_copy(update={"ui": ui})
        self.session.apply_config(
            LoadedConfig(config, self.session.config.path, self.session.config.env)
        )
        self.appearance_changed.emit()
        tasks.start(
            self.session.runner.blocking(save_ui_settings, self.session.config, current),
            on_done=self._ui_saved,
            on_error=lambda error: self._show_status(str(error), error=True),
        )

    def _ui_saved(self, _config: LoadedConfig) -> None:
        # Already applied in set_ui; a later change may be on its way, so keep that one.
        self.config_changed.emit()
        self._show_status("Saved.")

    # ----------------------------------------------------------------- attachments

    def _attachments_tab(self) -> QWidget:
        config = self.session.config.config
        settings = config.attachments
        page = QWidget()
        self.max_size_edit = QLineEdit(str(settings.max_size_mb))
        self.max_size_edit.setAccessibleName("Maximum attachment size in MB")
        self.max_size_edit.setToolTip(_description(AttachmentSettings, "max_size_mb"))
        self.inline_edit = QLineEdit(str(settings.inline_max_chars))
        self.inline_edit.setAccessibleName("Send whole up to this many characters")
        self.inline_edit.setToolTip(_description(AttachmentSettings, "inline_max_chars"))
        form = QFormLayout()
        form.addRow("&Largest file (MB):", self.max_size_edit)
        form.addRow("Send &whole up to (characters):", self.inline_edit)
        form.addRow(
            "",
            _hint(
                "A longer file is searched: only its most relevant parts go with each "
                "question (0: always search)."
            ),
        )
        self.embedding_combos: dict[str, QComboBox] = {}
        self.list_embedding_buttons: dict[str, QPushButton] = {}
        if config.llms:
            heading = QLabel("Embedding model of each provider")
            font = heading.font()
            font.setBold(True)
            heading.setFont(font)
            form.addRow(heading)
            form.addRow(
                _hint(
                    "It finds the relevant parts of long files by meaning; empty: keyword "
                    "search (BM25) only. A chat uses its own provider's."
                )
            )
        for entry in config.llms:
            combo = QComboBox()
            combo.setEditable(True)
            combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            combo.setEditText(entry.embedding_model or "")
            line = combo.lineEdit()
            if line is not None:
                line.setPlaceholderText("none: keyword search only")
                line.returnPressed.connect(self.save_attachment_settings)
            combo.setAccessibleName(f"Embedding model of {entry.provider_name}")
            combo.setToolTip(_description(LLMEntry, "embedding_model"))
            button = QPushButton("List models")
            button.setAccessibleName(f"List the models of {entry.provider_name}")
            button.clicked.connect(
                lambda _checked=False, name=entry.provider_name: self.list_embedding_models(name)
            )
            row = QHBoxLayout()
            row.addWidget(combo, 1)
            row.addWidget(button)
            self.embedding_combos[entry.provider_name] = combo
            self.list_embedding_buttons[entry.provider_name] = button
            label = QLabel(f"{entry.provider_name}:")
            label.setBuddy(combo)
            form.addRow(label, row)
            if entry.effective_locality.value != "on_prem":
                form.addRow(
                    "",
                    _hint(
                        "A cloud provider: its embedding model is never used for Private "
                        "chats (they never send a document to the cloud)."
                    ),
                )
        for edit in (self.max_size_edit, self.inline_edit):
            edit.returnPressed.connect(self.save_attachment_settings)
        self.attachments_error = QLabel()
        self.attachments_error.setWordWrap(True)
        self.attachments_error.setAccessibleName("Problem with the attachment settings")
        set_role(self.attachments_error, "error")
        self.attachments_error.hide()
        self.save_attachments_button = QPushButton("Sa&ve")
        self.save_attachments_button.setAccessibleName("Save the attachment settings")
        self.save_attachments_button.clicked.connect(self.save_attachment_settings)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.save_attachments_button)
        fields = QWidget()
        fields.setLayout(form)
        scroll = QScrollArea()  # many providers scroll, the Save button stays
        scroll.setWidget(fields)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.viewport().setAutoFillBackground(False)
        fields.setAutoFillBackground(False)
        layout = QVBoxLayout(page)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.attachments_error)
        layout.addLayout(buttons)
        return page

    def attachment_settings_problem(self) -> str | None:
        """What is wrong with the typed attachment settings, and what to type instead."""
        fields = {
            "max_size_mb": (self.max_size_edit, "Largest file"),
            "inline_max_chars": (self.inline_edit, "Send whole up to"),
        }
        values = {name: edit.text().strip() for name, (edit, _) in fields.items()}
        try:
            AttachmentSettings.model_validate(values)
        except ValidationError as error:
            name = str(error.errors()[0]["loc"][0])
            edit, label = fields[name]
            low, high = _bounds(AttachmentSettings, name)
            edit.setFocus()
            edit.selectAll()
            return f"{label}: enter a whole number from {low} to {high}."
        return None

    def save_attachment_settings(self) -> None:
        """Check the typed values, write them to the config file and use them at once."""
        problem = self.attachment_settings_problem()
        if problem:
            self.attachments_error.setText(problem)
            self.attachments_error.show()
            return
        self.attachments_error.hide()
        current = self.session.config.config.attachments.model_dump(mode="json")
        current["max_size_mb"] = int(self.max_size_edit.text().strip())
        current["inline_max_chars"] = int(self.inline_edit.text().strip())
        models = {
            name: combo.currentText().strip() or None
            for name, combo in self.embedding_combos.items()
        }
        self.save_attachments_button.setEnabled(False)
        tasks.start_for(
            self,
            self.session.runner.blocking(
                save_attachment_settings, self.session.config, current, models
            ),
            self._attachment_settings_saved,
            self._attachment_settings_failed,
        )

    def _attachment_settings_saved(self, config: LoadedConfig) -> None:
        self.save_attachments_button.setEnabled(True)
        self.session.apply_config(config)
        self.config_changed.emit()
        self.attachment_settings_changed.emit()
        self._show_status("Attachment settings saved; they apply to the next file you attach.")

    def _attachment_settings_failed(self, error: BaseException) -> None:
        self.save_attachments_button.setEnabled(True)
        self.attachments_error.setText(
            str(error) if isinstance(error, HushchatError) else f"Not saved: {error}"
        )
        self.attachments_error.show()

    def list_embedding_models(self, name: str) -> None:
        """Fill the embedding model list of provider ``name`` with the models its server
        reports (in the background; the API key goes only to that server)."""
        entry = self.session.config.config.llm(name)
        combo = self.embedding_combos[name]
        button = self.list_embedding_buttons[name]
        button.setEnabled(False)

        async def models() -> list[str]:
            key = await self.session.api_keys.resolve(entry) if entry.api_key else None
            return await test_connection(entry.model_dump(mode="json"), key)

        def listed(found: list[str]) -> None:
            button.setEnabled(True)
            typed = combo.currentText()
            combo.clear()
            combo.addItems(found)
            combo.setEditText(typed)
            self.attachments_error.hide()

        def failed(error: BaseException) -> None:
            button.setEnabled(True)
            self.attachments_error.setText(connection_problem(error, entry.base_url))
            self.attachments_error.show()

        tasks.start_for(self, models(), listed, failed)

    # ----------------------------------------------------------------- security

    def _security_tab(self) -> QWidget:
        page = QWidget()
        self.slot_tree = QTreeWidget()
        self.slot_tree.setAccessibleName("Ways to unlock (key slots)")
        self.slot_tree.setHeaderLabels(["Method", "Label", "Opens", "Details", "Added"])
        self.slot_tree.setRootIsDecorated(False)
        self.slot_tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.add_key_button = QPushButton("Add security &key…")
        self.add_key_button.setAccessibleName("Add a security key")
        self.add_key_button.clicked.connect(self.add_security_key)
        self.add_keychain_button = QPushButton("Remember on this &device")
        self.add_keychain_button.setAccessibleName("Remember the vault in this device's keychain")
        self.add_keychain_button.setToolTip(
            "Convenience: anyone who can use this computer account can open your Standard "
            "chats. Private chats still need your passphrase, a security key or the "
            "recovery code."
        )
        self.add_keychain_button.clicked.connect(self.add_keychain)
        self.remove_slot_button = QPushButton("Re&move")
        self.remove_slot_button.setAccessibleName("Remove the selected key slot")
        self.remove_slot_button.clicked.connect(self.remove_selected_slot)
        self.change_passphrase_button = QPushButton("&Change passphrase…")
        self.change_passphrase_button.setAccessibleName("Change passphrase")
        self.change_passphrase_button.clicked.connect(self.change_passphrase)
        self.regenerate_button = QPushButton("New &recovery code…")
        self.regenerate_button.setAccessibleName("Regenerate the recovery code")
        self.regenerate_button.clicked.connect(self.regenerate_recovery_code)
        self.rotate_button = QPushButton("R&otate keys…")
        self.rotate_button.setAccessibleName("Rotate all keys")
        self.rotate_button.setToolTip(
            "New vault and database keys: old copies of the vault file open nothing."
        )
        self.rotate_button.clicked.connect(self.rotate_keys)
        self.open_private_button = QPushButton("Open &Private chats…")
        self.open_private_button.setAccessibleName("Open Private chats with the passphrase")
        self.open_private_button.clicked.connect(self.open_private_chats)
        self.tiers_label = _hint("")
        self.tiers_label.setAccessibleName("Tiers open now")
        slot_buttons = QHBoxLayout()
        for button in (self.add_key_button, self.add_keychain_button, self.remove_slot_button):
            slot_buttons.addWidget(button)
        slot_buttons.addStretch(1)
        secret_buttons = QHBoxLayout()
        for button in (self.change_passphrase_button, self.regenerate_button, self.rotate_button):
            secret_buttons.addWidget(button)
        secret_buttons.addStretch(1)
        private_row = QHBoxLayout()
        private_row.addWidget(self.tiers_label, 1)
        private_row.addWidget(self.open_private_button)
        layout = QVBoxLayout(page)
        layout.addWidget(self.slot_tree, 1)
        layout.addLayout(slot_buttons)
        layout.addSpacing(8)
        layout.addLayout(secret_buttons)
        layout.addLayout(private_row)
        return page

    def refresh_slots(self) -> None:
        """List the vault's key slots and what each opens; say which tiers are open."""
        self.slot_tree.clear()
        slots: list[SlotInfo] = self.session.slots()
        for slot in slots:
            opens = "Standard and Private" if slot.opens_everything else "Standard only"
            item = QTreeWidgetItem(
                [
                    _SLOT_KINDS.get(slot.kind, slot.kind),
                    slot.label,
                    opens,
                    slot.detail,
                    slot.created[:10],
                ]
            )
            item.setData(0, Qt.ItemDataRole.UserRole, slot.id)
            self.slot_tree.addTopLevelItem(item)
        for column in range(5):
            self.slot_tree.resizeColumnToContents(column)
        self.add_keychain_button.setEnabled(not self.session.has_slot("keychain"))
        locked = self.session.locked_tiers
        if locked:
            self.tiers_label.setText(
                "Private chats are closed: this device's keychain opens only Standard chats. "
                "Unlock with your passphrase to open Private chats."
            )
        else:
            self.tiers_label.setText("")
        self.open_private_button.setVisible(bool(locked) and self.session.has_slot("passphrase"))
        full = not locked
        for button in (
            self.add_key_button,
            self.remove_slot_button,
            self.change_passphrase_button,
            self.regenerate_button,
            self.rotate_button,
        ):
            button.setEnabled(full)
        self.add_keychain_button.setEnabled(full and not self.session.has_slot("keychain"))

    def add_security_key(self) -> None:
        """Enrol a security key as another way to unlock."""
        prompts = QtKeyPrompts(self)
        prompts.touch_requested.connect(lambda: self._show_status("Touch your security key now…"))
        self._show_status("Looking for a security key…")

        async def enrol() -> SlotInfo:
            key = await self.session.find_security_key(prompts)
            return await self.session.add_security_key(key, "Security key")

        tasks.start(enrol(), on_done=self._slot_added, on_error=self._slot_failed)

    def add_keychain(self) -> None:
        """Remember the vault in the OS keychain (it opens Standard chats only)."""
        tasks.start(
            self.session.add_keychain(), on_done=self._slot_added, on_error=self._slot_failed
        )

    def _slot_added(self, slot: SlotInfo) -> None:
        self.refresh_slots()
        if slot.opens_everything:
            self._show_status(f"Added “{slot.label}”.")
        else:
            self._show_status(f"Added “{slot.label}”: it opens Standard chats only.")

    def _slots_changed(self, message: str) -> None:
        self.refresh_slots()
        self._show_status(message)

    def _slot_failed(self, error: BaseException) -> None:
        self.refresh_slots()
        self._show_status(str(error), error=True)

    def removal_warning(self, slot_id: str) -> str | None:
        """The warning shown before the vault's only passphrase slot is removed."""
        slots = self.session.slots()
        passphrases = [slot for slot in slots if slot.kind == "passphrase"]
        if len(slots) < 2 or len(passphrases) != 1 or passphrases[0].id != slot_id:
            return None
        others = {slot.kind for slot in slots if slot.id != slot_id}
        left = [
            name
            for kind, name in (
                ("recovery", "the recovery code"),
                ("security-key", "your security keys"),
                ("keychain", "this device's keychain (Standard chats only)"),
                ("touch-id", "Touch ID (Standard chats only)"),
            )
            if kind in others
        ]
        return (
            "This is your only passphrase. Afterwards only "
            f"{', '.join(left) or 'the other ways listed'} will unlock the vault."
        )

    def remove_selected_slot(self, *, confirm: bool = True, rotate: bool = False) -> None:
        """Remove the selected key slot after confirmation (never the last one); warn
        before the only passphrase goes; optionally rotate every key as well."""
        item = self.slot_tree.currentItem()
        if item is None:
            self._show_status("Select a way to unlock first.", error=True)
            return
        slot_id = str(item.data(0, Qt.ItemDataRole.UserRole))
        warning = self.removal_warning(slot_id)
        if confirm:
            box = QMessageBox(self)
            box.setIcon(QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Question)
            box.setWindowTitle("Remove key slot")
            text = f"Remove “{item.text(1)}” ({item.text(0)})? It will no longer unlock the vault."
            box.setText(f"{text}\n\n{warning}" if warning else text)
            box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
            box.setDefaultButton(QMessageBox.StandardButton.No)
            rotate_check = QCheckBox(
                "Then rotate all keys, so that an old copy of the vault file opens nothing "
                "with this slot's secret"
            )
            box.setCheckBox(rotate_check)
            if box.exec() != QMessageBox.StandardButton.Yes:
                return
            rotate = rotate_check.isChecked()
        if rotate:
            self.rotate_keys(drop=(slot_id,))
            return
        tasks.start(
            self.session.remove_slot(slot_id),
            on_done=lambda _none: self._slots_changed(
                "Removed. " + (warning or "") + " Rotate keys to cut off old copies of the file."
            ),
            on_error=self._slot_failed,
        )

    def change_passphrase(self) -> ChangePassphraseDialog:
        """Open the change-passphrase dialog (returned for tests)."""
        dialog = ChangePassphraseDialog(self.session, self)
        dialog.accepted.connect(
            lambda: None if dialog.rotating else self._slots_changed("Passphrase changed.")
        )
        dialog.rotation_requested.connect(
            lambda new, current: self.start_rotation(new, current=current, new_passphrase=True)
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def rotate_keys(self, drop: tuple[str, ...] = ()) -> RotateKeysDialog:
        """Open the rotate-keys dialog (returned for tests)."""
        dialog = RotateKeysDialog(self.session, drop, self)
        dialog.rotation_requested.connect(
            lambda passphrase, touched, dropped: self.start_rotation(
                passphrase, touched=touched, drop=dropped
            )
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _chat_area(self) -> _ChatArea | None:
        return cast("_ChatArea | None", getattr(self.parentWidget(), "chat_area", None))

    def _reopen_chats(
        self,
        work: Coroutine[Any, Any, T],
        on_done: Callable[[T], None],
        *,
        confirm: bool,
        verb: str,
    ) -> bool:
        """Run ``work``, which closes and reopens every chat (a rotation, opening Private
        chats), like a lock and unlock: running answers stop, the window's chat list
        clears and reloads. Asks first when Ephemeral chats would vanish."""
        area = self._chat_area()
        if confirm and area is not None and area.has_ephemeral_chats():
            buttons = QMessageBox.StandardButton
            answer = QMessageBox.warning(
                self,
                verb,
                f"{verb} closes every chat for a moment: your Ephemeral chats exist only in "
                "memory and will vanish for good. Continue?",
                buttons.Cancel | buttons.Ok,
                buttons.Cancel,
            )
            if answer != buttons.Ok:
                work.close()
                return False
        tasks.cancel_all()
        if area is not None:
            area.clear()
        self._set_security_busy(True)

        def reload() -> None:
            self._set_security_busy(False)
            if area is not None and self.session.is_unlocked:
                area.load()
            if self.session.is_unlocked:
                self.chats_reopened.emit()

        def done(result: T) -> None:
            reload()
            on_done(result)

        def failed(error: BaseException) -> None:
            reload()
            self._slot_failed(error)

        tasks.start(work, on_done=done, on_error=failed)
        return True

    def _set_security_busy(self, busy: bool) -> None:
        for button in (
            self.rotate_button,
            self.change_passphrase_button,
            self.open_private_button,
            self.remove_slot_button,
        ):
            button.setEnabled(not busy)
        if not busy:
            self.refresh_slots()

    def start_rotation(
        self,
        passphrase: str | None,
        *,
        new_passphrase: bool = False,
        current: str | None = None,
        touched: Sequence[TouchedKey] = (),
        drop: Sequence[str] = (),
        confirm: bool = True,
    ) -> bool:
        """Rotate every key (Ephemeral chats vanish: asks first); then show the new
        recovery code and which slots were dropped. Returns whether it started."""
        self._show_status("Rotating keys: re-encrypting your chats…")
        return self._reopen_chats(
            self.session.rotate_keys(
                passphrase,
                new_passphrase=new_passphrase,
                current=current,
                touched=touched,
                drop=drop,
            ),
            self._rotated,
            confirm=confirm,
            verb="Rotating keys",
        )

    def _rotated(self, rotation: Rotation) -> None:
        self.refresh_slots()
        message = "Keys rotated: old copies of the vault file open nothing."
        if rotation.dropped:
            names = ", ".join(f"“{slot.label}”" for slot in rotation.dropped)
            message += f" Dropped: {names}."
        if rotation.unfinished:
            self._show_status(f"{message} {rotation.unfinished}", error=True)
        else:
            self._show_status(message)
        if rotation.recovery_code is not None:
            self._show_new_code(rotation.recovery_code)

    def open_private_chats(self, passphrase: str | None = None, *, confirm: bool = True) -> None:
        """After a keychain unlock (Standard only), open Private chats with the passphrase."""
        if passphrase is None:
            text, ok = QInputDialog.getText(
                self,
                "Open Private chats",
                "Your passphrase opens Private chats (the keychain opens only Standard ones):",
                QLineEdit.EchoMode.Password,
            )
            if not ok or not text:
                return
            passphrase = text
        self._show_status("Opening Private chats…")
        self._reopen_chats(
            self.session.unlock_private(passphrase),
            lambda _none: self._slots_changed("Private chats are open."),
            confirm=confirm,
            verb="Opening Private chats",
        )

    def regenerate_recovery_code(self, *, confirm: bool = True) -> None:
        """Replace the recovery code after confirmation and show the new one."""
        if confirm:
            answer = QMessageBox.question(
                self,
                "New recovery code",
                "Make a new recovery code? The old one stops working at once.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        tasks.start(
            self.session.regenerate_recovery_code(),
            on_done=self._show_new_code,
            on_error=self._slot_failed,
        )

    def _show_new_code(self, code: RecoveryCode) -> None:
        self.refresh_slots()
        self.recovery_dialog = RecoveryCodeDialog(code, self)
        self.recovery_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.recovery_dialog.open()

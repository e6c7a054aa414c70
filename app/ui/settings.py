"""The settings dialog: providers, appearance, behaviour, security.

Changes apply at once and are written to the config file (comments kept, atomic
write); API keys go to the OS keychain, the file says ``api_key: keychain``.
Security actions (key slots, passphrase, recovery code) call the vault through the
session, off the UI thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.config import LoadedConfig
from app.provider_setup import save_ui_settings
from app.session import Session
from app.ui import tasks
from app.ui.first_run import PassphraseFieldsWidget, RecoveryCodeWidget
from app.ui.key_prompts import QtKeyPrompts
from app.ui.layout import set_role
from app.ui.provider_form import ProviderFormWidget
from app.vault.recovery_code import RecoveryCode
from app.vault.vault import SlotInfo

__all__ = ["ChangePassphraseDialog", "ProviderDialog", "RecoveryCodeDialog", "SettingsDialog"]

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


class ProviderDialog(QDialog):
    """Add or edit one provider; saving stores the API key in the keychain."""

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
        self.error_label = QLabel()
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(
            _hint("API keys are kept in your operating system's keychain, never in the file.")
        )
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())

    def save(self) -> None:
        """Validate, write the config entry and the keychain key, then close."""
        problem = self.form.problem()
        if problem:
            self.error_label.setText(problem)
            return
        self.buttons.setEnabled(False)
        tasks.start(
            self.session.save_provider(
                self.form.entry(),
                api_key=self.form.api_key(),
                replaces=self._replaces,
                make_default=not self.session.config.config.llms,
            ),
            on_done=self._saved,
            on_error=self._failed,
        )

    def _saved(self, config: LoadedConfig) -> None:
        self.session.apply_config(config)
        self.buttons.setEnabled(True)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.buttons.setEnabled(True)
        self.error_label.setText(str(error))


class ChangePassphraseDialog(QDialog):
    """A new passphrase, typed twice, with the strength meter."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Change passphrase")
        self.fields = PassphraseFieldsWidget(session.runner)
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
        layout.addWidget(self.fields)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.resize(460, self.sizeHint().height())

    def change(self) -> None:
        """Rewrap the vault key under the new passphrase (in the background)."""
        problem = self.fields.problem()
        if problem:
            self.error_label.setText(problem)
            return
        self.buttons.setEnabled(False)
        tasks.start(
            self.session.change_passphrase(self.fields.passphrase()),
            on_done=lambda _slot: self.accept(),
            on_error=self._failed,
        )

    def _failed(self, error: BaseException) -> None:
        self.buttons.setEnabled(True)
        self.error_label.setText(str(error))

    def done(self, result: int) -> None:
        """Forget the typed passphrase when the dialog closes."""
        self.fields.clear()
        super().done(result)


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
    """Providers, appearance, behaviour and security, in tabs."""

    appearance_changed = Signal()
    config_changed = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Settings")
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Settings sections")
        self.tabs.addTab(self._providers_tab(), "&Providers")
        self.tabs.addTab(self._appearance_tab(), "&Appearance")
        self.tabs.addTab(self._behaviour_tab(), "&Behaviour")
        self.tabs.addTab(self._security_tab(), "&Security")
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

    # ----------------------------------------------------------------- providers

    def _providers_tab(self) -> QWidget:
        page = QWidget()
        self.provider_list = QListWidget()
        self.provider_list.setAccessibleName("Configured providers")
        self.provider_list.setSpacing(3)
        self.provider_list.itemDoubleClicked.connect(lambda _item: self.edit_provider())
        self.add_provider_button = QPushButton("&Add…")
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
        """Remove the selected provider (and its keychain key) after confirmation."""
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
            ("system", "Follow the &system"),
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
        form.addRow("&Sending:", self.send_key_combo)
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

    # ----------------------------------------------------------------- security

    def _security_tab(self) -> QWidget:
        page = QWidget()
        self.slot_tree = QTreeWidget()
        self.slot_tree.setAccessibleName("Ways to unlock (key slots)")
        self.slot_tree.setHeaderLabels(["Method", "Label", "Details", "Added"])
        self.slot_tree.setRootIsDecorated(False)
        self.slot_tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.add_key_button = QPushButton("Add security &key…")
        self.add_key_button.setAccessibleName("Add a security key")
        self.add_key_button.clicked.connect(self.add_security_key)
        self.add_keychain_button = QPushButton("Remember on this &device")
        self.add_keychain_button.setAccessibleName("Remember the vault in this device's keychain")
        self.add_keychain_button.setToolTip(
            "Convenience: anyone who can use this computer account can unlock."
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
        slot_buttons = QHBoxLayout()
        for button in (self.add_key_button, self.add_keychain_button, self.remove_slot_button):
            slot_buttons.addWidget(button)
        slot_buttons.addStretch(1)
        secret_buttons = QHBoxLayout()
        secret_buttons.addWidget(self.change_passphrase_button)
        secret_buttons.addWidget(self.regenerate_button)
        secret_buttons.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(self.slot_tree, 1)
        layout.addLayout(slot_buttons)
        layout.addSpacing(8)
        layout.addLayout(secret_buttons)
        return page

    def refresh_slots(self) -> None:
        """List the vault's key slots."""
        self.slot_tree.clear()
        slots: list[SlotInfo] = self.session.slots()
        for slot in slots:
            item = QTreeWidgetItem(
                [_SLOT_KINDS.get(slot.kind, slot.kind), slot.label, slot.detail, slot.created[:10]]
            )
            item.setData(0, Qt.ItemDataRole.UserRole, slot.id)
            self.slot_tree.addTopLevelItem(item)
        for column in range(4):
            self.slot_tree.resizeColumnToContents(column)
        self.add_keychain_button.setEnabled(not self.session.has_slot("keychain"))

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
        """Remember the vault in the OS keychain."""
        tasks.start(
            self.session.add_keychain(), on_done=self._slot_added, on_error=self._slot_failed
        )

    def _slot_added(self, slot: SlotInfo) -> None:
        self.refresh_slots()
        self._show_status(f"Added “{slot.label}”.")

    def _slots_changed(self, message: str) -> None:
        self.refresh_slots()
        self._show_status(message)

    def _slot_failed(self, error: BaseException) -> None:
        self.refresh_slots()
        self._show_status(str(error), error=True)

    def remove_selected_slot(self, *, confirm: bool = True) -> None:
        """Remove the selected key slot after confirmation (never the last one)."""
        item = self.slot_tree.currentItem()
        if item is None:
            self._show_status("Select a way to unlock first.", error=True)
            return
        slot_id = str(item.data(0, Qt.ItemDataRole.UserRole))
        if confirm:
            answer = QMessageBox.question(
                self,
                "Remove key slot",
                f"Remove “{item.text(1)}” ({item.text(0)})? It will no longer unlock the vault.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        tasks.start(
            self.session.remove_slot(slot_id),
            on_done=lambda _none: self._slots_changed("Removed."),
            on_error=self._slot_failed,
        )

    def change_passphrase(self) -> ChangePassphraseDialog:
        """Open the change-passphrase dialog (returned for tests)."""
        dialog = ChangePassphraseDialog(self.session, self)
        dialog.accepted.connect(lambda: self._slots_changed("Passphrase changed."))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

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

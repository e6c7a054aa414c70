"""The form for one LLM provider entry, with presets and "Test connection"; used by first
run and settings.

Choosing a preset (``app.provider_presets``) fills in the type, base URL and locality;
the server's models are then listed in the background: at once for a server on this
computer, and for a cloud service once its API key has been typed (debounced, so a key
being typed is not sent letter by letter). Errors show inline under the form as one
sentence. The API key field's text is kept in the vault or the OS keychain when saved,
never in the config file (see ``app.provider_setup`` and ``app.api_keys``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.api_keys import KeyPlace
from app.config import LLMEntry
from app.errors import HushchatError
from app.provider_presets import PRESETS, ProviderPreset
from app.provider_setup import connection_problem, test_connection
from app.ui import tasks
from providers import ProviderError

__all__ = ["KEY_PLACE_CHOICES", "LOCALITY_CHOICES", "ProviderFormWidget"]

LOCALITY_CHOICES: tuple[tuple[str, str], ...] = (
    ("", "Automatic (on-prem for local addresses)"),
    ("on_prem", "On-prem (runs on my machines)"),
    ("free_cloud", "Free cloud service"),
    ("paid_cloud", "Paid cloud service"),
)

# Where a typed API key is kept ("" = the keychain if one answers, else the vault).
KEY_PLACE_CHOICES: tuple[tuple[str, str], ...] = (
    ("", "Automatic: the OS keychain if there is one, else the vault"),
    ("vault", "In the vault (encrypted like your Standard chats)"),
    ("keychain", "In the OS keychain"),
)

_TYPES: tuple[tuple[str, str], ...] = (
    ("openai", "OpenAI-compatible (llama.cpp, LM Studio, vLLM, OpenAI, …)"),
    ("ollama", "Ollama"),
    ("anthropic", "Anthropic"),
)

_KEY_HINT: Final = "Only for cloud services; never written to the config file"
# How long typing must pause before the models are listed with the typed key.
LIST_DELAY_MS: Final = 700


def plural(count: int, one: str, many: str | None = None) -> str:
    """``"1 server"``, ``"2 servers"``: ``count`` with the word in the right number."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


class ProviderFormWidget(QWidget):
    """Preset, name, type, URL, model, context size, locality and API key of a provider."""

    tested = Signal(bool)  # whether the last connection test (or model listing) succeeded

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._had_key = False
        self._stored_url = ""  # the base URL the stored key belongs to
        # Reads the stored key of the entry being edited (the settings dialog sets it), so
        # Test connection works without typing the key again.
        self.stored_key: Callable[[], Awaitable[str | None]] | None = None
        self._preset: ProviderPreset | None = None
        self._listing = 0  # generation of the latest model listing; older results are dropped
        self.preset_combo = QComboBox()
        self.preset_combo.setAccessibleName("Provider preset")
        self.preset_combo.setToolTip("Fills in the type, address and where the model runs.")
        self.preset_combo.addItem("Custom (enter the details below)", "")
        for preset in PRESETS:
            where = "on this computer" if preset.is_local else "cloud"
            self.preset_combo.addItem(f"{preset.label} ({where})", preset.provider_name)
        self.preset_combo.activated.connect(self._preset_chosen)
        self.name_edit = QLineEdit()
        self.name_edit.setAccessibleName("Provider name")
        self.name_edit.setPlaceholderText("e.g. local-llama")
        self.type_combo = QComboBox()
        self.type_combo.setAccessibleName("Provider type")
        for value, label in _TYPES:
            self.type_combo.addItem(label, value)
        self.url_edit = QLineEdit()
        self.url_edit.setAccessibleName("Base URL")
        self.url_edit.setPlaceholderText("http://127.0.0.1:8080/v1")
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setAccessibleName("Model")
        self.model_combo.setToolTip("Test the connection to pick from the server's models.")
        self.context_spin = QSpinBox()
        self.context_spin.setRange(256, 2_000_000)
        self.context_spin.setSingleStep(1024)
        self.context_spin.setValue(4096)
        self.context_spin.setAccessibleName("Context size in tokens")
        self.locality_combo = QComboBox()
        self.locality_combo.setAccessibleName("Where the model runs")
        for value, label in LOCALITY_CHOICES:
            self.locality_combo.addItem(label, value)
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setAccessibleName("API key")
        self.key_edit.setPlaceholderText(_KEY_HINT)
        self.key_edit.textEdited.connect(self._key_typed)
        self.key_place_combo = QComboBox()
        self.key_place_combo.setAccessibleName("Where the API key is kept")
        self.key_place_combo.setToolTip(
            "The vault keeps the key encrypted with your Standard chats; the OS keychain "
            "keeps it for your user account. Changing this moves a stored key."
        )
        for value, label in KEY_PLACE_CHOICES:
            self.key_place_combo.addItem(label, value)
        self.test_button = QPushButton("Test connection")
        self.test_button.setAccessibleName("Test connection")
        self.test_button.clicked.connect(self.test)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setAccessibleName("Connection test result")
        self._list_timer = QTimer(self)
        self._list_timer.setSingleShot(True)
        self._list_timer.setInterval(LIST_DELAY_MS)
        self._list_timer.timeout.connect(self.list_models)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("&Preset:", self.preset_combo)
        form.addRow("&Name:", self.name_edit)
        form.addRow("&Type:", self.type_combo)
        form.addRow("Base &URL:", self.url_edit)
        form.addRow("API &key:", self.key_edit)
        form.addRow("K&eep the key:", self.key_place_combo)
        form.addRow("&Model:", self.model_combo)
        form.addRow("&Context size:", self.context_spin)
        form.addRow("&Runs:", self.locality_combo)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(test_row)
        layout.addWidget(self.result_label)

    # ----------------------------------------------------------------- values

    def set_entry(self, entry: LLMEntry | dict[str, Any]) -> None:
        """Fill the form from a config entry (or a dict of its fields)."""
        data = entry.model_dump(mode="json") if isinstance(entry, LLMEntry) else dict(entry)
        self._listing += 1  # a listing still running is for other values
        self._list_timer.stop()
        self.test_button.setEnabled(True)
        self._preset = None
        self.preset_combo.setCurrentIndex(0)
        self.name_edit.setText(str(data.get("provider_name") or ""))
        self._set_type(str(data.get("type") or "openai"))
        self.url_edit.setText(str(data.get("base_url") or ""))
        models = data.get("models") or []
        self.model_combo.clear()
        self.model_combo.addItems([str(m) for m in models])
        self.model_combo.setEditText(str(data.get("model_name") or (models[0] if models else "")))
        self.context_spin.setValue(int(data.get("context_size") or 4096))
        self._set_locality(str(data.get("locality") or ""))
        place = data.get("api_key")
        self._had_key = bool(place)
        self._stored_url = str(data.get("base_url") or "")
        self.key_place_combo.setCurrentIndex(
            max(0, self.key_place_combo.findData(place if place in ("vault", "keychain") else ""))
        )
        self.key_edit.clear()
        self.key_edit.setPlaceholderText(
            "Stored — type a new key to replace it" if self._had_key else _KEY_HINT
        )
        self.result_label.clear()

    def _set_type(self, value: str) -> None:
        index = self.type_combo.findData(value)
        if index < 0:
            self.type_combo.addItem(value, value)
            index = self.type_combo.count() - 1
        self.type_combo.setCurrentIndex(index)

    def _set_locality(self, value: str) -> None:
        self.locality_combo.setCurrentIndex(max(0, self.locality_combo.findData(value)))

    def choose_preset(self, provider_name: str) -> None:
        """Fill in the preset suggested as ``provider_name`` (as choosing it in the list)."""
        index = self.preset_combo.findData(provider_name)
        if index < 0:
            raise KeyError(provider_name)
        self.preset_combo.setCurrentIndex(index)
        self._preset_chosen(index)

    def _preset_chosen(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        preset = next((p for p in PRESETS if p.provider_name == name), None)
        if preset is None:
            self._preset = None
            return
        typed_name = self.name_edit.text().strip()
        if not typed_name or (self._preset and typed_name == self._preset.provider_name):
            self.name_edit.setText(preset.provider_name)
        self._preset = preset
        self._set_type(preset.type)
        self.url_edit.setText(preset.base_url)
        self._set_locality(preset.locality)
        self.model_combo.clear()
        self.model_combo.setEditText("")
        if preset.needs_key and not self.api_key() and not self._had_key:
            self._show(
                "hint",
                f"Enter your {preset.label} API key (from {preset.key_url}); its models are "
                "then listed here.",
            )
            self.key_edit.setFocus()
        else:
            self.list_models()

    def entry(self) -> dict[str, Any]:
        """The typed fields as an ``llms:`` item (without the API key)."""
        data: dict[str, Any] = {
            "provider_name": self.name_edit.text().strip(),
            "type": self.type_combo.currentData() or self.type_combo.currentText(),
            "base_url": self.url_edit.text().strip(),
            "model_name": self.model_combo.currentText().strip(),
        }
        if self.context_spin.value() != 4096:
            data["context_size"] = self.context_spin.value()
        if self.locality_combo.currentData():
            data["locality"] = self.locality_combo.currentData()
        return data

    def api_key(self) -> str | None:
        """The newly typed API key, or None to keep the stored one."""
        return self.key_edit.text().strip() or None

    def key_place(self) -> KeyPlace | None:
        """Where the key is to be kept; None: the keychain if one answers, else the vault."""
        value = self.key_place_combo.currentData()
        if value == "vault":
            return "vault"
        if value == "keychain":
            return "keychain"
        return None

    def problem(self) -> str | None:
        """What is missing before the entry can be saved, or None."""
        data = self.entry()
        if not data["provider_name"]:
            return "Give the provider a name."
        if not data["base_url"]:
            return "Enter the server's base URL."
        if not data["model_name"]:
            return "Choose a model (Test connection lists the server's models)."
        return None

    # ----------------------------------------------------------------- test

    def _key_typed(self, _text: str) -> None:
        """List the models with the new key once typing pauses (debounced)."""
        if self.api_key() and self.url_edit.text().strip():
            self._list_timer.start()
        else:
            self._list_timer.stop()

    def list_models(self) -> None:
        """List the server's models in the background (as Test connection does)."""
        self._list_timer.stop()
        self.test()

    def test(self) -> None:
        """List the server's models in the background; show them or the error."""
        data = self.entry()
        if not data["base_url"]:
            self._show_result(False, "Enter the server's base URL first.")
            return
        self._listing += 1
        listing = self._listing
        self.test_button.setEnabled(False)
        self._show("hint", f"Connecting to {data['base_url']}…")
        tasks.start_for(
            self,
            self._models(data),
            lambda models: self._tested(listing, models),
            lambda error: self._failed(listing, data["base_url"], error),
        )

    async def _models(self, data: dict[str, Any]) -> list[str]:
        key = self.api_key()
        # The stored key goes only to the server it was stored for, never to a new URL.
        same_server = data["base_url"].rstrip("/") == self._stored_url.strip().rstrip("/")
        if key is None and self._had_key and self.stored_key is not None and same_server:
            key = await self.stored_key()
        return await test_connection(data, key)

    @property
    def is_busy(self) -> bool:
        """Whether a model listing is running or waiting for typing to pause."""
        return not self.test_button.isEnabled() or self._list_timer.isActive()

    def _tested(self, listing: int, models: list[str]) -> None:
        if listing != self._listing:
            return
        self.test_button.setEnabled(True)
        current = self.model_combo.currentText()
        self.model_combo.clear()
        self.model_combo.addItems(models)
        self.model_combo.setEditText(current if current in models or not models else models[0])
        listed = ", ".join(models[:8]) + (" …" if len(models) > 8 else "")
        found = plural(len(models), "model")
        self._show_result(True, f"Connected; {found} available: {listed}" if models else
                          "Connected, but the server reports no models yet.")  # fmt: skip

    def _failed(self, listing: int, base_url: str, error: BaseException) -> None:
        if listing != self._listing:
            return
        self.test_button.setEnabled(True)
        if isinstance(error, ProviderError) or not isinstance(error, HushchatError):
            text = connection_problem(error, base_url)
        else:
            text = str(error)
        self._show_result(False, text)

    def _show(self, role: str, text: str) -> None:
        self.result_label.setProperty("role", role)
        self.result_label.style().unpolish(self.result_label)
        self.result_label.style().polish(self.result_label)
        self.result_label.setText(text)

    def _show_result(self, ok: bool, text: str) -> None:
        self._show("hint" if ok else "error", text)
        self.tested.emit(ok)

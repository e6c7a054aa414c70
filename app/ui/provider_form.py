"""The form for one LLM provider entry, with "Test connection"; used by first run and
settings. The API key field's text goes to the OS keychain when saved, never to the
config file (see ``app.provider_setup``)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
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

from app.config import LLMEntry
from app.provider_setup import test_connection
from app.ui import tasks

__all__ = ["LOCALITY_CHOICES", "ProviderFormWidget"]

LOCALITY_CHOICES: tuple[tuple[str, str], ...] = (
    ("", "Automatic (on-prem for local addresses)"),
    ("on_prem", "On-prem (runs on my machines)"),
    ("free_cloud", "Free cloud service"),
    ("paid_cloud", "Paid cloud service"),
)

_TYPES: tuple[tuple[str, str], ...] = (
    ("openai", "OpenAI-compatible (llama.cpp, LM Studio, vLLM, OpenAI, …)"),
    ("ollama", "Ollama"),
    ("anthropic", "Anthropic"),
)


class ProviderFormWidget(QWidget):
    """Name, type, URL, model, context size, locality and API key of one provider."""

    tested = Signal(bool)  # whether the last connection test succeeded

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._had_key = False
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
        self.key_edit.setPlaceholderText("Only for cloud services; kept in the OS keychain")
        self.test_button = QPushButton("Test connection")
        self.test_button.setAccessibleName("Test connection")
        self.test_button.clicked.connect(self.test)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setAccessibleName("Connection test result")

        form = QFormLayout()
        form.addRow("&Name:", self.name_edit)
        form.addRow("&Type:", self.type_combo)
        form.addRow("Base &URL:", self.url_edit)
        form.addRow("&Model:", self.model_combo)
        form.addRow("&Context size:", self.context_spin)
        form.addRow("&Runs:", self.locality_combo)
        form.addRow("API &key:", self.key_edit)
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
        self.name_edit.setText(str(data.get("provider_name") or ""))
        index = self.type_combo.findData(data.get("type") or "openai")
        if index < 0:
            self.type_combo.addItem(str(data["type"]), data["type"])
            index = self.type_combo.count() - 1
        self.type_combo.setCurrentIndex(index)
        self.url_edit.setText(str(data.get("base_url") or ""))
        models = data.get("models") or []
        self.model_combo.clear()
        self.model_combo.addItems([str(m) for m in models])
        self.model_combo.setEditText(str(data.get("model_name") or (models[0] if models else "")))
        self.context_spin.setValue(int(data.get("context_size") or 4096))
        self.locality_combo.setCurrentIndex(
            max(0, self.locality_combo.findData(data.get("locality") or ""))
        )
        self._had_key = bool(data.get("api_key"))
        self.key_edit.clear()
        self.key_edit.setPlaceholderText(
            "Stored — type a new key to replace it"
            if self._had_key
            else "Only for cloud services; kept in the OS keychain"
        )
        self.result_label.clear()

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

    def test(self) -> None:
        """List the server's models in the background; show them or the error."""
        data = self.entry()
        if not data["base_url"]:
            self._show_result(False, "Enter the server's base URL first.")
            return
        self.test_button.setEnabled(False)
        self.result_label.setProperty("role", "hint")
        self.result_label.setText("Connecting…")
        tasks.start(
            test_connection(data, self.api_key()), on_done=self._tested, on_error=self._failed
        )

    def _tested(self, models: list[str]) -> None:
        self.test_button.setEnabled(True)
        current = self.model_combo.currentText()
        self.model_combo.clear()
        self.model_combo.addItems(models)
        self.model_combo.setEditText(current if current in models or not models else models[0])
        listed = ", ".join(models[:8]) + (" …" if len(models) > 8 else "")
        self._show_result(True, f"Connected. Models: {listed or '(none reported)'}")

    def _failed(self, error: BaseException) -> None:
        self.test_button.setEnabled(True)
        self._show_result(False, f"Could not connect: {error}")

    def _show_result(self, ok: bool, text: str) -> None:
        self.result_label.setProperty("role", "hint" if ok else "error")
        self.result_label.style().unpolish(self.result_label)
        self.result_label.style().polish(self.result_label)
        self.result_label.setText(text)
        self.tested.emit(ok)

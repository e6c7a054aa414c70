"""The chat settings panel: model, privacy tier, system prompt, memory, context use.

The model picker lists every configured provider entry; those the chat's tier
forbids are shown disabled, with the policy's reason as tooltip and below the
picker. Moving the chat to another tier goes through the service (which refuses
when the chat's model is not allowed there). An Ephemeral chat offers "Keep",
which moves it to Standard or Private. The context indicator shows the tokens
the last turn sent against the model's context size.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.events import TurnStarted
from app.chat.service import provider_choices, sending_blocked_reason
from app.config import Config, LLMEntry
from app.errors import ConfigError
from app.session import Session
from app.store.models import Chat, Tier
from app.ui import tasks

__all__ = ["ChatSettingsPanel", "sending_blocked_reason"]

SAVE_DELAY_MS = 800
PROVIDER_ROLE = int(Qt.ItemDataRole.UserRole) + 1
TIER_NAMES = {Tier.STANDARD: "Standard", Tier.PRIVATE: "Private", Tier.EPHEMERAL: "Ephemeral"}


class ChatSettingsPanel(QWidget):
    """Settings of the open chat; every change goes to the chat service."""

    status_message = Signal(str)
    activity = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self.setObjectName("chatSettings")
        self.chat: Chat | None = None
        self._loading = False

        self.providers = QComboBox(self)
        self.providers.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.providers.setMinimumContentsLength(16)
        self.providers.setAccessibleName("Model")
        self._provider_items = QStandardItemModel(self)
        self.providers.setModel(self._provider_items)
        self.model_name = QLineEdit(self)
        self.model_name.setAccessibleName("Model name sent to the server")
        self.model_name.setPlaceholderText("model name")
        self.forbidden = QLabel(self)
        self.forbidden.setObjectName("forbiddenProviders")
        self.forbidden.setWordWrap(True)
        self.forbidden.setAccessibleName("Models this tier does not allow")
        self.forbidden.hide()

        self.tier = QComboBox(self)
        self.tier.setAccessibleName("Privacy tier")
        for tier in (Tier.STANDARD, Tier.PRIVATE, Tier.EPHEMERAL):
            self.tier.addItem(TIER_NAMES[tier], tier.value)
        self.keep_button = QToolButton(self)
        self.keep_button.setText("Keep…")
        self.keep_button.setAccessibleName("Keep this Ephemeral chat")
        self.keep_button.setToolTip("Save this chat: move it to Standard or Private")
        self.keep_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        keep_menu = QMenu(self.keep_button)
        keep_menu.addAction("Keep as Standard chat", lambda: self.move_to(Tier.STANDARD))
        keep_menu.addAction("Keep as Private chat", lambda: self.move_to(Tier.PRIVATE))
        self.keep_button.setMenu(keep_menu)
        self.keep_button.hide()
        self.tier_note = QLabel(self)
        self.tier_note.setWordWrap(True)

        self.system_prompt = QPlainTextEdit(self)
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("How the model should behave in this chat")
        self.memory = QPlainTextEdit(self)
        self.memory.setAccessibleName("Memory")
        self.memory.setPlaceholderText("Facts the model should always know in this chat")

        self.context = QProgressBar(self)
        self.context.setAccessibleName("Context used")
        self.context.setTextVisible(True)
        self.context.setRange(0, 1)
        self.context.setValue(0)
        self.context.setFormat("no turn yet")
        self.context_note = QLabel(self)
        self.context_note.setWordWrap(True)

        tier_row = QHBoxLayout()
        tier_row.setContentsMargins(0, 0, 0, 0)
        tier_row.addWidget(self.tier, 1)
        tier_row.addWidget(self.keep_button)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", self.providers)
        form.addRow("", self.model_name)
        form.addRow("", self.forbidden)
        form.addRow("Privacy", tier_row)
        form.addRow("", self.tier_note)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.addLayout(form)
        layout.addWidget(QLabel("System prompt", self))
        layout.addWidget(self.system_prompt, 2)
        layout.addWidget(QLabel("Memory", self))
        layout.addWidget(self.memory, 1)
        layout.addWidget(QLabel("Context", self))
        layout.addWidget(self.context)
        layout.addWidget(self.context_note)

        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save_texts)
        self.system_prompt.textChanged.connect(self._texts_changed)
        self.memory.textChanged.connect(self._texts_changed)
        self.providers.activated.connect(self._provider_chosen)
        self.model_name.editingFinished.connect(self._model_edited)
        self.tier.activated.connect(self._tier_chosen)
        self.set_chat(None)

    # showing -----------------------------------------------------------------------------

    @property
    def _config(self) -> Config:
        return self._session.config.config

    def set_chat(self, chat: Chat | None) -> None:
        """Show ``chat``'s settings (None: nothing open)."""
        if self.chat is not None and (chat is None or chat.id != self.chat.id):
            self.save_texts()
            self.reset_context()
        self.chat = chat
        self._loading = True
        try:
            self._fill_providers(chat)
            enabled = chat is not None
            for widget in (
                self.providers,
                self.model_name,
                self.tier,
                self.system_prompt,
                self.memory,
            ):
                widget.setEnabled(enabled)
            if chat is None:
                self.system_prompt.clear()
                self.memory.clear()
                self.model_name.clear()
                self.tier.setCurrentIndex(0)
                self.keep_button.hide()
                self.tier_note.clear()
                return
            if not self._save_timer.isActive():  # never overwrite what is being typed
                if self.system_prompt.toPlainText() != chat.system_prompt:
                    self.system_prompt.setPlainText(chat.system_prompt)
                if self.memory.toPlainText() != chat.memory:
                    self.memory.setPlainText(chat.memory)
            self.model_name.setText(chat.model or self._entry_model(chat))
            self.tier.setCurrentIndex(self.tier.findData(chat.tier.value))
            ephemeral = chat.tier == Tier.EPHEMERAL
            self.keep_button.setVisible(ephemeral)
            self._set_tier_items(ephemeral)
            self.tier_note.setText(_tier_note(chat.tier))
        finally:
            self._loading = False

    def _entry_model(self, chat: Chat) -> str:
        try:
            return self._config.llm(chat.provider).model_name
        except ConfigError:
            return ""

    def _set_tier_items(self, ephemeral: bool) -> None:
        model = self.tier.model()
        assert isinstance(model, QStandardItemModel)
        for row in range(model.rowCount()):
            item = model.item(row)
            tier = Tier(item.data(Qt.ItemDataRole.UserRole))
            if tier == Tier.EPHEMERAL:
                item.setEnabled(ephemeral)
                item.setToolTip("" if ephemeral else "A saved chat cannot become Ephemeral")
            else:
                item.setEnabled(True)

    def _fill_providers(self, chat: Chat | None) -> None:
        self._provider_items.clear()
        tier = chat.tier if chat is not None else Tier.STANDARD
        current = None
        if chat is not None and self._config.llms:
            try:
                current = self._config.llm(chat.provider).provider_name
            except ConfigError:
                current = chat.provider
        reasons: list[str] = []
        for entry, verdict in provider_choices(self._config, tier):
            item = QStandardItem(_entry_label(entry))
            item.setData(entry.provider_name, PROVIDER_ROLE)
            item.setEnabled(verdict.allowed)
            if not verdict.allowed:
                item.setToolTip(verdict.reason)
                item.setData(verdict.reason, Qt.ItemDataRole.AccessibleDescriptionRole)
                reasons.append(verdict.reason)
            self._provider_items.appendRow(item)
        if current is not None:
            index = self.providers.findData(current, PROVIDER_ROLE)
            self.providers.setCurrentIndex(index)
        if not self._config.llms:
            self.forbidden.setText("No model is set up: add a provider in Settings.")
            self.forbidden.show()
        elif reasons:
            self.forbidden.setText("Not available here: " + "; ".join(reasons) + ".")
            self.forbidden.show()
        else:
            self.forbidden.hide()

    def provider_allowed(self, provider_name: str) -> bool:
        """Whether the picker offers ``provider_name`` as enabled (for tests and tools)."""
        index = self.providers.findData(provider_name, PROVIDER_ROLE)
        if index < 0:
            return False
        item = self._provider_items.item(index)
        return bool(item.isEnabled())

    def clear(self) -> None:
        """Drop everything shown (on lock), without saving."""
        self._save_timer.stop()
        self.chat = None
        self._loading = True
        try:
            self.system_prompt.clear()
            self.memory.clear()
        finally:
            self._loading = False
        self.set_chat(None)
        self.reset_context()

    # context indicator -------------------------------------------------------------------

    def reset_context(self) -> None:
        self.context.setRange(0, 1)
        self.context.setValue(0)
        self.context.setFormat("no turn yet")
        self.context_note.clear()

    def show_turn(self, event: TurnStarted) -> None:
        """Show how much of the context the turn that just started uses."""
        if self.chat is None or event.chat_id != self.chat.id:
            return
        try:
            size = self._config.llm(self.chat.provider).context_size
        except ConfigError:
            return
        used = min(event.context_tokens, size)
        self.context.setRange(0, size)
        self.context.setValue(used)
        self.context.setFormat(f"{event.context_tokens:,} of {size:,} tokens")
        if event.dropped:
            self.context_note.setText(
                f"{event.dropped:,} older messages did not fit and were not sent."
            )
        else:
            self.context_note.clear()

    # changes -----------------------------------------------------------------------------

    def _texts_changed(self) -> None:
        if not self._loading and self.chat is not None:
            self.activity.emit()
            self._save_timer.start()

    def save_texts(self) -> None:
        """Save the system prompt and memory if they were edited."""
        self._save_timer.stop()
        chat = self.chat
        if chat is None:
            return
        fields: dict[str, Any] = {}
        if self.system_prompt.toPlainText() != chat.system_prompt:
            fields["system_prompt"] = self.system_prompt.toPlainText()
        if self.memory.toPlainText() != chat.memory:
            fields["memory"] = self.memory.toPlainText()
        if fields:
            self._update(chat.id, **fields)

    def _provider_chosen(self, index: int) -> None:
        chat = self.chat
        name = self.providers.itemData(index, PROVIDER_ROLE)
        if chat is None or not isinstance(name, str) or name == chat.provider:
            return
        self.activity.emit()
        self._update(chat.id, provider=name)

    def _model_edited(self) -> None:
        chat = self.chat
        name = self.model_name.text().strip()
        if chat is None or not name or name == (chat.model or self._entry_model(chat)):
            return
        self._update(chat.id, model=name)

    def _tier_chosen(self, index: int) -> None:
        value = self.tier.itemData(index)
        if self.chat is None or not isinstance(value, str):
            return
        self.move_to(Tier(value))

    def move_to(self, tier: Tier) -> None:
        """Move the open chat to ``tier`` (refused, with the reason, if its model is not
        allowed there)."""
        chat = self.chat
        if chat is None or tier == chat.tier:
            return
        self.activity.emit()

        def refused(error: BaseException) -> None:
            self.set_chat(self.chat)
            self.status_message.emit(str(error))

        tasks.start(
            self._session.service.move(chat.id, tier),
            on_done=lambda moved: self.status_message.emit(f"Moved to {TIER_NAMES[moved.tier]}"),
            on_error=refused,
        )

    def _update(self, chat_id: str, **fields: Any) -> None:
        def refused(error: BaseException) -> None:
            self.set_chat(self.chat)
            self.status_message.emit(str(error))

        def done(chat: Chat) -> None:
            if self.chat is not None and chat.id == self.chat.id:
                self.set_chat(chat)

        tasks.start(self._session.service.update(chat_id, **fields), on_done=done, on_error=refused)


def _entry_label(entry: LLMEntry) -> str:
    where = entry.effective_locality.value.replace("_", " ")
    return f"{entry.provider_name} — {entry.model_name} ({where})"


def _tier_note(tier: Tier) -> str:
    if tier == Tier.PRIVATE:
        return "Private: kept in its own encrypted database; on-prem models only."
    if tier == Tier.EPHEMERAL:
        return "Ephemeral: kept in memory only and gone when Hushchat closes or locks."
    return "Standard: kept encrypted on this device; any model."

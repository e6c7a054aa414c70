"""The chat settings panel: model, privacy tier, model parameters, system prompt,
memory, context use.

The model picker lists every configured provider entry; those the chat's tier
forbids are shown disabled, with the policy's reason as tooltip and below the
picker; it follows config changes (a provider added in Settings appears at once).
Model parameters (temperature, top-p, max tokens, context length, stop sequences)
each have "Default": the provider entry's value from the config, else the server's.
"Read answers aloud as they arrive" is kept with them (``ChatParams.read_aloud``), so it
syncs as they do; it is never sent to a model.
Moving the chat to another tier goes through the service (which refuses when the
chat's model is not allowed there). An Ephemeral chat offers "Keep",
which moves it to Standard or Private. The context indicator shows the tokens
the last turn sent against the model's context size.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.context import ContextWindow
from app.chat.events import ChatChanged, ChatUpdated, TurnStarted
from app.chat.service import effective_params, provider_choices, sending_blocked_reason
from app.config import Config, LLMEntry
from app.errors import ConfigError
from app.privacy.policy import refusals_summary
from app.session import Session
from app.store.models import MAX_STOP_SEQUENCES, Chat, ChatParams, Tier
from app.ui import tasks
from providers import Locality

log = logging.getLogger(__name__)

__all__ = [
    "ChatSettingsPanel",
    "format_stop_sequences",
    "parse_stop_sequences",
    "sending_blocked_reason",
]

SAVE_DELAY_MS = 800
PROVIDER_ROLE = int(Qt.ItemDataRole.UserRole) + 1
TIER_NAMES = {Tier.STANDARD: "Standard", Tier.PRIVATE: "Private", Tier.EPHEMERAL: "Ephemeral"}
# Shown under "Default" when neither the config nor the chat sets a value (the server
# then uses its own, which the app does not know); unticking starts from TYPICAL_VALUES.
SERVER_DEFAULT_TEXT = "server default"
STOP_HINT = "e.g. ###, \\n\\n"
TYPICAL_VALUES: dict[str, float] = {
    "temperature": 0.8,
    "top_p": 1.0,
    "max_tokens": 1024,
    "context_size": 4096,
}


def parse_stop_sequences(text: str) -> tuple[str, ...]:
    """Stop sequences typed as one line: separated by commas; ``\\n`` is a line break,
    ``\\t`` a tab, ``\\,`` a comma and ``\\\\`` a backslash. Blank ones are dropped."""
    escapes = {"n": "\n", "t": "\t", ",": ",", "\\": "\\"}
    sequences: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append(escapes.get(following, "\\" + following))
        elif char == ",":
            sequences.append("".join(current).strip(" "))
            current = []
        else:
            current.append(char)
    sequences.append("".join(current).strip(" "))
    return tuple(seq for seq in sequences if seq)[:MAX_STOP_SEQUENCES]


def format_stop_sequences(sequences: tuple[str, ...] | None) -> str:
    """The line :func:`parse_stop_sequences` reads back as ``sequences``."""
    escaped = (
        seq.replace("\\", "\\\\").replace(",", "\\,").replace("\n", "\\n").replace("\t", "\\t")
        for seq in sequences or ()
    )
    return ", ".join(escaped)


@dataclass(frozen=True)
class _ParamRow:
    """One model parameter's editor and its "Default" box."""

    name: str
    editor: QDoubleSpinBox | QSpinBox | QLineEdit
    default: QCheckBox
    minimum: float = 0.0  # the smallest value a spin box takes (below it: "server default")


class ChatSettingsPanel(QWidget):
    """Settings of the open chat; every change goes to the chat service."""

    status_message = Signal(str)
    error_message = Signal(str)  # a failure: shown until dismissed
    activity = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self.setObjectName("chatSettings")
        self.chat: Chat | None = None
        self._loading = False
        self._stop_following: Callable[[], None] | None = None
        self._followed: object | None = None

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

        self.params_box = QGroupBox("Model parameters", self)
        self.params_box.setAccessibleName("Model parameters")
        self.temperature = QDoubleSpinBox(self.params_box)
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setDecimals(2)
        self.top_p = QDoubleSpinBox(self.params_box)
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setDecimals(2)
        self.max_tokens = QSpinBox(self.params_box)
        self.max_tokens.setRange(1, 1_000_000)
        self.max_tokens.setSingleStep(64)
        self.max_tokens.setGroupSeparatorShown(True)
        self.context_length = QSpinBox(self.params_box)
        self.context_length.setRange(128, 10_000_000)
        self.context_length.setSingleStep(1024)
        self.context_length.setGroupSeparatorShown(True)
        self.stop_sequences = QLineEdit(self.params_box)
        self.stop_sequences.setPlaceholderText(STOP_HINT)
        self.stop_sequences.setToolTip(
            "Text that ends the answer. Separate several with commas; write \\n for a line "
            "break and \\, for a comma."
        )
        params_form = QFormLayout(self.params_box)
        params_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._param_rows: list[_ParamRow] = []
        for name, label, editor, what in (
            ("temperature", "Te&mperature", self.temperature, "temperature"),
            ("top_p", "Top-&p", self.top_p, "top-p"),
            ("max_tokens", "Ma&x tokens", self.max_tokens, "longest answer in tokens"),
            ("context_size", "Context &length", self.context_length, "context length in tokens"),
            ("stop", "&Stop sequences", self.stop_sequences, "stop sequences"),
        ):
            editor.setAccessibleName(label.replace("&", ""))
            if isinstance(editor, QAbstractSpinBox):
                editor.setKeyboardTracking(False)  # save the number typed, not each digit
            default = QCheckBox("Default", self.params_box)
            default.setAccessibleName(f"Use the provider's default {what}")
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(editor, 1)
            row.addWidget(default)
            caption = QLabel(label, self.params_box)
            caption.setBuddy(editor)
            params_form.addRow(caption, row)
            minimum = editor.minimum() if isinstance(editor, QAbstractSpinBox) else 0.0
            self._param_rows.append(_ParamRow(name, editor, default, minimum))

        self.read_aloud = QCheckBox("&Read answers aloud as they arrive", self)
        self.read_aloud.setAccessibleName("Read answers aloud as they arrive")
        self.read_aloud.setToolTip(
            "Each answer of this chat is read aloud while it arrives, with the voice set "
            "in Settings, Voice (Esc stops reading)."
        )

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
        layout.addWidget(self.params_box)
        layout.addWidget(self.read_aloud)
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
        self._params_timer = QTimer(self)
        self._params_timer.setSingleShot(True)
        self._params_timer.setInterval(SAVE_DELAY_MS)
        self._params_timer.timeout.connect(self.save_params)
        for param in self._param_rows:
            param.default.toggled.connect(
                lambda checked, row=param: self._default_toggled(row, checked)
            )
            if isinstance(param.editor, QLineEdit):
                param.editor.editingFinished.connect(self._params_changed)
            else:
                param.editor.valueChanged.connect(self._params_changed)
        self.read_aloud.toggled.connect(self._read_aloud_toggled)
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
            self.save_params()
            self.reset_context()
        self._follow_config()
        self.chat = chat
        self._loading = True
        try:
            self._fill_providers(chat)
            enabled = chat is not None
            for widget in (
                self.providers,
                self.model_name,
                self.tier,
                self.params_box,
                self.read_aloud,
                self.system_prompt,
                self.memory,
            ):
                widget.setEnabled(enabled)
            if not self._params_timer.isActive():  # never overwrite what is being edited
                self._show_params(chat)
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

    def _follow_config(self) -> None:
        """Refresh on config changes of the session's current chat service (a provider
        added in Settings must appear in the open chat's model list at once)."""
        if not self._session.is_unlocked:
            return
        service = self._session.service
        if self._followed is service:
            return
        self._stop_follow()
        stop_config = service.follow_config(self._config_changed)
        stop_changes = service.changes.subscribe(self._chat_changed)

        def stop() -> None:
            stop_config()
            with contextlib.suppress(ValueError):  # already unsubscribed
                stop_changes()

        self._stop_following, self._followed = stop, service
        self.destroyed.connect(stop)  # a panel that is gone must not be called

    def _stop_follow(self) -> None:
        if self._stop_following is not None:
            self._stop_following()
        self._stop_following = self._followed = None

    def _config_changed(self) -> None:
        self.set_chat(self.chat)

    def _chat_changed(self, change: ChatChanged) -> None:
        """Settings of the open chat changed elsewhere (another device, the command line):
        the parameters are re-read (the chat view reloads the rest)."""
        chat = self.chat
        if chat is None or change.chat_id != chat.id or not isinstance(change, ChatUpdated):
            return

        def read(fresh: Chat) -> None:
            if self.chat is not None and self.chat.id == fresh.id and fresh.params != chat.params:
                self.set_chat(fresh)

        def failed(error: BaseException) -> None:  # e.g. deleted meanwhile: the view says so
            log.info("chat settings not re-read: %s", type(error).__name__)

        tasks.start_for(self, self._session.service.chat(chat.id), on_done=read, on_error=failed)

    def _entry(self, chat: Chat) -> LLMEntry | None:
        if not self._config.llms:
            return None
        try:
            return self._config.llm(chat.provider)
        except ConfigError:
            return None

    def _show_params(self, chat: Chat | None) -> None:
        """Show the chat's own parameters; "Default" ones show the provider's value."""
        own = chat.params if chat is not None else ChatParams()
        entry = self._entry(chat) if chat is not None else None
        defaults = effective_params(entry, ChatParams()) if entry is not None else ChatParams()
        for param in self._param_rows:
            value = getattr(own, param.name)
            default = getattr(defaults, param.name)
            shown = value if value is not None else default
            param.default.setChecked(value is None)
            param.editor.setEnabled(value is not None)
            if isinstance(param.editor, QLineEdit):
                param.editor.setText(format_stop_sequences(shown))
                param.editor.setPlaceholderText(STOP_HINT if value is not None else "none")
                described = format_stop_sequences(default) or "none"
            else:
                if shown is None:
                    _show_server_default(param)
                else:
                    _set_number(param, shown)
                described = "the server's own" if default is None else f"{default:,}"
            param.default.setToolTip(f"Use the provider's default ({described})")
        self.read_aloud.setChecked(bool(own.read_aloud))

    def _default_toggled(self, param: _ParamRow, checked: bool) -> None:
        param.editor.setEnabled(not checked)
        if not checked and not self._loading:
            editor = param.editor
            if isinstance(editor, QAbstractSpinBox) and editor.specialValueText():
                _set_number(param, TYPICAL_VALUES[param.name])  # a value of one's own
            elif isinstance(editor, QLineEdit):
                editor.setPlaceholderText(STOP_HINT)
            editor.setFocus(Qt.FocusReason.OtherFocusReason)
        self._params_changed()

    def _read_aloud_toggled(self, _checked: bool) -> None:
        if not self._loading and self.chat is not None:
            self.activity.emit()
            self.save_params()  # a tick is saved at once, with any parameter being edited

    def _params_changed(self) -> None:
        if not self._loading and self.chat is not None:
            self.activity.emit()
            self._params_timer.start()

    def shown_params(self) -> ChatParams:
        """The parameters the panel's controls show (None where "Default" is ticked)."""
        values: dict[str, Any] = {"read_aloud": True if self.read_aloud.isChecked() else None}
        for param in self._param_rows:
            if param.default.isChecked():
                values[param.name] = None
            elif isinstance(param.editor, QLineEdit):
                values[param.name] = parse_stop_sequences(param.editor.text())
            elif isinstance(param.editor, QSpinBox):
                values[param.name] = param.editor.value()
            else:
                values[param.name] = round(param.editor.value(), 2)
        return ChatParams(**values)

    def save_params(self) -> None:
        """Save the model parameters if they were edited."""
        self._params_timer.stop()
        chat = self.chat
        if chat is None:
            return
        params = self.shown_params()
        if params != chat.params:
            self._update(chat.id, params=params)

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
        refused: list[tuple[str, Locality]] = []
        for entry, verdict in provider_choices(self._config, tier):
            item = QStandardItem(_entry_label(entry))
            item.setData(entry.provider_name, PROVIDER_ROLE)
            item.setEnabled(verdict.allowed)
            if not verdict.allowed:
                item.setToolTip(verdict.reason)
                item.setData(verdict.reason, Qt.ItemDataRole.AccessibleDescriptionRole)
                refused.append((entry.provider_name, entry.effective_locality))
            self._provider_items.appendRow(item)
        if current is not None:
            index = self.providers.findData(current, PROVIDER_ROLE)
            self.providers.setCurrentIndex(index)
        if not self._config.llms:
            self.forbidden.setText("No model is set up: add a provider in Settings.")
            self.forbidden.show()
        elif refused:
            self.forbidden.setText(f"Not available here: {refusals_summary(tier, refused)}")
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
        self._params_timer.stop()
        self.chat = None
        self._loading = True
        try:
            self.system_prompt.clear()
            self.memory.clear()
        finally:
            self._loading = False
        self.set_chat(None)
        self._stop_follow()
        self.reset_context()

    # context indicator -------------------------------------------------------------------

    def reset_context(self) -> None:
        self.context.setRange(0, 1)
        self.context.setValue(0)
        self.context.setFormat("no turn yet")
        self.context_note.clear()

    def show_turn(self, event: TurnStarted) -> None:
        """Show how much of the context the turn that just started uses, against the size
        the turn was fitted into (the server's stated size wins, as in the composer)."""
        chat = self.chat
        if chat is None or event.chat_id != chat.id or not self._session.is_unlocked:
            return

        def show(window: ContextWindow) -> None:
            if self.chat is None or self.chat.id != event.chat_id:
                return
            size = window.size
            self.context.setRange(0, size)
            self.context.setValue(min(event.context_tokens, size))
            self.context.setFormat(f"{event.context_tokens:,} of {size:,} tokens")
            self.context.setToolTip(f"Context size: {window.describe()}")
            if event.dropped:
                self.context_note.setText(
                    f"{event.dropped:,} older messages did not fit and were not sent."
                )
            else:
                self.context_note.clear()

        def failed(error: BaseException) -> None:  # e.g. its provider was removed
            log.info("context size not shown: %s", type(error).__name__)

        # The turn has just asked for the size: the service answers from its cache.
        tasks.start_for(
            self, self._session.service.context_window(chat), on_done=show, on_error=failed
        )

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
            self.error_message.emit(str(error))

        tasks.start(
            self._session.service.move(chat.id, tier),
            on_done=lambda moved: self.status_message.emit(f"Moved to {TIER_NAMES[moved.tier]}"),
            on_error=refused,
        )

    def _update(self, chat_id: str, **fields: Any) -> None:
        def refused(error: BaseException) -> None:
            self.set_chat(self.chat)
            self.error_message.emit(str(error))

        def done(chat: Chat) -> None:
            if self.chat is not None and chat.id == self.chat.id:
                self.set_chat(chat)

        tasks.start(self._session.service.update(chat_id, **fields), on_done=done, on_error=refused)


def _show_server_default(param: _ParamRow) -> None:
    """The spin box reads "server default": one step below its range, Qt's special value."""
    editor = param.editor
    if isinstance(editor, QSpinBox):
        editor.setMinimum(int(param.minimum) - 1)
        editor.setSpecialValueText(SERVER_DEFAULT_TEXT)
        editor.setValue(editor.minimum())
    elif isinstance(editor, QDoubleSpinBox):
        editor.setMinimum(param.minimum - 0.01)
        editor.setSpecialValueText(SERVER_DEFAULT_TEXT)
        editor.setValue(editor.minimum())


def _set_number(param: _ParamRow, number: float) -> None:
    editor = param.editor
    if isinstance(editor, QSpinBox):
        editor.setSpecialValueText("")
        editor.setMinimum(int(param.minimum))
        editor.setValue(int(number))
    elif isinstance(editor, QDoubleSpinBox):
        editor.setSpecialValueText("")
        editor.setMinimum(param.minimum)
        editor.setValue(float(number))


def _entry_label(entry: LLMEntry) -> str:
    where = entry.effective_locality.value.replace("_", " ")
    return f"{entry.provider_name} — {entry.model_name} ({where})"


def _tier_note(tier: Tier) -> str:
    if tier == Tier.PRIVATE:
        return "Private: kept in its own encrypted database; on-prem models only."
    if tier == Tier.EPHEMERAL:
        return "Ephemeral: kept in memory only and gone when Hushchat closes or locks."
    return "Standard: kept encrypted on this device; any model."

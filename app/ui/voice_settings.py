"""Settings, Voice: the speech engine answers are read aloud with, its voice and rate.

The engines are the config's ``tts:`` entries (each with where it runs); saving writes
``default_tts`` and the chosen entry's ``voice`` and ``speed`` to the config file
(``app.provider_setup.save_voice_settings``: comments kept, atomic write). The voice list
comes from the engine (``Speaker.voices``), in the background; a name can be typed too.
"Test" reads a phrase with what the page shows, saved or not. Without any engine the page
says how to add one, and "Add system voices" writes ``- type: system``.

The window's ``Speaker`` is asked for only when voices are listed or a phrase is tested,
so opening Settings sets up no audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.config import LoadedConfig, TTSEntry
from app.errors import HushchatError
from app.provider_setup import add_system_voices, save_voice_settings
from app.session import Session
from app.tiers import Tier
from app.ui import tasks
from app.ui.layout import set_role

if TYPE_CHECKING:
    from app.ui.voice import Speaker

__all__ = ["TEST_KEY", "TEST_PHRASE", "VoicePageWidget"]

log = logging.getLogger(__name__)

#: What the speaker calls the test phrase (not a message id).
TEST_KEY = "settings-voice-test"
TEST_PHRASE = "Hello! This is how Hushchat reads its answers to you."
LOCALITY_NAMES = {"on_prem": "on-prem", "free_cloud": "free cloud", "paid_cloud": "paid cloud"}
NO_ENGINE_TEXT = (
    "No speech engine is set up. Add your computer's own voices (they run on this "
    "device, so every chat may use them), or declare a speech server under tts: in the "
    "config file, for example Kokoro-FastAPI on this computer:\n\n"
    "tts:\n"
    "  - type: openai\n"
    "    name: kokoro\n"
    "    base_url: http://127.0.0.1:8880/v1\n"
    "    model: kokoro\n"
    "    voice: af_heart"
)


def _speed_bounds() -> tuple[float, float]:
    """The rates the config schema allows (0.25 to 4.0)."""
    low, high = 0.25, 4.0
    for rule in TTSEntry.model_fields["speed"].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return float(low), float(high)


def engine_label(entry: TTSEntry) -> str:
    """How the engine list names ``entry``: name, kind and where it runs."""
    kind = {"system": "system voices", "openai": "OpenAI-compatible", "xtts": "XTTS"}[entry.type]
    where = LOCALITY_NAMES.get(entry.effective_locality.value, entry.effective_locality.value)
    return f"{entry.name} — {kind} ({where})"


class VoicePageWidget(QWidget):
    """The Voice tab of Settings."""

    #: The config file was written (and applied to the session).
    config_changed = Signal()
    #: A line for the dialog's status (what was saved).
    status_changed = Signal(str)

    def __init__(
        self,
        session: Session,
        speaker_source: Callable[[], Speaker] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self._speaker_source = speaker_source
        self._speaker: Speaker | None = None
        self._voices_generation = 0
        #: The engine whose voices are listed (or being listed).
        self._voices_of: str | None = None

        # Without an engine: what to do.
        self.empty_page = QWidget()
        self.empty_text = QLabel(NO_ENGINE_TEXT)
        self.empty_text.setWordWrap(True)
        self.empty_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty_text.setAccessibleName("No speech engine is set up")
        self.add_system_button = QPushButton("A&dd system voices")
        self.add_system_button.setAccessibleName("Add the system voices as a speech engine")
        self.add_system_button.setToolTip("Writes '- type: system' under tts: in the config file")
        self.add_system_button.clicked.connect(self.add_system_voices)
        empty_buttons = QHBoxLayout()
        empty_buttons.addWidget(self.add_system_button)
        empty_buttons.addStretch(1)
        empty_layout = QVBoxLayout(self.empty_page)
        empty_layout.addWidget(self.empty_text)
        empty_layout.addLayout(empty_buttons)
        empty_layout.addStretch(1)

        # With engines: the form.
        self.form_page = QWidget()
        self.engine_combo = QComboBox()
        self.engine_combo.setAccessibleName("Speech engine")
        self.engine_combo.setToolTip(
            "Answers are read with this engine when the chat's privacy tier allows it; "
            "Private chats use on-prem engines and system voices only."
        )
        self.engine_combo.currentIndexChanged.connect(lambda _i: self._engine_chosen())
        self.voice_combo = QComboBox()
        self.voice_combo.setEditable(True)
        self.voice_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.voice_combo.setAccessibleName("Voice")
        self.voice_combo.setToolTip(str(TTSEntry.model_fields["voice"].description or ""))
        line = self.voice_combo.lineEdit()
        if line is not None:
            line.setPlaceholderText("the engine's default voice")
        self.reload_voices_button = QPushButton("&List voices")
        self.reload_voices_button.setAccessibleName("List the engine's voices again")
        self.reload_voices_button.clicked.connect(lambda: self.load_voices(force=True))
        self.voices_state = QLabel()
        self.voices_state.setWordWrap(True)
        self.voices_state.setAccessibleName("Voice list")
        set_role(self.voices_state, "hint")
        low, high = _speed_bounds()
        self.rate_spin = QDoubleSpinBox()
        self.rate_spin.setRange(low, high)
        self.rate_spin.setSingleStep(0.05)
        self.rate_spin.setDecimals(2)
        self.rate_spin.setSuffix(" times normal")
        self.rate_spin.setAccessibleName("Speaking rate")
        self.rate_spin.setToolTip(str(TTSEntry.model_fields["speed"].description or ""))
        self.rate_note = QLabel()
        self.rate_note.setWordWrap(True)
        set_role(self.rate_note, "hint")
        self.test_edit = QLineEdit(TEST_PHRASE)
        self.test_edit.setCursorPosition(0)
        self.test_edit.setAccessibleName("Test phrase")
        self.test_edit.returnPressed.connect(self.test_voice)
        self.test_button = QPushButton("T&est")
        self.test_button.setAccessibleName("Read the test phrase aloud")
        self.test_button.clicked.connect(self.test_voice)
        self.stop_button = QPushButton("St&op")
        self.stop_button.setAccessibleName("Stop reading the test phrase")
        self.stop_button.clicked.connect(self.stop_test)
        self.stop_button.setEnabled(False)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setAccessibleName("Problem with the voice settings")
        set_role(self.error_label, "error")
        self.error_label.hide()
        self.save_button = QPushButton("Sa&ve")
        self.save_button.setAccessibleName("Save the voice settings")
        self.save_button.clicked.connect(self.save)

        voice_row = QHBoxLayout()
        voice_row.addWidget(self.voice_combo, 1)
        voice_row.addWidget(self.reload_voices_button)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_edit, 1)
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.stop_button)
        form = QFormLayout()
        engine_label_widget = QLabel("E&ngine:")
        engine_label_widget.setBuddy(self.engine_combo)
        form.addRow(engine_label_widget, self.engine_combo)
        voice_label = QLabel("Voi&ce:")
        voice_label.setBuddy(self.voice_combo)
        form.addRow(voice_label, voice_row)
        form.addRow("", self.voices_state)
        rate_label = QLabel("&Rate:")
        rate_label.setBuddy(self.rate_spin)
        rate_row = QHBoxLayout()
        rate_row.addWidget(self.rate_spin)
        rate_row.addStretch(1)
        form.addRow(rate_label, rate_row)
        form.addRow("", self.rate_note)
        test_label = QLabel("Test p&hrase:")
        test_label.setBuddy(self.test_edit)
        form.addRow(test_label, test_row)
        hint = QLabel(
            "Private chats are read only by on-prem engines and system voices, Ephemeral "
            "chats by those or free ones. The test phrase is not from a chat: any engine "
            "may read it."
        )
        hint.setWordWrap(True)
        set_role(hint, "hint")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        form_layout = QVBoxLayout(self.form_page)
        form_layout.addLayout(form)
        form_layout.addWidget(hint)
        form_layout.addStretch(1)
        form_layout.addLayout(buttons)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_page)
        self.stack.addWidget(self.form_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.error_label)
        self.refresh()

    # showing -----------------------------------------------------------------------------

    @property
    def engines(self) -> list[TTSEntry]:
        return list(self.session.config.config.tts)

    def refresh(self) -> None:
        """Show the config's engines, the default one chosen, and its voice and rate."""
        config = self.session.config.config
        if not config.tts:
            self.stack.setCurrentWidget(self.empty_page)
            return
        self.stack.setCurrentWidget(self.form_page)
        names = [entry.name for entry in config.tts]
        current = config.default_tts if config.default_tts in names else names[0]
        self.engine_combo.blockSignals(True)
        try:
            self.engine_combo.clear()
            for entry in config.tts:
                self.engine_combo.addItem(engine_label(entry), entry.name)
            self.engine_combo.setCurrentIndex(names.index(current))
        finally:
            self.engine_combo.blockSignals(False)
        self._voices_of = None
        self._engine_chosen()

    def selected_engine(self) -> TTSEntry | None:
        """The configured entry the engine list shows."""
        name = self.engine_combo.currentData()
        return next((entry for entry in self.engines if entry.name == name), None)

    def shown_entry(self) -> TTSEntry | None:
        """The selected engine with the voice and rate the page shows (saved or not)."""
        entry = self.selected_engine()
        if entry is None:
            return None
        voice = self.voice_combo.currentText().strip() or None
        return entry.model_copy(update={"voice": voice, "speed": round(self.rate_spin.value(), 2)})

    def _engine_chosen(self) -> None:
        entry = self.selected_engine()
        if entry is None:
            return
        self.voice_combo.clear()
        self.voice_combo.setEditText(entry.voice or "")
        self.rate_spin.setValue(entry.speed)
        self.rate_note.setText(
            "XTTS servers set the rate on the server: this one is not sent to it."
            if entry.type == "xtts"
            else ""
        )
        self.rate_note.setVisible(entry.type == "xtts")
        self.error_label.hide()
        self.voices_state.setText("")
        if self.isVisible():
            self.load_voices()

    def showEvent(self, event: QShowEvent) -> None:
        """The voice list is asked for when the page is first seen (not on opening
        Settings on another tab)."""
        super().showEvent(event)
        self.load_voices()

    # the speaker -------------------------------------------------------------------------

    def _speaker_now(self) -> Speaker | None:
        if self._speaker_source is None:
            return None
        speaker = self._speaker_source()
        if speaker is not self._speaker:
            self._speaker = speaker
            speaker.state_changed.connect(self._state_changed)
            speaker.failed.connect(self._failed)
            # The dialog may outlive a lock; the speaker goes with it.
            speaker.destroyed.connect(self._speaker_gone)
        return speaker

    def _speaker_gone(self) -> None:
        self._speaker = None
        self.stop_button.setEnabled(False)

    def load_voices(self, *, force: bool = False) -> None:
        """List the selected engine's voices in the background (once per engine, or
        again with ``force``); the typed voice is kept."""
        entry = self.selected_engine()
        if entry is None or (entry.name == self._voices_of and not force):
            return
        speaker = self._speaker_now()
        if speaker is None:
            self.voices_state.setText("Voices cannot be listed here: type a voice name.")
            return
        self._voices_of = entry.name
        self._voices_generation += 1
        generation = self._voices_generation
        self.voices_state.setText("Loading voices…")
        set_role(self.voices_state, "hint")
        self.reload_voices_button.setEnabled(False)

        def listed(voices: list[str]) -> None:
            if generation != self._voices_generation:
                return
            self.reload_voices_button.setEnabled(True)
            typed = self.voice_combo.currentText()
            self.voice_combo.clear()
            self.voice_combo.addItems(voices)
            self.voice_combo.setEditText(typed)
            if voices:
                self.voices_state.setText(f"{len(voices):,} voices from {entry.name}.")
            else:
                self.voices_state.setText(
                    f"{entry.name} lists no voices: type one, or leave it empty for its default."
                )

        def failed(error: BaseException) -> None:
            if generation != self._voices_generation:
                return
            self.reload_voices_button.setEnabled(True)
            self._voices_of = None  # asked again next time
            set_role(self.voices_state, "error")
            self.voices_state.setText(
                f"Voices not listed: {error} Type a voice name, or fix the engine and "
                "press List voices."
            )

        tasks.start_for(self, speaker.voices(entry), listed, failed)

    def test_voice(self) -> bool:
        """Read the test phrase with the engine, voice and rate shown (Standard tier: the
        phrase is no chat's content); whether reading started."""
        entry = self.shown_entry()
        speaker = self._speaker_now()
        if entry is None or speaker is None:
            return False
        self.error_label.hide()
        phrase = self.test_edit.text().strip() or TEST_PHRASE
        try:
            speaker.speak_text(TEST_KEY, Tier.STANDARD, phrase, entry)
        except HushchatError as error:
            self._show_error(str(error))
            return False
        self.stop_button.setEnabled(True)
        return True

    def stop_test(self) -> None:
        """Stop reading the test phrase."""
        speaker = self._speaker
        if speaker is not None and speaker.speaking_key == TEST_KEY:
            speaker.stop()
        self.stop_button.setEnabled(False)

    def _state_changed(self, key: str, state: str) -> None:
        if key == TEST_KEY:
            self.stop_button.setEnabled(state != "idle")

    def _failed(self, key: str, message: str) -> None:
        if key == TEST_KEY:
            self.stop_button.setEnabled(False)
            self._show_error(f"The test phrase was not read: {message}")

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.show()

    # saving ------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the chosen engine as ``default_tts``, with its voice and rate."""
        entry = self.shown_entry()
        if entry is None:
            return
        self.save_button.setEnabled(False)
        self.error_label.hide()
        tasks.start_for(
            self,
            self.session.runner.blocking(
                save_voice_settings, self.session.config, entry.name, entry.voice, entry.speed
            ),
            lambda config: self._saved(
                config, f"Voice settings saved: answers are read with {entry.name}."
            ),
            self._save_failed,
        )

    def add_system_voices(self) -> None:
        """Add the system voices (``- type: system``) to the config file and show them."""
        self.add_system_button.setEnabled(False)
        tasks.start_for(
            self,
            self.session.runner.blocking(add_system_voices, self.session.config),
            lambda config: self._saved(config, "System voices added."),
            self._save_failed,
        )

    def _saved(self, config: LoadedConfig, message: str) -> None:
        self.save_button.setEnabled(True)
        self.add_system_button.setEnabled(True)
        self.session.apply_config(config)
        self.refresh()
        self.config_changed.emit()
        self.status_changed.emit(message)

    def _save_failed(self, error: BaseException) -> None:
        self.save_button.setEnabled(True)
        self.add_system_button.setEnabled(True)
        self._show_error(f"Not saved: {error}")

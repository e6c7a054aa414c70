"""The operating system's voices through QtTextToSpeech (``app.speech.SystemVoices``).

Engine: the platform's own, chosen from ``QTextToSpeech.availableEngines()`` in this
order: speechd (speech-dispatcher, Linux), flite; darwin/macos (AVSpeechSynthesizer);
winrt, sapi (Windows); Qt's "mock" engine (for Qt's own tests) is never used. With
none, or one that fails to start, ``say`` raises SpeechError saying what to install.

Rate: the entry's ``speed`` (0.25 to 4.0, 1.0 normal, as for the HTTP engines) maps to
QTextToSpeech's rate (-1.0 to 1.0, 0 normal) logarithmically, ``log2(speed) / 2``:
half speed is -0.5, double speed 0.5, the ends meet the ends (0.25 -> -1, 4 -> 1).

Voices: speech-dispatcher with espeak-ng offers some 1,500 voices in 100 locales, too
many for a list. ``voices()`` gives the voices of the system locale's language (all its
countries: en_US, en_GB, ... for English), sorted by name; when that language has
none, every voice. A voice named in the entry is looked up among all voices, so any
voice can be set in the config file.

Imports QtTextToSpeech: load this module only when system voices are used.
"""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Final

from PySide6.QtCore import QLocale, QObject, Signal
from PySide6.QtTextToSpeech import QTextToSpeech, QVoice

from app.speech.errors import SpeechError

__all__ = ["QtSystemVoices", "speed_to_rate"]

#: Engines in order of preference (the first available one is used).
_PREFERRED: Final = ("speechd", "flite", "darwin", "macos", "winrt", "sapi")
#: Qt's test engine: speaks nothing.
_NOT_VOICES: Final = frozenset({"mock"})


def speed_to_rate(speed: float) -> float:
    """The entry's ``speed`` (0.25..4.0) as QTextToSpeech's rate (-1..1)."""
    return max(-1.0, min(1.0, math.log2(speed) / 2))


_INSTALL_HINTS: Final = {
    "darwin": "check System Settings > Accessibility > Spoken Content",
    "win32": "install a voice in Settings > Time & language > Speech",
}


def _install_hint() -> str:
    """What to do when there are no system voices, on this platform."""
    return _INSTALL_HINTS.get(
        sys.platform,
        "install speech-dispatcher and espeak-ng (e.g. apt install speech-dispatcher espeak-ng)",
    )


def _all_voices(tts: QTextToSpeech) -> list[QVoice]:
    """Every voice of every locale (Qt's ``allVoices(nullptr)``; PySide's stub omits None)."""
    return list(tts.allVoices(None))  # type: ignore[arg-type]


class QtSystemVoices(QObject):
    """``SystemVoices`` with QTextToSpeech; one instance per window (lazily started)."""

    #: the engine began to speak (a sentence)
    speaking = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tts: QTextToSpeech | None = None
        self._pending: asyncio.Future[None] | None = None
        self._saw_speaking = False

    def engine_name(self) -> str:
        """The QtTextToSpeech engine used; SpeechError when there is none."""
        return self._engine().engine()

    async def say(self, text: str, *, voice: str | None, rate: float) -> None:
        tts = self._engine()
        self.stop()
        if voice:
            tts.setVoice(self._find_voice(tts, voice))
        tts.setRate(speed_to_rate(rate))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending = done
        self._saw_speaking = False
        tts.say(text)
        try:
            await done
        except asyncio.CancelledError:
            tts.stop(QTextToSpeech.BoundaryHint.Immediate)
            raise
        finally:
            if self._pending is done:
                self._pending = None

    def stop(self) -> None:
        if self._tts is not None and self._tts.state() in (
            QTextToSpeech.State.Speaking,
            QTextToSpeech.State.Paused,
            QTextToSpeech.State.Synthesizing,
        ):
            self._tts.stop(QTextToSpeech.BoundaryHint.Immediate)
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.set_result(None)

    def voices(self) -> list[str]:
        tts = self._engine()
        everyone = _all_voices(tts)
        language = QLocale.system().language()
        own = [voice for voice in everyone if voice.locale().language() == language]
        names = {voice.name() for voice in (own or everyone)}
        return sorted(names, key=str.casefold)

    def close(self) -> None:
        """Stop and release the engine."""
        self.stop()
        if self._tts is not None:
            self._tts.deleteLater()
            self._tts = None

    # --- the engine ---------------------------------------------------------------------

    def _engine(self) -> QTextToSpeech:
        if self._tts is not None:
            return self._tts
        available = [name for name in QTextToSpeech.availableEngines() if name not in _NOT_VOICES]
        if not available:
            raise SpeechError(f"no system voices are available; {_install_hint()}")
        ordered = sorted(available, key=lambda n: _PREFERRED.index(n) if n in _PREFERRED else 99)
        tts = QTextToSpeech(ordered[0], self)
        if tts.state() == QTextToSpeech.State.Error:
            reason = tts.errorString() or tts.errorReason().name
            tts.deleteLater()
            raise SpeechError(
                f"the system voices ({ordered[0]}) could not start: {reason}; {_install_hint()}"
            )
        tts.stateChanged.connect(self._state_changed)
        self._tts = tts
        return tts

    def _find_voice(self, tts: QTextToSpeech, name: str) -> QVoice:
        for voice in tts.availableVoices():
            if voice.name() == name:
                return voice
        for voice in _all_voices(tts):
            if voice.name() == name:
                tts.setLocale(voice.locale())
                return voice
        raise SpeechError(
            f"the system has no voice named '{name}'; choose one in Settings > Voice (or set "
            "voice: null in the engine's tts entry for the default)"
        )

    def _state_changed(self, state: QTextToSpeech.State) -> None:
        pending = self._pending
        if state == QTextToSpeech.State.Speaking:
            self._saw_speaking = True
            self.speaking.emit()
        elif state == QTextToSpeech.State.Ready and pending is not None and not pending.done():
            pending.set_result(None)
        elif state == QTextToSpeech.State.Error and pending is not None and not pending.done():
            assert self._tts is not None
            reason = self._tts.errorString() or self._tts.errorReason().name
            pending.set_exception(SpeechError(f"the system voice failed: {reason}"))

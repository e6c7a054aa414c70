"""A fake of the window's ``Speaker`` (app/ui/voice.py) for the Qt tests: it speaks nothing.

``FakeSpeaker`` keeps to the interface's documented semantics: ``speak_text`` and
``begin_stream`` check the engine against the chat's tier with the real policy
(``app.speech.policy``) and raise PolicyRefusedError / ConfigError / UsageError at once,
before anything is recorded as sent; states arrive later, through ``state_changed``, as
the real speaker's do (preparing, then speaking; idle when stopped or done). ``finish``
and ``fail`` play the end of reading; ``voice_lists`` is what ``voices`` answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QTimer

from app.config import TTSEntry
from app.errors import HushchatError, UsageError
from app.session import Session
from app.speech.policy import default_engine, require_engine
from app.speech.text import prepare_for_speech
from app.tiers import Tier
from app.ui.voice import AnswerFeed, Speaker, SpeakerState

__all__ = ["ENGINES", "FakeFeed", "FakeSpeaker", "Spoken"]

#: The ``tts:`` part of the read-aloud tests' config: an on-prem Kokoro-FastAPI and a
#: paid cloud engine (with comments, which saving Settings, Voice must keep).
ENGINES = """\
# the voices
default_tts: kokoro
tts:
  # Kokoro-FastAPI on this computer
  - type: openai
    name: kokoro
    base_url: http://127.0.0.1:8880/v1
    model: kokoro
    voice: af_heart
  - type: openai
    name: cloud-voices
    base_url: https://speech.example.com/v1
    locality: paid_cloud
"""


@dataclass
class Spoken:
    """One ``speak_text`` or ``begin_stream`` that was accepted (what a server would get)."""

    key: str
    tier: Tier
    entry: TTSEntry
    text: str = ""
    feed: FakeFeed | None = None


@dataclass
class FakeFeed(AnswerFeed):
    """A streaming answer's deltas as the speaker received them."""

    speaker: FakeSpeaker
    key: str
    deltas: list[str] = field(default_factory=list)
    ended: bool = False
    cancelled: bool = False

    def add(self, delta: str) -> None:
        if self.ended or self.cancelled:
            raise AssertionError("a delta after end() or cancel()")
        self.deltas.append(delta)

    def end(self) -> None:
        self.ended = True

    def cancel(self) -> None:
        self.cancelled = True
        if self.speaker.speaking_key == self.key:
            self.speaker.stop()

    @property
    def text(self) -> str:
        return "".join(self.deltas)


class FakeSpeaker(Speaker):
    """Records what it was asked to say; says nothing."""

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(session, parent)
        self.spoken: list[Spoken] = []
        self.stops = 0
        self.closed = False
        self.voice_lists: dict[str, list[str] | HushchatError] = {}
        self.voices_asked: list[str] = []
        self._key: str | None = None

    # the interface ------------------------------------------------------------------------

    @property
    def speaking_key(self) -> str | None:
        return self._key

    def engine_for(self, tier: Tier) -> TTSEntry:
        return default_engine(self.session.config.config, tier)

    def speak_text(
        self, key: str, tier: Tier, markdown: str, entry: TTSEntry | None = None
    ) -> None:
        chosen = self._checked(tier, entry)
        if not prepare_for_speech(markdown).strip():
            raise UsageError("there is nothing to read aloud in this message")
        self.spoken.append(Spoken(key, tier, chosen, markdown))
        self._start(key)

    def begin_stream(self, key: str, tier: Tier, entry: TTSEntry | None = None) -> AnswerFeed:
        chosen = self._checked(tier, entry)
        feed = FakeFeed(self, key)
        self.spoken.append(Spoken(key, tier, chosen, feed=feed))
        self._start(key)
        return feed

    def stop(self) -> None:
        self.stops += 1
        key, self._key = self._key, None
        if key is not None:
            self.state_changed.emit(key, SpeakerState.IDLE.value)

    async def voices(self, entry: TTSEntry) -> list[str]:
        self.voices_asked.append(entry.name)
        await asyncio.sleep(0.05)  # answered later, as a server would
        found = self.voice_lists.get(entry.name, [])
        if isinstance(found, HushchatError):
            raise found
        return list(found)

    def close(self) -> None:
        self.stop()
        self.closed = True

    # playing the rest ---------------------------------------------------------------------

    def finish(self) -> None:
        """The answer being read has been read to its end."""
        key, self._key = self._key, None
        if key is not None:
            self.state_changed.emit(key, SpeakerState.IDLE.value)

    def fail(self, message: str) -> None:
        """Reading failed after it started (a server gone, no audio output)."""
        key, self._key = self._key, None
        if key is not None:
            self.state_changed.emit(key, SpeakerState.IDLE.value)
            self.failed.emit(key, message)

    # inside -------------------------------------------------------------------------------

    def _checked(self, tier: Tier, entry: TTSEntry | None) -> TTSEntry:
        if self.closed:
            raise AssertionError("the speaker was used after close()")
        chosen = entry or self.engine_for(tier)
        require_engine(tier, chosen)
        return chosen

    def _start(self, key: str) -> None:
        if self._key is not None:
            self.stop()  # one answer at a time
        self._key = key

        def state(value: SpeakerState) -> None:
            if self._key == key:
                self.state_changed.emit(key, value.value)

        # Later, as the real speaker reports them (after the request, with the audio).
        QTimer.singleShot(0, self, lambda: state(SpeakerState.PREPARING))
        QTimer.singleShot(20, self, lambda: state(SpeakerState.SPEAKING))

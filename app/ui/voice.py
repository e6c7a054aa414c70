"""Reading answers aloud in the window: one ``Speaker`` per window (INTERFACE, being built).

The speaker turns an answer (finished, or still streaming) into speech with the chat's
engine: the ``system`` voices through QtTextToSpeech, or an ``openai``/``xtts`` speech
server whose WAV/PCM audio is played with QtMultimedia's ``QAudioSink`` (no FFmpeg, no
temporary audio file). One answer is spoken at a time; speaking another stops the first.

The tier policy is checked before anything is sent (``app.speech.require_engine``): a
refused engine raises ``PolicyRefusedError`` from ``speak_text``/``begin_stream`` at once,
so the caller can show the same inline refusal as for models. A failure later (server
down, not audio, no audio output) is reported through ``failed`` with a message for the
user, and logged with its traceback when unexpected.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from app.config import TTSEntry
    from app.session import Session
    from app.tiers import Tier

__all__ = ["AnswerFeed", "Speaker", "SpeakerState"]


class SpeakerState(enum.Enum):
    """What the speaker is doing for its current answer."""

    IDLE = "idle"  # nothing to say (finished, stopped or failed)
    PREPARING = "preparing"  # waiting for the first audio (server request, engine start)
    SPEAKING = "speaking"  # audio is playing


class AnswerFeed:
    """A streaming answer's text, handed to the speaker delta by delta.

    ``add(delta)`` as each delta arrives; ``end()`` when the answer is complete (the
    rest is spoken); ``cancel()`` when it was stopped or failed (nothing more is said).
    """

    def add(self, delta: str) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


class Speaker(QObject):
    """Reads answers aloud for one window; one answer at a time.

    ``key`` names what is spoken (the message id); the window uses it to show the
    speaker button of that answer as "Stop".
    """

    #: (key, SpeakerState value) whenever the state of the answer ``key`` changes.
    state_changed = Signal(str, str)
    #: (key, message for the user) when speaking failed after it started.
    failed = Signal(str, str)

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session

    @property
    def speaking_key(self) -> str | None:
        """The key of the answer being spoken (or prepared), None when idle."""
        raise NotImplementedError

    def engine_for(self, tier: Tier) -> TTSEntry:
        """The engine a chat of ``tier`` reads with (``default_tts`` if allowed, else the
        first allowed); ConfigError when none is configured, PolicyRefusedError when the
        tier allows none."""
        raise NotImplementedError

    def speak_text(self, key: str, tier: Tier, markdown: str, entry: TTSEntry | None = None) -> None:
        """Read a finished answer's Markdown aloud (``entry``: None for ``engine_for``).
        Raises PolicyRefusedError / ConfigError / UsageError (nothing to read) at once."""
        raise NotImplementedError

    def begin_stream(self, key: str, tier: Tier, entry: TTSEntry | None = None) -> AnswerFeed:
        """Start reading an answer that is still streaming: each sentence is spoken as
        soon as it is complete. Raises as ``speak_text`` does."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop speaking now (playback and any request in flight); state goes IDLE."""
        raise NotImplementedError

    async def voices(self, entry: TTSEntry) -> list[str]:
        """The voices ``entry``'s engine offers, for Settings › Voice."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop and release the audio output and engines (window closing, locking)."""
        raise NotImplementedError

"""Reading answers aloud in the window: one ``Speaker`` per window.

The speaker turns an answer (finished, or still streaming) into speech with the chat's
engine: the ``system`` voices through QtTextToSpeech, or an ``openai``/``xtts`` speech
server whose WAV/PCM audio is played with QtMultimedia's ``QAudioSink`` (no FFmpeg, no
temporary audio file). One answer is spoken at a time; speaking another stops the first.

The tier policy is checked before anything is sent (``app.speech.require_engine``): a
refused engine raises ``PolicyRefusedError`` from ``speak_text``/``begin_stream`` at once,
so the caller can show the same inline refusal as for models. A failure later (server
down, not audio, no audio output) is reported through ``failed`` with a message for the
user, and logged with its traceback when unexpected.

How an answer is spoken: its Markdown goes through ``app.speech.reader.spoken_sentences``
(a finished answer as one delta, a streaming one delta by delta through an
``AnswerFeed``), and each sentence, as soon as it is complete, is

* for ``system`` entries: said with ``QtSystemVoices`` (``voice.system``), one after
  the other;
* for ``openai``/``xtts`` entries: requested as WAV (whatever the entry's ``format``,
  which stays what ``hushchat speak`` writes), decoded while it streams in
  (``app.speech.pcm``) and appended to the ``PcmPlayer`` (``voice.player``), which starts
  playing with the first samples. The next sentence is requested while this one plays,
  but no further ahead: sentence n+2 is requested once sentence n has been handed to
  the audio output, so speech has no gaps, and Stop wastes at most two requests.

Engines are opened once per entry (``open_engine``, the API key from
``session.api_keys``) and closed by ``close``; the tier is checked for every answer
before its first request. QtMultimedia and QtTextToSpeech are imported when first
needed, so a desktop without libpulse or speech-dispatcher still opens the window.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.errors import HushchatError, UsageError
from app.speech.engines import HTTPSpeechEngine, open_engine
from app.speech.pcm import WavDecoder
from app.speech.policy import default_engine, require_engine
from app.speech.reader import spoken_sentences
from app.speech.text import prepare_for_speech
from app.tiers import Tier
from app.ui import tasks

if TYPE_CHECKING:
    from app.config import TTSEntry
    from app.session import Session
    from app.ui.voice.player import PcmPlayer
    from app.ui.voice.system import QtSystemVoices

__all__ = ["AnswerFeed", "Speaker", "SpeakerState"]

log = logging.getLogger(__name__)


class SpeakerState(enum.Enum):
    """What the speaker is doing for its current answer."""

    IDLE = "idle"  # nothing to say (finished, stopped or failed)
    PREPARING = "preparing"  # waiting for the first audio (server request, engine start)
    SPEAKING = "speaking"  # audio is playing


class AnswerFeed:
    """A streaming answer's text, handed to the speaker delta by delta.

    ``add(delta)`` as each delta arrives; ``end()`` when the answer is complete (the
    rest is spoken); ``cancel()`` when it was stopped or failed (nothing more is said).
    Made by ``Speaker.begin_stream``; once the speaker moved on (Stop, another answer),
    its calls do nothing.
    """

    def __init__(self, speaker: Speaker | None = None) -> None:
        self._speaker = speaker
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._closed = False

    def add(self, delta: str) -> None:
        if not self._closed and delta:
            self._queue.put_nowait(delta)

    def end(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def cancel(self) -> None:
        self._closed = True
        self._queue.put_nowait(None)
        if self._speaker is not None:
            self._speaker._feed_cancelled(self)

    async def deltas(self) -> AsyncIterator[str]:
        """The deltas as they are added, until ``end`` or ``cancel``."""
        while (delta := await self._queue.get()) is not None:
            yield delta


class _Job:
    """One answer being spoken."""

    def __init__(self, key: str, tier: Tier, entry: TTSEntry, feed: AnswerFeed) -> None:
        self.key = key
        self.tier = tier
        self.entry = entry
        self.feed = feed
        self.state = SpeakerState.IDLE
        self.task: asyncio.Task[None] | None = None


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
        self._job: _Job | None = None
        self._engines: dict[str, HTTPSpeechEngine] = {}
        self._player: PcmPlayer | None = None
        self._system: QtSystemVoices | None = None
        self._closed = False

    @property
    def speaking_key(self) -> str | None:
        """The key of the answer being spoken (or prepared), None when idle."""
        return self._job.key if self._job is not None else None

    def engine_for(self, tier: Tier) -> TTSEntry:
        """The engine a chat of ``tier`` reads with (``default_tts`` if allowed, else the
        first allowed); ConfigError when none is configured, PolicyRefusedError when the
        tier allows none."""
        return default_engine(self.session.config.config, tier)

    def speak_text(
        self, key: str, tier: Tier, markdown: str, entry: TTSEntry | None = None
    ) -> None:
        """Read a finished answer's Markdown aloud (``entry``: None for ``engine_for``).
        Raises PolicyRefusedError / ConfigError / UsageError (nothing to read) at once."""
        entry = self._allowed(tier, entry)
        if not prepare_for_speech(markdown).strip():
            raise UsageError("this answer has nothing to read aloud")
        feed = self._start(key, tier, entry)
        feed.add(markdown)
        feed.end()

    def begin_stream(self, key: str, tier: Tier, entry: TTSEntry | None = None) -> AnswerFeed:
        """Start reading an answer that is still streaming: each sentence is spoken as
        soon as it is complete. Raises as ``speak_text`` does."""
        return self._start(key, tier, self._allowed(tier, entry))

    def stop(self) -> None:
        """Stop speaking now (playback and any request in flight); state goes IDLE."""
        job, self._job = self._job, None
        if job is None:
            return
        if job.task is not None and not job.task.done():
            job.task.cancel()
        if self._player is not None:
            self._player.stop()
        if self._system is not None:
            self._system.stop()
        self._set_state(job, SpeakerState.IDLE)

    async def voices(self, entry: TTSEntry) -> list[str]:
        """The voices ``entry``'s engine offers, for Settings > Voice (system: the
        system locale's language's voices, see ``voice.system``). Listing voices sends
        no answer text, so any tier may ask."""
        if entry.type == "system":
            return self._system_voices().voices()
        engine = await self._engine(entry, Tier.STANDARD)
        return await engine.voices()

    def close(self) -> None:
        """Stop and release the audio output and engines (window closing, locking)."""
        self.stop()
        self._closed = True
        if self._player is not None:
            self._player.deleteLater()
            self._player = None
        if self._system is not None:
            self._system.close()
            self._system.deleteLater()
            self._system = None
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            tasks.start(engine.aclose())

    # --- starting ---------------------------------------------------------------------

    def _allowed(self, tier: Tier, entry: TTSEntry | None) -> TTSEntry:
        if self._closed:
            raise UsageError("read aloud is closed (the window is closing or locked)")
        if entry is None:
            return self.engine_for(tier)
        require_engine(tier, entry)
        return entry

    def _start(self, key: str, tier: Tier, entry: TTSEntry) -> AnswerFeed:
        self.stop()
        feed = AnswerFeed(self)
        job = _Job(key, tier, entry, feed)
        self._job = job
        self._set_state(job, SpeakerState.PREPARING)
        job.task = tasks.start(
            self._run(job),
            on_done=lambda _: self._finished(job),
            on_error=lambda error: self._failed(job, error),
            on_cancel=lambda: self._finished(job),
        )
        return feed

    def _feed_cancelled(self, feed: AnswerFeed) -> None:
        if self._job is not None and self._job.feed is feed:
            self.stop()

    # --- speaking ---------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        if job.entry.type == "system":
            await self._say(job)
        else:
            await self._play(job)

    async def _say(self, job: _Job) -> None:
        voices = self._system_voices()
        async for sentence in spoken_sentences(job.feed.deltas()):
            await voices.say(sentence, voice=job.entry.voice, rate=job.entry.speed)

    async def _play(self, job: _Job) -> None:
        engine = await self._engine(job.entry, job.tier)
        player = self._pcm_player()
        player.reset()
        label = f"speech engine {job.entry.name} ({job.entry.type})"
        count = 0
        async for sentence in spoken_sentences(job.feed.deltas()):
            await player.wait_written(count - 1)  # no further than one sentence ahead
            decoder = WavDecoder(label)
            player.begin_segment()

            async def sink(chunk: bytes, decoder: WavDecoder = decoder) -> None:
                for pcm_format, pcm in decoder.feed(chunk):
                    player.append(pcm_format, pcm)

            await engine.synthesize(sentence, sink, audio_format="wav")
            decoder.finish()
            player.end_segment()
            count += 1
        player.finish()
        await player.wait_drained()

    async def _engine(self, entry: TTSEntry, tier: Tier) -> HTTPSpeechEngine:
        engine = self._engines.get(entry.name)
        if engine is not None and engine.entry == entry:
            require_engine(tier, entry)
            return engine
        key = await self.session.api_keys.resolve(entry)
        if engine is not None:  # the entry changed (Settings): a new engine
            tasks.start(engine.aclose())
        engine = open_engine(entry, tier=tier, api_key=key)
        self._engines[entry.name] = engine
        return engine

    def _pcm_player(self) -> PcmPlayer:
        if self._player is None:
            from app.ui.voice.player import PcmPlayer

            self._player = PcmPlayer(self)
            self._player.started.connect(self._audio_started)
        return self._player

    def _system_voices(self) -> QtSystemVoices:
        if self._system is None:
            from app.ui.voice.system import QtSystemVoices

            self._system = QtSystemVoices(self)
            self._system.speaking.connect(self._audio_started)
        return self._system

    # --- states -------------------------------------------------------------------------

    def _audio_started(self) -> None:
        if self._job is not None:
            self._set_state(self._job, SpeakerState.SPEAKING)

    def _set_state(self, job: _Job, state: SpeakerState) -> None:
        if job.state is not state:
            job.state = state
            self.state_changed.emit(job.key, state.value)

    def _finished(self, job: _Job) -> None:
        if self._job is job:
            self._job = None
        self._set_state(job, SpeakerState.IDLE)

    def _failed(self, job: _Job, error: BaseException) -> None:
        """``tasks.start`` logged an unexpected error with its traceback and made it an
        InternalError with a generic message; a SpeechError's message is the server's."""
        if self._job is job:
            self.stop()
        self._set_state(job, SpeakerState.IDLE)
        message = (
            str(error)
            if isinstance(error, HushchatError)
            else "reading aloud failed; the details are in Hushchat's log"
        )
        self.failed.emit(job.key, message)

"""PCM samples played as they arrive, through QtMultimedia's ``QAudioSink`` (push mode).

The speaker appends each sentence's samples (``begin_segment``, ``append``,
``end_segment``) while they stream in from the speech server; playing starts with the
first samples. A timer moves queued samples into the sink as it has room, so the queue
is in memory only (no temporary file). A new sink is made when the samples' format
changes (another engine, another rate). ``stop`` drops everything queued. ``wait_*``
let the speaker fetch the next sentence while this one plays, without running ahead.

Imports QtMultimedia: load this module only when something is to be played (a desktop
without libpulse still starts; read aloud then says what is missing).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from PySide6.QtCore import QIODevice, QObject, QTimer, Signal
from PySide6.QtMultimedia import QAudioFormat, QAudioSink, QMediaDevices, QtAudio

from app.speech.errors import SpeechError
from app.speech.pcm import PCMFormat, SampleFormat

__all__ = ["NO_OUTPUT_MESSAGE", "PcmPlayer"]

log = logging.getLogger(__name__)

#: How often queued samples are moved into the sink (ms); the sink buffers far more.
_TICK_MS: Final = 15
_SAMPLE_FORMATS: Final = {
    SampleFormat.UINT8: QAudioFormat.SampleFormat.UInt8,
    SampleFormat.INT16: QAudioFormat.SampleFormat.Int16,
    SampleFormat.INT32: QAudioFormat.SampleFormat.Int32,
    SampleFormat.FLOAT32: QAudioFormat.SampleFormat.Float,
}
NO_OUTPUT_MESSAGE: Final = (
    "there is no audio output to play speech on; connect speakers or headphones, or check "
    "the system's sound settings (is PulseAudio or PipeWire running?)"
)


@dataclass
class _Segment:
    """One sentence's samples: queued bytes, and whether all of them have arrived."""

    pcm_format: PCMFormat | None = None
    data: deque[bytes] = field(default_factory=deque)
    ended: bool = False


class PcmPlayer(QObject):
    """Plays appended PCM segments in order, on the default audio output."""

    #: the first samples of the current run began to play
    started = Signal()
    #: every segment appended before ``finish`` has been played
    drained = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._segments: deque[_Segment] = deque()
        self._sink: QAudioSink | None = None
        self._device: QIODevice | None = None
        self._sink_format: PCMFormat | None = None
        self._segments_written = 0  # segments wholly handed to a sink since ``reset``
        self._played_usecs = 0  # by the sinks closed since ``reset``
        self._finishing = False
        self._done = False  # everything before ``finish`` was played
        self._started = False
        self._error: SpeechError | None = None
        self._waiters: list[tuple[int | None, asyncio.Future[None]]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(_TICK_MS)
        self._timer.timeout.connect(self._tick)

    # --- what the speaker calls -----------------------------------------------------

    def reset(self) -> None:
        """Start a new answer: stop and drop what is queued, count from zero."""
        self.stop()
        self._segments_written = 0
        self._played_usecs = 0
        self._finishing = False
        self._done = False
        self._started = False
        self._error = None

    def begin_segment(self) -> None:
        """Samples appended from now on belong to the next sentence."""
        if self._segments and not self._segments[-1].ended:
            self._segments[-1].ended = True
        self._segments.append(_Segment())

    def append(self, pcm_format: PCMFormat, data: bytes) -> None:
        """Queue ``data`` (whole frames of ``pcm_format``) in the current segment; playing
        starts now if it had not. SpeechError when there is no audio output at all."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        if not self._segments or self._segments[-1].ended:
            self._segments.append(_Segment())
        segment = self._segments[-1]
        if segment.pcm_format is not None and segment.pcm_format != pcm_format:
            segment.ended = True  # another format in one sentence: a segment of its own
            segment = _Segment()
            self._segments.append(segment)
        segment.pcm_format = pcm_format
        segment.data.append(data)
        self._done = False
        if not self._timer.isActive():
            self._require_output()
            self._timer.start()
        self._tick()

    def end_segment(self) -> None:
        """All of the current sentence's samples have been appended."""
        if self._segments:
            self._segments[-1].ended = True
        self._tick()

    def finish(self) -> None:
        """Nothing more comes: ``drained`` when the queue has been played."""
        self.end_segment()
        self._finishing = True
        if not self._timer.isActive():
            self._timer.start()
        self._tick()

    def stop(self) -> None:
        """Stop playing now and drop every queued sample; pending waits end."""
        self._timer.stop()
        self._segments.clear()
        self._close_sink()
        self._finishing = False
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()

    @property
    def segments_written(self) -> int:
        """How many segments have been wholly handed to the sink (so are playing or
        played): the speaker fetches sentence n+2 once sentence n is written."""
        return self._segments_written

    @property
    def played_seconds(self) -> float:
        """Seconds of audio the output has played since ``reset``."""
        current = self._sink.processedUSecs() if self._sink is not None else 0
        return (self._played_usecs + current) / 1e6

    async def wait_written(self, count: int) -> None:
        """Return once ``count`` segments have been handed to the sink."""
        await self._wait(count)

    async def wait_drained(self) -> None:
        """Return once everything before ``finish`` has been played; SpeechError if the
        audio output failed."""
        await self._wait(None)

    # --- the sink ---------------------------------------------------------------------

    def _require_output(self) -> None:
        if QMediaDevices.defaultAudioOutput().isNull():
            self._fail(SpeechError(NO_OUTPUT_MESSAGE))
            raise SpeechError(NO_OUTPUT_MESSAGE)

    def _open_sink(self, pcm_format: PCMFormat) -> None:
        self._close_sink()
        qt_format = QAudioFormat()
        qt_format.setSampleRate(pcm_format.sample_rate)
        qt_format.setChannelCount(pcm_format.channels)
        qt_format.setSampleFormat(_SAMPLE_FORMATS[pcm_format.sample_format])
        output = QMediaDevices.defaultAudioOutput()
        if output.isNull():
            raise SpeechError(NO_OUTPUT_MESSAGE)
        if not output.isFormatSupported(qt_format):
            raise SpeechError(
                f"the audio output '{output.description()}' cannot play "
                f"{pcm_format.sample_rate} Hz {pcm_format.sample_format.value} audio with "
                f"{pcm_format.channels} channel(s); choose another output in the system's "
                "sound settings, or another format on the speech server"
            )
        sink = QAudioSink(output, qt_format, self)
        device = sink.start()
        if device is None or sink.error() != QtAudio.Error.NoError:
            sink.deleteLater()
            raise SpeechError(
                f"the audio output '{output.description()}' could not be opened; check the "
                "system's sound settings"
            )
        self._sink, self._device, self._sink_format = sink, device, pcm_format

    def _close_sink(self) -> None:
        if self._sink is None:
            return
        self._played_usecs += self._sink.processedUSecs()
        self._sink.stop()
        self._sink.deleteLater()
        self._sink = self._device = self._sink_format = None

    def _check_sink(self) -> None:
        """The sink's state, polled (PySide 6.11 cannot pass ``QAudioSink.stateChanged``'s
        QAudio::State to Python): the first playing, and a failed output."""
        sink = self._sink
        if sink is None:
            return
        if sink.state() == QtAudio.State.ActiveState and not self._started:
            self._started = True
            self.started.emit()
        if sink.error() in (QtAudio.Error.OpenError, QtAudio.Error.FatalError):
            raise SpeechError(
                f"the audio output failed while playing ({sink.error().name}); check the "
                "system's sound settings"
            )

    def _tick(self) -> None:
        try:
            self._feed()
            self._check_sink()
        except SpeechError as error:
            self._fail(error)
            return
        self._resolve_waiters()

    def _feed(self) -> None:
        """Move queued samples into the sink while it has room."""
        while self._segments:
            segment = self._segments[0]
            if segment.pcm_format is not None and segment.data:
                if self._sink is None or segment.pcm_format != self._sink_format:
                    if self._sink is not None and not self._sink_idle():
                        return  # the previous format is still playing
                    self._open_sink(segment.pcm_format)
                if not self._write(segment):
                    return  # the sink is full
            if segment.data or not segment.ended:
                return  # more of this sentence is due
            self._segments.popleft()
            self._segments_written += 1

    def _write(self, segment: _Segment) -> bool:
        """Write as much of ``segment`` as the sink takes; False when it is full."""
        assert self._sink is not None and self._device is not None
        while segment.data:
            free = self._sink.bytesFree()
            frame = segment.pcm_format.frame_size if segment.pcm_format else 1
            free -= free % frame
            if free <= 0:
                return False
            data = segment.data[0]
            written = self._device.write(data[:free])
            if written <= 0:
                return False
            written -= written % frame  # QAudioSink takes whole frames
            if written < len(data):
                segment.data[0] = data[written:]
            else:
                segment.data.popleft()
        return True

    def _sink_idle(self) -> bool:
        return self._sink is None or self._sink.state() in (
            QtAudio.State.IdleState,
            QtAudio.State.StoppedState,
        )

    def _fail(self, error: SpeechError) -> None:
        log.warning("audio output: %s", error)
        self._error = error
        waiters, self._waiters = self._waiters, []
        self._timer.stop()
        self._segments.clear()
        self._close_sink()
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def _resolve_waiters(self) -> None:
        if self._finishing and not self._segments and self._sink_idle():
            self._finishing = False
            self._done = True
            self._timer.stop()
            self.drained.emit()
        remaining = []
        for count, waiter in self._waiters:
            if waiter.done():
                continue
            if (count is None and self._done) or (
                count is not None and self._segments_written >= count
            ):
                waiter.set_result(None)
            else:
                remaining.append((count, waiter))
        self._waiters = remaining

    async def _wait(self, count: int | None) -> None:
        if self._error is not None:
            raise self._error
        if count is None and self._done:
            return
        if count is not None and self._segments_written >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

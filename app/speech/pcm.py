"""Speech audio as PCM samples, decoded while it streams in: what the window plays.

The window plays speech through QtMultimedia's ``QAudioSink``, which takes PCM samples
only (the bundle leaves out QtMultimedia's FFmpeg backend, 23 MB, so nothing decodes MP3,
Opus, AAC or FLAC). The HTTP engines are therefore asked for WAV, and this module turns
the bytes of the answer, in whatever chunks they arrive, into PCM:

* ``WavDecoder``: a RIFF/WAVE stream. It finds the ``fmt `` and ``data`` chunks, skipping
  any others (``LIST``, ``fact``, ...) before, between or after them, and accepts the
  headers of a streamed WAV, whose RIFF and data sizes are 0 or 0xFFFFFFFF (the length
  was unknown when the header was sent): the data then runs to the end of the answer.
  Samples: integer PCM of 8, 16 or 32 bits and 32-bit float (WAVE_FORMAT_PCM,
  WAVE_FORMAT_IEEE_FLOAT, or either in WAVE_FORMAT_EXTENSIBLE), what ``QAudioSink``
  plays; anything else (24-bit, A-law, ADPCM) is a SpeechError saying so.
* ``RawPCMDecoder``: headerless PCM of a known format, e.g. the OpenAI speech API's
  ``response_format: pcm``, 24 kHz mono signed 16-bit little-endian (``OPENAI_PCM``).

Both hand out whole frames only (a chunk boundary inside a sample is carried over),
and say what a non-WAV answer is (MP3, Ogg, FLAC, AAC, a web page) in their error.
No Qt here; app/ui/voice.py plays the samples.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final, Protocol

from app.speech.errors import NotAudioError, SpeechError

__all__ = [
    "OPENAI_PCM",
    "PCMDecoder",
    "PCMFormat",
    "RawPCMDecoder",
    "SampleFormat",
    "WavDecoder",
    "sniff_audio",
]


class SampleFormat(enum.Enum):
    """How one sample is stored (little-endian), as ``QAudioFormat.SampleFormat`` has them."""

    UINT8 = "u8"
    INT16 = "s16"
    INT32 = "s32"
    FLOAT32 = "f32"

    @property
    def size(self) -> int:
        """Bytes per sample."""
        return 1 if self is SampleFormat.UINT8 else 2 if self is SampleFormat.INT16 else 4


@dataclass(frozen=True, slots=True)
class PCMFormat:
    """The samples' format: rate (frames per second), channels, sample type."""

    sample_rate: int
    channels: int
    sample_format: SampleFormat

    @property
    def frame_size(self) -> int:
        """Bytes per frame (one sample of each channel)."""
        return self.channels * self.sample_format.size

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.frame_size

    def duration(self, size: int) -> float:
        """Seconds that ``size`` bytes of these samples last."""
        return size / self.bytes_per_second


#: The OpenAI speech API's ``pcm``: 24 kHz, mono, signed 16-bit little-endian.
OPENAI_PCM: Final = PCMFormat(24000, 1, SampleFormat.INT16)

#: Streamed WAV headers give sizes they did not know as 0 or 0xFFFFFFFF.
_UNKNOWN_SIZES: Final = frozenset({0, 0xFFFFFFFF})
#: The largest ``fmt `` chunk read (WAVE_FORMAT_EXTENSIBLE's is 40 bytes).
_MAX_FMT_SIZE: Final = 1024
_WAVE_FORMAT_PCM: Final = 0x0001
_WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
#: The rates and channel counts taken as a real WAV's (else the header is garbage).
_RATES: Final = range(1000, 384001)
_CHANNELS: Final = range(1, 9)


class PCMDecoder(Protocol):
    """Bytes in, in any chunks; (format, PCM of whole frames) out as soon as they can be."""

    def feed(self, chunk: bytes) -> list[tuple[PCMFormat, bytes]]:
        """The PCM the bytes so far complete (often one item, or none)."""
        ...

    def finish(self) -> None:
        """The answer ended: SpeechError if it was no complete audio."""
        ...


def sniff_audio(head: bytes) -> str | None:
    """What a non-WAV answer starting with ``head`` is, for an error message, or None."""
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        if len(head) >= 2 and head[1] & 0xF6 == 0xF0:  # ADTS: MPEG-4/2 AAC, layer bits 00
            return "AAC"
        return "MP3"
    if head.startswith(b"OggS"):
        return "Ogg (Opus or Vorbis)"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON, not audio"
    if head.lstrip()[:1] == b"<":
        return "a web page, not audio"
    return None


class WavDecoder:
    """A RIFF/WAVE stream decoded incrementally (see the module's docstring).

    ``source`` names the engine in error messages ("speech engine kokoro (openai)").
    """

    def __init__(self, source: str = "the speech server") -> None:
        self.source = source
        self.format: PCMFormat | None = None
        self._buffer = bytearray()
        self._riff_read = False
        self._skip = 0  # bytes of a chunk being skipped (with its pad byte); -1: all
        self._data_left: int | None = None  # bytes of the data chunk still due; -1: to the end
        self._data_pad = 0
        self._pending_fmt: int | None = None  # size of the 'fmt ' chunk being read
        self._seen_data = False
        self._bytes_in = 0

    def feed(self, chunk: bytes) -> list[tuple[PCMFormat, bytes]]:
        self._bytes_in += len(chunk)
        self._buffer += chunk
        out: list[tuple[PCMFormat, bytes]] = []
        while True:
            if self._skip < 0:  # the rest is ignored
                self._buffer.clear()
                return out
            if self._skip:
                dropped = min(self._skip, len(self._buffer))
                del self._buffer[:dropped]
                self._skip -= dropped
                if self._skip:
                    return out
            if self._data_left is not None:
                if self._take_data(out):
                    return out  # more of the data chunk is due
                continue
            if not self._riff_read:
                if len(self._buffer) < 12:
                    self._check_start()
                    return out
                self._read_riff()
                continue
            if self._pending_fmt is not None:
                size = self._pending_fmt
                if len(self._buffer) < size + (size & 1):
                    return out
                self._read_fmt(size)
                continue
            if len(self._buffer) < 8:
                return out
            self._read_chunk_header()

    def finish(self) -> None:
        if self._bytes_in == 0:
            raise NotAudioError(f"{self.source} answered without any audio; try again")
        if not self._riff_read:
            self._check_start()
            raise SpeechError(
                f"{self.source} answered {self._bytes_in} bytes, too few for WAV audio"
            )
        if not self._seen_data:
            raise SpeechError(
                f"{self.source} answered WAV without any audio data (no 'data' chunk); "
                "check the server's log"
            )
        if self._data_left not in (None, -1, 0):
            raise SpeechError(f"{self.source}: its WAV audio broke off before the end; try again")

    def _check_start(self) -> None:
        head = bytes(self._buffer[:12])
        if len(head) >= 4 and head[:4] != b"RIFF":
            what = sniff_audio(head)
            raise NotAudioError(
                f"{self.source} answered {what or 'audio that is not WAV'}; the window plays "
                "WAV — check that the server supports response_format wav"
            )

    def _read_riff(self) -> None:
        self._check_start()
        if self._buffer[8:12] != b"WAVE":
            raise NotAudioError(
                f"{self.source} answered a RIFF file that is not WAVE audio; the window plays "
                "WAV — check that the server supports response_format wav"
            )
        del self._buffer[:12]
        self._riff_read = True

    def _read_chunk_header(self) -> None:
        chunk_id = bytes(self._buffer[:4])
        (size,) = struct.unpack_from("<I", self._buffer, 4)
        del self._buffer[:8]
        if chunk_id == b"fmt ":
            if self.format is not None:
                raise SpeechError(f"{self.source} answered WAV with two 'fmt ' chunks")
            if not 16 <= size <= _MAX_FMT_SIZE:
                raise SpeechError(
                    f"{self.source} answered WAV with a broken header ('fmt ' of {size} bytes)"
                )
            self._pending_fmt = size
        elif chunk_id == b"data":
            if self.format is None:
                raise SpeechError(
                    f"{self.source} answered WAV whose audio data comes before its format "
                    "('data' before 'fmt '); the window cannot play it"
                )
            self._seen_data = True
            self._data_left = -1 if size in _UNKNOWN_SIZES else size
            self._data_pad = size & 1 if size not in _UNKNOWN_SIZES else 0
        elif not all(0x20 <= byte < 0x7F for byte in chunk_id):
            if self._seen_data:  # trailing bytes after the audio: nothing more to play
                self._skip = -1
                return
            raise SpeechError(f"{self.source} answered WAV with a broken chunk header")
        else:  # LIST, fact, cue, ...: not needed to play
            self._skip = size + (size & 1)

    def _read_fmt(self, size: int) -> None:
        self._pending_fmt = None
        fields = bytes(self._buffer[:size])
        del self._buffer[: size + (size & 1)]
        tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fields)
        if tag == _WAVE_FORMAT_EXTENSIBLE:
            if size < 40:
                raise SpeechError(f"{self.source} answered WAV with a broken extensible header")
            (tag,) = struct.unpack_from("<H", fields, 24)  # the sub-format GUID's first field
        sample = _sample_format(tag, bits)
        if sample is None:
            kind = {_WAVE_FORMAT_PCM: "PCM", _WAVE_FORMAT_IEEE_FLOAT: "float"}.get(tag)
            what = f"{bits}-bit {kind}" if kind else f"format 0x{tag:04x}"
            raise SpeechError(
                f"{self.source} answered WAV of {what} samples; the window plays 8-, 16- or "
                "32-bit PCM or 32-bit float — set the server to 16-bit PCM"
            )
        if channels not in _CHANNELS or rate not in _RATES:
            raise SpeechError(
                f"{self.source} answered WAV with a broken header ({channels} channels at "
                f"{rate} Hz)"
            )
        pcm = PCMFormat(rate, channels, sample)
        if block_align not in (0, pcm.frame_size):
            raise SpeechError(
                f"{self.source} answered WAV with a broken header (frames of {block_align} "
                f"bytes, expected {pcm.frame_size})"
            )
        self.format = pcm

    def _take_data(self, out: list[tuple[PCMFormat, bytes]]) -> bool:
        """Hand out the data chunk's whole frames; True while more of it is due."""
        assert self.format is not None and self._data_left is not None
        frame = self.format.frame_size
        available = (
            len(self._buffer) if self._data_left < 0 else min(self._data_left, len(self._buffer))
        )
        whole = available - available % frame
        if self._data_left >= 0 and available == self._data_left:
            whole = available  # the chunk's end: a torn last frame is dropped below
        if whole:
            data = bytes(self._buffer[:whole])
            del self._buffer[:whole]
            if self._data_left >= 0:
                self._data_left -= whole
            usable = len(data) - len(data) % frame
            if usable:
                out.append((self.format, data[:usable]))
        if self._data_left == 0:
            self._data_left = None
            self._skip = self._data_pad
            return False
        return True


def _sample_format(tag: int, bits: int) -> SampleFormat | None:
    if tag == _WAVE_FORMAT_PCM:
        return {8: SampleFormat.UINT8, 16: SampleFormat.INT16, 32: SampleFormat.INT32}.get(bits)
    if tag == _WAVE_FORMAT_IEEE_FLOAT and bits == 32:
        return SampleFormat.FLOAT32
    return None


class RawPCMDecoder:
    """Headerless PCM of ``pcm_format`` (OpenAI's ``pcm``: ``OPENAI_PCM``)."""

    def __init__(self, pcm_format: PCMFormat = OPENAI_PCM, source: str = "the speech server"):
        self.format = pcm_format
        self.source = source
        self._rest = b""
        self._bytes_in = 0

    def feed(self, chunk: bytes) -> list[tuple[PCMFormat, bytes]]:
        if self._bytes_in == 0 and chunk:
            what = "WAV" if chunk.startswith(b"RIFF") else sniff_audio(chunk[:12])
            if what:
                raise NotAudioError(
                    f"{self.source} answered {what} where raw PCM was asked for; check "
                    "that the server supports response_format pcm"
                )
        self._bytes_in += len(chunk)
        data = self._rest + chunk
        usable = len(data) - len(data) % self.format.frame_size
        self._rest = data[usable:]
        return [(self.format, data[:usable])] if usable else []

    def finish(self) -> None:
        if self._bytes_in == 0:
            raise NotAudioError(f"{self.source} answered without any audio; try again")

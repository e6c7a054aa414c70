"""Streaming WAV/PCM decoding (app/speech/pcm.py): examples, and properties (hypothesis)
for any way the answer's bytes are cut into chunks and for malformed headers."""

from __future__ import annotations

import contextlib
import io
import struct
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.speech.errors import NotAudioError, SpeechError
from app.speech.pcm import (
    OPENAI_PCM,
    PCMFormat,
    RawPCMDecoder,
    SampleFormat,
    WavDecoder,
    sniff_audio,
)


def wav_bytes(frames: bytes, *, rate: int = 24000, channels: int = 1, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(width)
        file.setframerate(rate)
        file.writeframes(frames)
    return buffer.getvalue()


def chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def fmt_body(tag: int = 1, channels: int = 1, rate: int = 22050, bits: int = 16) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def decode(data: bytes, cuts: list[int] | None = None) -> tuple[PCMFormat | None, bytes]:
    decoder = WavDecoder("test server")
    pieces: list[bytes] = []
    formats = set()
    start = 0
    for cut in [*sorted(cuts or []), len(data)]:
        for pcm_format, pcm in decoder.feed(data[start:cut]):
            formats.add(pcm_format)
            assert len(pcm) % pcm_format.frame_size == 0  # whole frames only
            pieces.append(pcm)
        start = max(start, cut)
    decoder.finish()
    assert len(formats) <= 1
    return (formats.pop() if formats else None), b"".join(pieces)


def test_a_wav_file_gives_its_format_and_samples() -> None:
    frames = bytes(range(256)) * 8
    pcm_format, pcm = decode(wav_bytes(frames, rate=22050, channels=2))
    assert pcm_format == PCMFormat(22050, 2, SampleFormat.INT16)
    assert pcm == frames
    assert pcm_format.duration(len(pcm)) == pytest.approx(len(frames) / 4 / 22050)


def test_other_chunks_are_skipped_and_streamed_sizes_run_to_the_end() -> None:
    samples = b"\x01\x02" * 500
    riff_body = (
        b"WAVE"
        + chunk(b"LIST", b"INFOISFT\x05\0\0\0Lavf\0")  # odd size: a pad byte follows
        + chunk(b"fmt ", fmt_body())
        + chunk(b"fact", b"\0\0\0\0")
    )
    for unknown in (0, 0xFFFFFFFF):
        data = (
            b"RIFF" + struct.pack("<I", unknown) + riff_body
            + b"data" + struct.pack("<I", unknown) + samples
        )  # fmt: skip
        pcm_format, pcm = decode(data, cuts=[13, 50, 51, 777])
        assert pcm_format == PCMFormat(22050, 1, SampleFormat.INT16)
        assert pcm == samples


def test_float_and_extensible_headers_are_played_and_24_bit_is_refused() -> None:
    float_fmt = fmt_body(tag=3, bits=32)
    data = b"RIFF\0\0\0\0WAVE" + chunk(b"fmt ", float_fmt) + chunk(b"data", b"\0" * 16)
    assert decode(data)[0] == PCMFormat(22050, 1, SampleFormat.FLOAT32)
    extensible = (
        fmt_body(tag=0xFFFE, bits=16)
        + struct.pack("<HHI", 22, 16, 4)
        + (struct.pack("<H", 1) + b"\0" * 14)
    )
    data = b"RIFF\0\0\0\0WAVE" + chunk(b"fmt ", extensible) + chunk(b"data", b"\0" * 8)
    assert decode(data)[0] == PCMFormat(22050, 1, SampleFormat.INT16)
    data = b"RIFF\0\0\0\0WAVE" + chunk(b"fmt ", fmt_body(bits=24)) + chunk(b"data", b"\0" * 6)
    with pytest.raises(SpeechError, match="24-bit PCM samples; the window plays"):
        decode(data)


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"ID3\x04\0\0\0\0\0\x21TIT2", "MP3"),
        (b"\xff\xfb\x90\x64" + b"\0" * 20, "MP3"),
        (b"\xff\xf1\x50\x80" + b"\0" * 20, "AAC"),
        (b"OggS\0\x02" + b"\0" * 20, "Ogg"),
        (b"fLaC\0\0\0\x22" + b"\0" * 20, "FLAC"),
        (b'{"error": {"message": "no"}}', "JSON"),
        (b"<html><body>502</body></html>", "web page"),
    ],
)
def test_an_answer_that_is_not_wav_is_named(head: bytes, named: str) -> None:
    with pytest.raises(NotAudioError, match=rf"answered .*{named}.*the window plays WAV"):
        decode(head)
    assert sniff_audio(head) is not None


def test_truncated_and_empty_answers_are_speech_errors() -> None:
    data = wav_bytes(b"\0\0" * 100)
    with pytest.raises(SpeechError, match="broke off"):
        decode(data[:-10])
    with pytest.raises(SpeechError, match="too few"):
        decode(data[:8])
    with pytest.raises(SpeechError, match="no 'data' chunk"):
        decode(b"RIFF\0\0\0\0WAVE" + chunk(b"fmt ", fmt_body()))
    with pytest.raises(NotAudioError, match="without any audio"):
        decode(b"")
    with pytest.raises(SpeechError, match="'data' before 'fmt '"):
        decode(b"RIFF\0\0\0\0WAVE" + chunk(b"data", b"\0\0"))


def test_raw_pcm_is_openais_format_in_whole_frames() -> None:
    decoder = RawPCMDecoder()
    assert decoder.feed(b"\x01") == []
    assert decoder.feed(b"\x02\x03") == [(OPENAI_PCM, b"\x01\x02")]
    assert decoder.feed(b"\x04") == [(OPENAI_PCM, b"\x03\x04")]
    decoder.finish()
    with pytest.raises(NotAudioError, match="answered WAV where raw PCM"):
        RawPCMDecoder().feed(wav_bytes(b"\0\0"))


@settings(max_examples=200, deadline=None)
@given(
    frames=st.binary(min_size=0, max_size=600),
    channels=st.integers(1, 2),
    width=st.sampled_from([1, 2, 4]),
    cuts=st.lists(st.integers(0, 800), max_size=12),
)
def test_any_chunking_gives_the_same_samples(
    frames: bytes, channels: int, width: int, cuts: list[int]
) -> None:
    frame = channels * width
    frames = frames[: len(frames) - len(frames) % frame] or b"\0" * frame
    data = wav_bytes(frames, channels=channels, width=width)
    whole = decode(data)
    assert whole[1] == frames
    chunked = decode(data, cuts=[cut % (len(data) + 1) for cut in cuts])
    assert chunked == whole


@settings(max_examples=300, deadline=None)
@given(
    header=st.binary(min_size=0, max_size=80),
    mutate=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=6),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_malformed_headers_give_speech_errors_only(
    header: bytes, mutate: list[tuple[int, int]], cuts: list[int]
) -> None:
    good = bytearray(wav_bytes(b"\x10\x20" * 20))
    for position, value in mutate:
        good[position % len(good)] = value
    for data in (bytes(good), header, b"RIFF" + header, b"RIFF\0\0\0\0WAVE" + header):
        with contextlib.suppress(SpeechError):  # anything else fails the test
            decode(data, cuts=cuts)

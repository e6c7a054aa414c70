"""Long answers in parts of at most 4,096 characters, and their audio joined."""

from __future__ import annotations

import io
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import UsageError
from app.speech.audio import MAX_INPUT_CHARS, join_audio, require_joinable, text_parts
from app.speech.errors import SpeechError
from tests.peers.speech_server import silent_wav


def test_a_short_text_is_one_part() -> None:
    assert text_parts("One. Two.") == ["One. Two."]


def test_parts_end_at_sentences_and_stay_under_the_limit() -> None:
    sentence = "This sentence is forty characters long. "
    text = sentence * 250  # 10,000 characters
    parts = text_parts(text)
    assert len(parts) == 3
    assert all(len(part) <= MAX_INPUT_CHARS and part.endswith("long.") for part in parts)
    assert " ".join(parts) == text.strip()


def test_a_sentence_longer_than_the_limit_is_cut_at_spaces() -> None:
    words = "Word " * 2000
    parts = text_parts("Short. " + words, limit=100)
    assert parts[0] == "Short."
    assert all(len(part) <= 100 for part in parts)
    assert "".join(parts[1:]).replace("Word", "").strip() == ""


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400), st.integers(5, 60))
def test_nothing_but_whitespace_is_lost(text: str, limit: int) -> None:
    parts = text_parts(text, limit=limit)
    assert all(0 < len(part) <= limit for part in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


def test_wav_parts_are_joined_by_their_frames() -> None:
    joined = join_audio("wav", [silent_wav(100), silent_wav(250)])
    with wave.open(io.BytesIO(joined)) as file:
        assert file.getnframes() == 350 and file.getframerate() == 24000


def test_wav_parts_of_different_formats_are_an_error() -> None:
    other = io.BytesIO()
    with wave.open(other, "wb") as file:
        file.setnchannels(2)
        file.setsampwidth(2)
        file.setframerate(16000)
        file.writeframes(b"\0" * 40)
    with pytest.raises(SpeechError, match="another sample format"):
        join_audio("wav", [silent_wav(10), other.getvalue()])
    with pytest.raises(SpeechError, match="could not be joined"):
        join_audio("wav", [silent_wav(10), b"not a wav"])


def test_mp3_parts_are_concatenated_and_flac_cannot_be_joined() -> None:
    assert join_audio("mp3", [b"ab", b"cd"]) == b"abcd"
    assert join_audio("flac", [b"whole"]) == b"whole"
    with pytest.raises(UsageError, match="set format: mp3 or wav"):
        require_joinable("flac", 2)

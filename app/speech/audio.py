"""A long text spoken in parts, and the parts' audio joined into one file.

OpenAI's speech API takes at most 4,096 characters of input per request (other
OpenAI-compatible servers and XTTS API servers slow down or fail on long input too),
so ``hushchat speak`` sends a long answer in parts cut at sentence ends, and joins
their audio: WAV files by their frames (one header), MP3, AAC (ADTS), Opus (chained Ogg
streams) and raw PCM by concatenation. FLAC parts cannot be joined without decoding
them: a long answer in FLAC is refused with what to change.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from typing import Final

from app.errors import UsageError
from app.speech.errors import SpeechError
from app.speech.sentences import split_sentences

__all__ = ["MAX_INPUT_CHARS", "join_audio", "require_joinable", "text_parts"]

#: The most characters sent in one request (OpenAI's documented limit).
MAX_INPUT_CHARS: Final = 4096
#: Formats whose files play correctly one after the other as one file.
_CONCATENABLE: Final = frozenset({"mp3", "aac", "opus", "pcm"})


def text_parts(text: str, limit: int = MAX_INPUT_CHARS) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut after whole sentences
    where possible, else at a space, else anywhere; nothing but whitespace is lost."""
    parts: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        while len(sentence) > limit:  # one sentence longer than a request may be
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                parts.append(current)
                current = ""
            parts.append(sentence[:cut])
            sentence = sentence[cut:]
        if len(current) + len(sentence) > limit:
            parts.append(current)
            current = ""
        current += sentence
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def require_joinable(audio_format: str, count: int) -> None:
    """UsageError, before anything is sent, when ``count`` parts of ``audio_format``
    audio could not be joined into one file."""
    if count > 1 and audio_format not in _CONCATENABLE and audio_format != "wav":
        raise UsageError(
            f"this answer is spoken in {count} parts, and {audio_format} audio cannot be "
            "joined into one file; set format: mp3 or wav in the engine's tts entry"
        )


def join_audio(audio_format: str, parts: Sequence[bytes]) -> bytes:
    """The audio of ``parts`` (in order) as one file of ``audio_format``."""
    require_joinable(audio_format, len(parts))
    if len(parts) == 1:
        return parts[0]
    if audio_format == "wav":
        return _join_wav(parts)
    return b"".join(parts)


def _join_wav(parts: Sequence[bytes]) -> bytes:
    output = io.BytesIO()
    try:
        with wave.open(output, "wb") as joined:
            first: tuple[int, int, int] | None = None
            for number, data in enumerate(parts, 1):
                with wave.open(io.BytesIO(data), "rb") as part:
                    params = (part.getnchannels(), part.getsampwidth(), part.getframerate())
                    if first is None:
                        first = params
                        joined.setnchannels(params[0])
                        joined.setsampwidth(params[1])
                        joined.setframerate(params[2])
                    elif params != first:
                        raise SpeechError(
                            f"part {number} of the answer's WAV audio has another sample "
                            "format than the first; set format: mp3 in the engine's tts entry"
                        )
                    joined.writeframes(part.readframes(part.getnframes()))
    except (wave.Error, EOFError) as error:
        raise SpeechError(
            f"the speech server's WAV audio could not be joined ({error}); set format: mp3 "
            "in the engine's tts entry, if the server offers it"
        ) from error
    return output.getvalue()

"""Read aloud: answers turned into speech, under the privacy tiers' policy.

* ``text``: an answer's Markdown as the words a voice reads (code announced, not read);
* ``sentences``: a streamed answer split into sentences as soon as each one ends;
* ``engines``: the ``openai`` and ``xtts`` HTTP engines (audio streamed to a sink, no
  files) and the ``SystemVoices`` interface the window implements with QtTextToSpeech;
* ``policy``: which engines a chat's tier allows (the models' policy, reused);
* ``reader``: a streamed answer spoken sentence by sentence;
* ``audio``: a long text in parts a server accepts, their audio joined into one file;
* ``cli``: ``hushchat speak ID --out FILE``.

No Qt here: the speaker button, Settings, Voice and playback live in ``app/ui``.
"""

from __future__ import annotations

from app.speech.engines import (
    Audio,
    AudioSink,
    HTTPSpeechEngine,
    SpeechEngine,
    SystemVoices,
    open_engine,
)
from app.speech.errors import (
    NotAudioError,
    SpeechError,
    SpeechServerRefusedError,
    SpeechServerUnreachableError,
)
from app.speech.policy import default_engine, engine_decision, find_engine, require_engine
from app.speech.reader import say_stream, speak_stream, spoken_sentences
from app.speech.sentences import SentenceSplitter, split_sentences
from app.speech.text import prepare_for_speech

__all__ = [
    "Audio",
    "AudioSink",
    "HTTPSpeechEngine",
    "NotAudioError",
    "SentenceSplitter",
    "SpeechEngine",
    "SpeechError",
    "SpeechServerRefusedError",
    "SpeechServerUnreachableError",
    "SystemVoices",
    "default_engine",
    "engine_decision",
    "find_engine",
    "open_engine",
    "prepare_for_speech",
    "require_engine",
    "say_stream",
    "speak_stream",
    "split_sentences",
    "spoken_sentences",
]

"""Reading an answer aloud while it streams: deltas in, one engine request per sentence.

The window (later) calls ``speak_stream`` with the answer's deltas as they arrive and a
``sink_for`` that gives, for each sentence, where its audio goes (a player's queue);
the first sentence is requested as soon as it ends, so it can be heard while the rest
of the answer is still being written. Cancelling the task stops the current request.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable

from app.config import TTSEntry
from app.speech.engines import AudioSink, SpeechEngine, SystemVoices
from app.speech.policy import require_engine
from app.speech.sentences import SentenceSplitter
from app.speech.text import prepare_for_speech
from app.tiers import Tier

__all__ = ["say_stream", "speak_stream", "spoken_sentences"]

#: Emphasis marks a sentence split can leave unmatched at its ends ("**Note." "This**").
_STRAY_MARKS = "*_~"


async def spoken_sentences(deltas: AsyncIterable[str]) -> AsyncIterator[str]:
    """The text to speak for each sentence (or announced block) of a streamed answer,
    each as soon as it is complete; pieces with nothing to say are skipped."""
    splitter = SentenceSplitter()
    async for delta in deltas:
        for piece in splitter.feed(delta):
            spoken = _spoken(piece)
            if spoken:
                yield spoken
    for piece in splitter.flush():
        spoken = _spoken(piece)
        if spoken:
            yield spoken


def _spoken(piece: str) -> str:
    """A piece's words; a sentence cut out of an emphasised passage ("**Note. This**")
    keeps an unmatched mark at its edge, which is not read."""
    return prepare_for_speech(piece).strip(_STRAY_MARKS + " \n")


async def speak_stream(
    engine: SpeechEngine,
    deltas: AsyncIterable[str],
    sink_for: Callable[[int, str], AudioSink],
) -> int:
    """Speak a streamed answer with ``engine``, sentence by sentence: sentence ``n``'s
    audio goes to ``sink_for(n, text)``. Returns how many sentences were spoken."""
    count = 0
    async for sentence in spoken_sentences(deltas):
        await engine.synthesize(sentence, sink_for(count, sentence))
        count += 1
    return count


async def say_stream(
    voices: SystemVoices, entry: TTSEntry, tier: Tier, deltas: AsyncIterable[str]
) -> int:
    """Speak a streamed answer with the system's voices (``entry`` of type ``system``),
    sentence by sentence. Returns how many sentences were spoken."""
    require_engine(tier, entry)  # system voices are on-prem: every tier allows them
    count = 0
    async for sentence in spoken_sentences(deltas):
        await voices.say(sentence, voice=entry.voice, rate=entry.speed)
        count += 1
    return count

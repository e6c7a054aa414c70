"""A streamed answer turned into the sentences a voice says, and said by system voices
(a stand-in for the window's QtTextToSpeech)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from app.config import TTSEntry
from app.speech import say_stream, spoken_sentences
from app.tiers import Tier


async def stream(*deltas: str) -> AsyncIterator[str]:
    for delta in deltas:
        yield delta


async def test_sentences_come_prepared_and_empty_pieces_are_skipped() -> None:
    said = [
        s
        async for s in spoken_sentences(
            stream("# Intro\n\n**Note. This", " matters.** See ", "<https://a.example/x>.\n\n---\n")
        )
    ]
    assert said == ["Intro.", "Note.", "This matters.", "See a link to a.example."]


class FakeVoices:
    def __init__(self) -> None:
        self.said: list[tuple[str, str | None, float]] = []

    async def say(self, text: str, *, voice: str | None, rate: float) -> None:
        self.said.append((text, voice, rate))

    def stop(self) -> None:
        """Nothing is playing."""

    def voices(self) -> list[str]:
        return ["default"]


async def test_system_voices_say_each_sentence_in_any_tier() -> None:
    entry = TTSEntry(type="system", name="voices", voice="Samantha", speed=1.5)
    voices = FakeVoices()
    count = await say_stream(voices, entry, Tier.PRIVATE, stream("One. Two", "! Three"))
    assert count == 3
    assert voices.said == [("One.", "Samantha", 1.5), ("Two!", "Samantha", 1.5),
                           ("Three", "Samantha", 1.5)]  # fmt: skip

"""The read-aloud latency benchmark's child process (``bench_voice``): a Qt core loop,
the window's ``Speaker``, and a speech engine; prints one JSON object of milliseconds.

Each round feeds a streaming answer its first sentence (and the start of the next, so
the sentence is known to be complete) and times until the speaker says it is speaking:
the first audio is playing (HTTP engines: PCM handed to QAudioSink and its sink active;
system voices: QTextToSpeech's Speaking state).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from types import SimpleNamespace
from typing import Any, cast

from PySide6.QtCore import QCoreApplication

from app.config import TTSEntry
from app.session import Session
from app.tiers import Tier
from app.ui.voice import Speaker, SpeakerState
from app.ui.voice.terminal import run_on_qt_loop
from tests.peers.speech_server import SpeechServer

ROUNDS = {"xtts": 15, "system": 6}
FIRST = "The first sentence of the answer is here. The sec"


class _Keys:
    async def resolve(self, entry: Any) -> str | None:
        return None


def _speaker(entry: TTSEntry) -> Speaker:
    session = SimpleNamespace(
        config=SimpleNamespace(config=SimpleNamespace(tts=[entry], default_tts=None)),
        api_keys=_Keys(),
    )
    return Speaker(cast(Session, session))


async def _rounds(entry: TTSEntry, rounds: int) -> list[float]:
    speaker = _speaker(entry)
    figures: list[float] = []
    try:
        for _ in range(rounds):
            speaking = asyncio.get_running_loop().create_future()
            failures: list[str] = []

            def changed(key: str, state: str, done: asyncio.Future[float] = speaking) -> None:
                if state == SpeakerState.SPEAKING.value and not done.done():
                    done.set_result(time.perf_counter())

            speaker.state_changed.connect(changed)
            speaker.failed.connect(lambda key, message, kept=failures: kept.append(message))
            feed = speaker.begin_stream("bench", Tier.PRIVATE, entry)
            started = time.perf_counter()
            feed.add(FIRST)
            try:
                at = await asyncio.wait_for(speaking, 30)
            except TimeoutError as error:
                raise RuntimeError(f"never spoke: {failures}") from error
            figures.append((at - started) * 1000)
            speaker.stop()
            speaker.state_changed.disconnect(changed)
            await asyncio.sleep(0.3)
    finally:
        speaker.close()
    return figures


async def _main() -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with SpeechServer() as server:
        entry = TTSEntry(type="xtts", name="xtts", base_url=server.url)
        results["xtts"] = await _rounds(entry, ROUNDS["xtts"])
    results["system"] = await _rounds(TTSEntry(type="system", name="system"), ROUNDS["system"])
    return results


def main() -> int:
    QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    print(json.dumps(run_on_qt_loop(_main)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Read aloud (issue 15): how soon the first words are heard once the first sentence of a
streaming answer has arrived; budget "within about a second" (1,000 ms).

Runs ``tests.benchmarks.voice_worker`` in a child process with a PulseAudio daemon of
its own (null sink, ``tests.peers.audio_stack``): the XTTS-format loopback server of
``tests.peers.speech_server`` (it answers at once, so the figure is Hushchat's own
overhead: the request, WAV decoding, the audio sink starting) and the system voices
(speech-dispatcher with espeak-ng: its first round includes starting speech-dispatcher;
QTextToSpeech says Speaking when the text is handed to speech-dispatcher, so the system
figures leave out espeak-ng's own synthesis time).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.peers.audio_stack import running_audio_stack

REPO = Path(__file__).resolve().parents[2]
FIRST_WORDS_BUDGET_MS = 1000.0


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def run() -> list[Row]:
    if not sys.platform.startswith("linux") or shutil.which("pulseaudio") is None:
        raise BenchmarkUnavailableError(
            "needs Linux with PulseAudio, speech-dispatcher and espeak-ng"
        )
    with (
        tempfile.TemporaryDirectory(prefix="hushchat-bench-voice-") as folder,
        running_audio_stack(Path(folder)) as audio_env,
    ):
        env = {**os.environ, **audio_env, "QT_QPA_PLATFORM": "offscreen"}
        result = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.voice_worker"],
            cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"voice_worker failed:\n{result.stderr[-3000:]}")
    figures: dict[str, list[float]] = json.loads(result.stdout.strip().splitlines()[-1])
    http, system = figures["xtts"], figures["system"]
    return [
        Row(
            "read aloud: first sentence to audio playing, XTTS server (median)",
            statistics.median(http),
            "ms",
            FIRST_WORDS_BUDGET_MS,
            note=f"p90 {_p90(http):.0f} ms, {len(http)} rounds",
        ),
        Row(
            "read aloud: first sentence to speaking, system voices (first, with start-up)",
            system[0],
            "ms",
            FIRST_WORDS_BUDGET_MS,
        ),
        Row(
            "read aloud: first sentence to speaking, system voices (median after)",
            statistics.median(system[1:]),
            "ms",
            FIRST_WORDS_BUDGET_MS,
            note=f"{len(system) - 1} rounds",
        ),
    ]

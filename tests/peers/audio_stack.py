"""A PulseAudio daemon of the tests' own (null sink), for read aloud (marker ``audio``).

With no sound card PulseAudio plays to its null sink ("Dummy Output"), in real time, so
QAudioSink's processed time is the audio's length. QtTextToSpeech's speechd engine
autospawns speech-dispatcher (espeak-ng voices) under the same ``XDG_RUNTIME_DIR``;
``running_audio_stack`` stops both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["running_audio_stack"]


@contextlib.contextmanager
def running_audio_stack(runtime: Path) -> Iterator[dict[str, str]]:
    """PulseAudio with ``runtime`` as its private runtime directory; yields the
    environment (``XDG_RUNTIME_DIR`` set) that programs reach it with."""
    if shutil.which("pulseaudio") is None:
        pytest.fail("needs PulseAudio: apt install pulseaudio speech-dispatcher espeak-ng")
    runtime.chmod(0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    subprocess.run(
        ["pulseaudio", "-D", "--exit-idle-time=-1", "--disallow-exit", "-n",
         "--load=module-null-sink", "--load=module-native-protocol-unix"],
        env=env, check=True, timeout=30, capture_output=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["pactl", "info"], env=env, capture_output=True, check=False
        ).returncode:
            assert time.monotonic() < deadline, "PulseAudio did not start"
            time.sleep(0.1)
        yield env
    finally:
        pid_file = runtime / "speech-dispatcher" / "pid" / "speech-dispatcher.pid"
        if pid_file.exists():  # autospawned by QtTextToSpeech's speechd engine
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        subprocess.run(["pulseaudio", "--kill"], env=env, check=False, timeout=30)

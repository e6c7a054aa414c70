"""``hushchat chat --speak`` as a subprocess: the answer of the real llama-server peer is
read aloud while it streams, through the window's speaker on a Qt loop without a display,
to a PulseAudio null sink of the test's own (``tests.peers.audio_stack``).

The speech engine is the XTTS API format of ``tests.peers.speech_server`` (written from
the documented request and response formats: no real speech server installs from the
package registries without downloading a voice model at run time); its answers are
real WAV audio (0.1 s of silence per sentence), which the command plays.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store.models import MessageStatus
from tests.e2e.test_chat_cli import (
    HUSHCHAT,
    Env,
    chat_id_of,
    files_under,
    free_port,
    make_env,
    open_library,
)
from tests.peers.audio_stack import running_audio_stack
from tests.peers.llama_server import LlamaServer
from tests.peers.speech_server import SpeechServer

pytestmark = [pytest.mark.llama_server, pytest.mark.audio]


@pytest.fixture(scope="module")
def audio_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_audio_stack(tmp_path_factory.mktemp("xdg-runtime")) as env:
        yield {"XDG_RUNTIME_DIR": env["XDG_RUNTIME_DIR"]}


@pytest.fixture
def speech() -> Iterator[SpeechServer]:
    with SpeechServer() as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, llama_server: LlamaServer, speech: SpeechServer) -> Env:
    found = make_env(tmp_path, llama_server.base_url)
    found.config.write_text(
        found.config.read_text(encoding="utf-8")
        + f"""default_tts: xtts
tts:
  - type: xtts
    name: xtts
    base_url: {speech.url}
  - type: openai
    name: cloud-voice
    base_url: https://speech.invalid.example/v1
    locality: paid_cloud
  - type: xtts
    name: gone
    base_url: http://127.0.0.1:{free_port()}
""",
        encoding="utf-8",
    )
    return found


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_the_answer_is_read_aloud_while_it_streams(
    env: Env, speech: SpeechServer, audio_env: dict[str, str]
) -> None:
    before = set(files_under(env.home / "tmp"))
    result = env.run(
        "chat", "--tier", "private", "--speak", "--max-tokens", "48", "Tell me a story.",
        **audio_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "not read aloud" not in result.stderr
    spoken = [request.body["text"] for request in speech.requests]
    assert spoken, "nothing was sent to the speech engine"
    assert all(r.path == "/tts_to_audio/" for r in speech.requests)
    # What was read is the printed answer's words (Markdown left out), sentence by sentence.
    assert words(" ".join(spoken)) <= words(result.stdout)
    assert set(files_under(env.home / "tmp")) == before  # no audio file, not even in temp
    chat_id = chat_id_of(result.stderr)
    with open_library(env.profile) as library:
        _question, answer = library.store_of(chat_id).full_thread(chat_id)
        assert answer.status is MessageStatus.COMPLETE


def test_a_private_chat_refuses_a_cloud_voice_before_sending_anything(
    env: Env, speech: SpeechServer, audio_env: dict[str, str]
) -> None:
    result = env.run(
        "chat", "--tier", "private", "--speak-engine", "cloud-voice", "secret plans",
        **audio_env,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "cloud-voice" in result.stderr and "on-prem" in result.stderr
    assert env.run("chats", "list").stdout == ""  # the message was not sent, no chat made
    assert speech.requests == []


def test_a_speech_server_that_is_down_is_exit_3_with_the_answer_kept(
    env: Env, audio_env: dict[str, str]
) -> None:
    result = env.run(
        "chat", "--speak-engine", "gone", "--max-tokens", "24", "Say something.", **audio_env
    )
    assert result.returncode == 3, result.stderr
    assert "not read aloud: speech engine gone (xtts) is not answering" in result.stderr
    assert "the answer is kept" in result.stderr
    assert result.stdout.strip()
    chat_id = chat_id_of(result.stderr)
    with open_library(env.profile) as library:
        _question, answer = library.store_of(chat_id).full_thread(chat_id)
        assert answer.status is MessageStatus.COMPLETE


def test_ctrl_c_while_reading_stops_the_reading_and_the_command(
    env: Env, speech: SpeechServer, audio_env: dict[str, str]
) -> None:
    speech.delay = 30.0  # the first sentence's audio never comes in time
    process = subprocess.Popen(
        [str(HUSHCHAT), "chat", "--speak", "--max-tokens", "48", "Tell me a story."],
        env=env.vars(**audio_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not speech.requests:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no sentence was sent to the speech engine"
            time.sleep(0.05)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=20)
        assert time.monotonic() - started < 10  # not held by the pending request
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    chat_id = chat_id_of(stderr)
    with open_library(env.profile) as library:  # what arrived is kept
        _question, answer = library.store_of(chat_id).full_thread(chat_id)
        assert answer.status in (MessageStatus.STOPPED, MessageStatus.COMPLETE)

"""Read aloud in the window (app/ui/voice): the ``Speaker`` with each engine type, heard
through a real audio stack.

``audio_stack`` (session, tests/qt/conftest.py) starts a PulseAudio daemon of its own
(``tests.peers.audio_stack``), with a private ``XDG_RUNTIME_DIR`` set for this process.

The HTTP engines talk to ``tests.peers.speech_server``, written from the documented
request and response formats (no real speech server installs from the package
registries without downloading a voice model at run time; see that module). Its XTTS
answers are real WAV files (0.1 s of silence each); its OpenAI answers are not audio.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pytestqt.qtbot import QtBot

from app.config import TTSEntry
from app.errors import PolicyRefusedError, UsageError
from app.session import Session
from app.tiers import Tier
from app.ui.voice import Speaker, SpeakerState
from tests.peers.speech_server import SpeechServer

pytestmark = pytest.mark.audio

XTTS_ANSWER_SECONDS = 2400 / 24000  # tests.peers.speech_server.silent_wav


@pytest.fixture
def server() -> Iterator[SpeechServer]:
    with SpeechServer() as running:
        yield running


class FakeKeys:
    async def resolve(self, entry: Any) -> str | None:
        return None


def make_speaker(*entries: TTSEntry) -> Speaker:
    """A speaker over a session with just what it uses: the tts list and the keys."""
    session = SimpleNamespace(
        config=SimpleNamespace(config=SimpleNamespace(tts=list(entries), default_tts=None)),
        api_keys=FakeKeys(),
    )
    return Speaker(cast(Session, session))


def xtts(server: SpeechServer, **fields: object) -> TTSEntry:
    return TTSEntry.model_validate(
        {"type": "xtts", "name": "xtts", "base_url": server.url, **fields}
    )


class Recorder:
    def __init__(self, speaker: Speaker) -> None:
        self.states: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str]] = []
        speaker.state_changed.connect(lambda key, state: self.states.append((key, state)))
        speaker.failed.connect(lambda key, message: self.failures.append((key, message)))

    def values(self, key: str = "m1") -> list[str]:
        return [state for k, state in self.states if k == key]

    def idle(self) -> bool:
        return bool(self.states) and self.states[-1][1] == SpeakerState.IDLE.value


def test_system_voices_speak_stop_and_list_voices(audio_stack: Path, qtbot: QtBot) -> None:
    entry = TTSEntry(type="system", name="system", speed=1.5)
    speaker = make_speaker(entry)
    seen = Recorder(speaker)
    speaker.speak_text("m1", Tier.PRIVATE, "Hello. **This** is a test.")
    assert speaker.speaking_key == "m1"
    qtbot.waitUntil(seen.idle, timeout=30_000)
    assert seen.values() == ["preparing", "speaking", "idle"]
    assert seen.failures == []
    # Stop in the middle of a long sentence: idle at once, nothing fails.
    speaker.speak_text("m2", Tier.PRIVATE, "This sentence is long enough " * 8)
    qtbot.waitUntil(lambda: seen.values("m2")[-1:] == ["speaking"], timeout=30_000)
    started = time.monotonic()
    speaker.stop()
    assert seen.values("m2") == ["preparing", "speaking", "idle"]
    assert speaker.speaking_key is None
    qtbot.wait(300)
    assert time.monotonic() - started < 5 and seen.failures == []
    voices = speaker._system_voices().voices()
    assert len(voices) > 10 and all(isinstance(name, str) and name for name in voices)
    speaker.close()


def test_an_xtts_answer_is_played_to_the_end(
    audio_stack: Path, qtbot: QtBot, server: SpeechServer
) -> None:
    speaker = make_speaker(xtts(server))
    seen = Recorder(speaker)
    speaker.speak_text("m1", Tier.PRIVATE, "First sentence here. Second one, `code`. Third!")
    qtbot.waitUntil(seen.idle, timeout=20_000)
    assert seen.values() == ["preparing", "speaking", "idle"], seen.failures
    assert [r.body["text"] for r in server.requests] == [
        "First sentence here.", "Second one, code.", "Third!"
    ]  # fmt: skip
    assert speaker._player is not None
    assert speaker._player.played_seconds == pytest.approx(3 * XTTS_ANSWER_SECONDS, abs=0.03)
    speaker.close()


def test_openai_is_asked_for_wav_and_an_answer_that_is_not_wav_fails_clearly(
    audio_stack: Path, qtbot: QtBot, server: SpeechServer
) -> None:
    entry = TTSEntry(type="openai", name="kokoro", base_url=f"{server.url}/v1", format="mp3")
    speaker = make_speaker(entry)
    seen = Recorder(speaker)
    speaker.speak_text("m1", Tier.PRIVATE, "Hello there.")
    qtbot.waitUntil(lambda: bool(seen.failures), timeout=20_000)
    assert server.requests[0].body["response_format"] == "wav"  # the entry says mp3
    [(key, message)] = seen.failures
    assert key == "m1" and "speech engine kokoro (openai) answered" in message
    assert "the window plays WAV" in message
    server.answer_with(200, "audio/mpeg", b"ID3\x04\0\0\0\0\0\0" + b"\xff\xfb" * 100)
    speaker.speak_text("m2", Tier.PRIVATE, "Hello again.")
    qtbot.waitUntil(lambda: len(seen.failures) == 2, timeout=20_000)
    assert "answered MP3" in seen.failures[1][1]
    assert seen.idle()
    speaker.close()


def test_a_streaming_answer_is_spoken_sentence_by_sentence(
    audio_stack: Path, qtbot: QtBot, server: SpeechServer
) -> None:
    speaker = make_speaker(xtts(server))
    seen = Recorder(speaker)
    feed = speaker.begin_stream("m1", Tier.PRIVATE)
    feed.add("The first sent")
    qtbot.wait(200)
    assert server.requests == []  # the sentence is not complete yet
    feed.add("ence ends here. The second")
    qtbot.waitUntil(lambda: len(server.requests) == 1, timeout=10_000)
    assert server.requests[0].body["text"] == "The first sentence ends here."
    qtbot.waitUntil(lambda: "speaking" in seen.values(), timeout=10_000)
    feed.add(" one is shorter.")
    feed.end()
    qtbot.waitUntil(seen.idle, timeout=20_000)
    assert [r.body["text"] for r in server.requests][1:] == ["The second one is shorter."]
    assert seen.failures == []
    speaker.close()


def test_stop_mid_way_cancels_the_request_and_playback(
    audio_stack: Path, qtbot: QtBot, server: SpeechServer
) -> None:
    speaker = make_speaker(xtts(server))
    seen = Recorder(speaker)
    server.delay = 1.0
    speaker.speak_text("m1", Tier.STANDARD, "One. Two. Three.")
    qtbot.waitUntil(lambda: len(server.requests) == 1, timeout=10_000)
    speaker.stop()
    assert seen.values() == ["preparing", "idle"]
    qtbot.wait(1500)
    assert len(server.requests) == 1 and seen.failures == []
    speaker.close()


def test_a_server_gone_mid_answer_fails_with_a_clear_message(
    audio_stack: Path, qtbot: QtBot
) -> None:
    with SpeechServer() as server:
        speaker = make_speaker(xtts(server))
        seen = Recorder(speaker)
        feed = speaker.begin_stream("m1", Tier.PRIVATE)
        feed.add("The first sentence. The")
        qtbot.waitUntil(lambda: "speaking" in seen.values(), timeout=10_000)
    feed.add(" server is gone now. And more.")
    feed.end()
    qtbot.waitUntil(lambda: bool(seen.failures), timeout=20_000)
    [(key, message)] = seen.failures
    assert key == "m1" and "is not answering at" in message and "start the server" in message
    assert seen.idle()
    speaker.close()


def test_a_private_chat_refuses_a_cloud_engine_before_any_request(
    audio_stack: Path, server: SpeechServer
) -> None:
    cloud = TTSEntry(
        type="openai", name="openai", base_url=f"{server.url}/v1", locality="paid_cloud"
    )
    speaker = make_speaker(cloud)
    with pytest.raises(PolicyRefusedError):
        speaker.speak_text("m1", Tier.PRIVATE, "A private answer.", cloud)
    with pytest.raises(PolicyRefusedError):
        speaker.begin_stream("m1", Tier.PRIVATE)
    with pytest.raises(UsageError, match="nothing to read"):
        speaker.speak_text("m1", Tier.STANDARD, "  \n", cloud)
    assert speaker.speaking_key is None and server.requests == []
    speaker.close()


def test_no_audio_file_is_left_after_speaking_a_private_answer(
    audio_stack: Path,
    qtbot: QtBot,
    server: SpeechServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profile, temp = tmp_path / "profile", tmp_path / "tmp"
    profile.mkdir()
    temp.mkdir()
    (profile / "vault.db").write_bytes(b"x")
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("HUSHCHAT_PROFILE", str(profile))

    def listing() -> list[str]:
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    before = listing()
    speaker = make_speaker(xtts(server))
    seen = Recorder(speaker)
    speaker.speak_text("m1", Tier.PRIVATE, "A private answer. In two sentences.")
    qtbot.waitUntil(seen.idle, timeout=20_000)
    assert seen.values() == ["preparing", "speaking", "idle"] and len(server.requests) == 2
    speaker.close()
    assert listing() == before

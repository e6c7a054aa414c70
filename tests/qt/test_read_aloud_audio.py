"""Read aloud in the real window with the real speaker: the answer's sentences go to a
speech server and are heard through PulseAudio's null sink (``audio_stack``).

The speech server speaks the XTTS API format of ``tests.peers.speech_server`` (written
from the documented request and response formats; its answers are real WAV audio, 0.1 s
of silence per sentence). ``tests/qt/test_read_aloud.py`` covers the window's side with
a fake speaker; ``tests/qt/test_voice.py`` the speaker alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.ui.main_window import MainWindow
from tests.peers.scripted_provider import ScriptedModel
from tests.peers.speech_server import SpeechServer
from tests.qt.conftest import closed_port_url, write_config
from tests.qt.drivers import WAIT, press, send, start_chat
from tests.qt.test_read_aloud import footer

pytestmark = pytest.mark.audio

ANSWER = "The moon is about **384,400 km** away. It drifts off by 3.8 cm a year."
SENTENCES = ["The moon is about 384,400 km away.", "It drifts off by 3.8 cm a year."]
SENTENCE_SECONDS = 2400 / 24000  # tests.peers.speech_server.silent_wav


@pytest.fixture
def speech() -> Iterator[SpeechServer]:
    with SpeechServer() as server:
        yield server


@pytest.fixture
def qt_config(tmp_path: Path, speech: SpeechServer) -> LoadedConfig:
    engines = f"tts:\n  - type: xtts\n    name: xtts\n    base_url: {speech.url}\n"
    return load_config(write_config(tmp_path / "config.yml", closed_port_url(), extra=engines), {})


@pytest.fixture
def scripted_model() -> ScriptedModel:
    return ScriptedModel(text=ANSWER, context_size=512)


def test_an_answer_is_heard_when_asked_and_while_it_arrives_with_auto_read(
    qtbot: QtBot, audio_stack: Path, main_window: MainWindow, speech: SpeechServer
) -> None:
    area = main_window.chat_area
    assert area is not None
    start_chat(qtbot, area, "private")  # an on-prem engine: Private chats may use it
    reply = send(qtbot, area, "How far is the moon?")
    assert speech.requests == []  # nothing is read unless asked

    press(qtbot, main_window, "Ctrl+Shift+R")
    qtbot.waitUntil(lambda: "Stop reading" in footer(area.chat_view, reply.id), timeout=WAIT)
    qtbot.waitUntil(lambda: "Read aloud" in footer(area.chat_view, reply.id), timeout=20_000)
    assert [request.body["text"] for request in speech.requests] == SENTENCES
    speaker = main_window.speaker
    assert speaker is not None and speaker._player is not None
    assert speaker._player.played_seconds == pytest.approx(2 * SENTENCE_SECONDS, abs=0.03)
    assert "Not read aloud" not in footer(area.chat_view, reply.id)

    # Auto-read: the next answer is read as it streams, without asking.
    speech.requests.clear()
    area.settings_panel.read_aloud.click()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.params.read_aloud is True,
        timeout=WAIT,
    )
    second = send(qtbot, area, "And again?")
    qtbot.waitUntil(lambda: len(speech.requests) == 2, timeout=20_000)
    assert [request.body["text"] for request in speech.requests] == SENTENCES
    qtbot.waitUntil(lambda: speaker.speaking_key is None, timeout=20_000)
    assert "Not read aloud" not in footer(area.chat_view, second.id)

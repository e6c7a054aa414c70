"""The openai and xtts speech engines over real HTTP on loopback.

The server is ``tests.peers.speech_server``, written from the documented request and
response formats of OpenAI's ``POST /v1/audio/speech`` and of the XTTS API server's
``POST /tts_to_audio/`` (no real speech server installs from the package registries
without downloading a voice model at run time; see that module).
"""

from __future__ import annotations

import io
import logging
import socket
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.config import TTSEntry
from app.errors import PolicyRefusedError
from app.speech import (
    NotAudioError,
    SpeechServerRefusedError,
    SpeechServerUnreachableError,
    open_engine,
    speak_stream,
)
from app.speech.engines import OPENAI_VOICES, AudioSink
from app.tiers import Tier
from tests.peers.speech_server import SpeechServer, fake_openai_audio


@pytest.fixture
def server() -> Iterator[SpeechServer]:
    with SpeechServer() as running:
        yield running


def openai_entry(server: SpeechServer, **fields: object) -> TTSEntry:
    return TTSEntry.model_validate(
        {"type": "openai", "name": "kokoro", "base_url": f"{server.url}/v1", **fields}
    )


def xtts_entry(server: SpeechServer, **fields: object) -> TTSEntry:
    return TTSEntry.model_validate(
        {"type": "xtts", "name": "xtts", "base_url": server.url, **fields}
    )


class Collected:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


async def test_openai_engine_sends_the_documented_request_and_streams_the_audio(
    server: SpeechServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entry = openai_entry(server, model="kokoro", voice="af_heart", speed=1.25, format="wav")
    sink = Collected()
    async with open_engine(entry, tier=Tier.STANDARD, api_key="sk-test-secret-42") as engine:
        audio = await engine.synthesize("Hello there.", sink)

    assert sink.data == fake_openai_audio("wav", "Hello there.")
    assert (audio.media_type, audio.size) == ("audio/wav", len(sink.data))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/audio/speech")
    assert request.body == {
        "model": "kokoro",
        "input": "Hello there.",
        "voice": "af_heart",
        "response_format": "wav",
        "speed": 1.25,
    }
    assert request.headers["authorization"] == "Bearer sk-test-secret-42"
    assert "sk-test-secret-42" not in caplog.text
    assert "Hello there" not in caplog.text  # the text is never logged


async def test_openai_defaults_and_no_key_no_authorization(server: SpeechServer) -> None:
    async with open_engine(openai_entry(server), tier=Tier.PRIVATE) as engine:
        audio = await engine.synthesize("Hi.", Collected())
    assert audio.media_type == "audio/mpeg"
    [request] = server.requests
    assert request.body["model"] == "tts-1" and request.body["voice"] == "alloy"
    assert request.body["response_format"] == "mp3"
    assert "authorization" not in request.headers


async def test_xtts_engine_sends_text_speaker_and_language_and_gets_wav(
    server: SpeechServer,
) -> None:
    entry = xtts_entry(server, voice="female", language="de", speed=2.0)
    sink = Collected()
    async with open_engine(entry, tier=Tier.PRIVATE) as engine:
        audio = await engine.synthesize("Guten Tag.", sink)
    assert audio.media_type == "audio/wav"
    with wave.open(io.BytesIO(sink.data)) as file:
        assert file.getframerate() == 24000 and file.getnframes() == 2400
    [request] = server.requests
    assert request.path == "/tts_to_audio/"
    # The speed is a server setting of XTTS API servers: not in the request.
    assert request.body == {"text": "Guten Tag.", "language": "de", "speaker_wav": "female"}


async def test_voice_lists(server: SpeechServer) -> None:
    async with open_engine(openai_entry(server), tier=Tier.STANDARD) as engine:
        assert await engine.voices() == ["af_heart", "am_adam"]
    async with open_engine(xtts_entry(server), tier=Tier.STANDARD) as engine:
        assert await engine.voices() == ["female", "male"]
    server.answer_with(404, "application/json", b'{"detail": "Not Found"}')
    async with open_engine(openai_entry(server), tier=Tier.STANDARD) as engine:
        assert await engine.voices() == list(OPENAI_VOICES)  # OpenAI lists none


async def test_a_4xx_answer_says_what_the_server_said_and_what_to_check(
    server: SpeechServer,
) -> None:
    async with open_engine(openai_entry(server, voice="nobody"), tier=Tier.STANDARD) as engine:
        with pytest.raises(SpeechServerRefusedError) as caught:
            await engine.synthesize("Hi.", Collected())
    assert caught.value.status == 400
    assert str(caught.value) == (
        "speech engine kokoro (openai) answered HTTP 400: Voice nobody not found; check "
        "model, voice, format and language in its tts entry"
    )
    async with open_engine(xtts_entry(server, language="xx"), tier=Tier.STANDARD) as engine:
        with pytest.raises(SpeechServerRefusedError, match="unsupported or misspelled"):
            await engine.synthesize("Hi.", Collected())


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (401, b'{"error": {"message": "Incorrect API key"}}', "Incorrect API key; check api_key"),
        (404, b"<html><body>Not here</body></html>", "HTTP 404; is http://"),
        (500, b"<!doctype html><p>boom</p>", "HTTP 500; the server failed; see its log"),
        (429, b'{"detail": "slow down"}', "slow down; the server is busy"),
    ],
)
async def test_error_statuses(server: SpeechServer, status: int, body: bytes, said: str) -> None:
    server.answer_with(status, "application/json", body)
    async with open_engine(openai_entry(server), tier=Tier.STANDARD) as engine:
        with pytest.raises(SpeechServerRefusedError) as caught:
            await engine.synthesize("Hi.", Collected())
    assert said in str(caught.value)
    assert "<" not in str(caught.value)  # no HTML page in the message
    assert caught.value.exit_code == 3


async def test_a_web_page_instead_of_audio_is_not_audio(server: SpeechServer) -> None:
    server.answer_with(200, "text/html; charset=utf-8", b"<html>a web page</html>")
    sink = Collected()
    async with open_engine(openai_entry(server), tier=Tier.STANDARD) as engine:
        with pytest.raises(NotAudioError, match="answered with text/html, not audio; check"):
            await engine.synthesize("Hi.", sink)
    assert sink.chunks == []  # nothing of it reached the player


async def test_empty_audio_is_an_error(server: SpeechServer) -> None:
    server.answer_with(200, "audio/mpeg", b"")
    async with open_engine(openai_entry(server), tier=Tier.STANDARD) as engine:
        with pytest.raises(NotAudioError, match="without any audio"):
            await engine.synthesize("Hi.", Collected())


async def test_a_server_that_is_down_says_to_start_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    entry = TTSEntry(type="xtts", name="xtts", base_url=f"http://127.0.0.1:{port}")
    async with open_engine(entry, tier=Tier.STANDARD) as engine:
        with pytest.raises(SpeechServerUnreachableError) as caught:
            await engine.synthesize("Hi.", Collected())
    assert str(caught.value) == (
        f"speech engine xtts (xtts) is not answering at http://127.0.0.1:{port}; start the "
        "server, or correct base_url in its tts entry"
    )


async def test_a_server_that_does_not_answer_in_time_times_out(server: SpeechServer) -> None:
    server.delay = 1.0
    async with open_engine(openai_entry(server, timeout=0.2), tier=Tier.STANDARD) as engine:
        with pytest.raises(SpeechServerUnreachableError, match=r"did not answer within 0\.2 s"):
            await engine.synthesize("Hi.", Collected())


async def test_a_private_chat_with_a_cloud_engine_is_refused_and_the_server_sees_nothing(
    server: SpeechServer,
) -> None:
    """The engine answers on loopback but is declared paid cloud: the tier decides by
    the declared locality, and the refusal comes before any connection."""
    cloud = openai_entry(server, locality="paid_cloud")
    for tier in (Tier.PRIVATE, Tier.EPHEMERAL):
        with pytest.raises(PolicyRefusedError) as caught:
            open_engine(cloud, tier=tier, api_key="sk-never-sent")
        assert caught.value.exit_code == 5
    assert server.requests == []
    async with open_engine(cloud, tier=Tier.STANDARD) as engine:  # Standard may use it
        await engine.synthesize("Hi.", Collected())
    assert len(server.requests) == 1


async def test_a_streamed_answer_is_spoken_sentence_by_sentence(server: SpeechServer) -> None:
    deltas = [
        "Here is **the** fix. Run",
        " it:\n```py\nprint(1)\n",
        "```\nThen [restart](",
        "https://x.org)!",
    ]

    async def stream() -> AsyncIterator[str]:
        for delta in deltas:
            yield delta

    audio: dict[int, Collected] = {}

    def sink_for(index: int, text: str) -> AudioSink:
        audio[index] = Collected()
        return audio[index]

    async with open_engine(openai_entry(server), tier=Tier.PRIVATE) as engine:
        count = await speak_stream(engine, stream(), sink_for)

    spoken = ["Here is the fix.", "Run it:", "Code block in Python, 1 line.", "Then restart!"]
    assert count == 4
    assert [r.body["input"] for r in server.requests] == spoken
    assert [audio[n].data for n in range(4)] == [fake_openai_audio("mp3", s) for s in spoken]


async def test_a_long_answer_is_spoken_in_parts_and_written_as_one_file(
    server: SpeechServer, tmp_path: Path
) -> None:
    """``hushchat speak``'s core with a stand-in session: 10,000 characters in 3 requests,
    WAV parts joined into one file."""
    from app.config import parse_config
    from app.speech.cli import speak

    answer = "This sentence is forty characters long. " * 250

    async def readable(reference: str) -> tuple[object, object]:
        return SimpleNamespace(tier=Tier.PRIVATE), SimpleNamespace(id=reference, content=answer)

    async def no_key(entry: object) -> None:
        return None

    config = parse_config(f"tts:\n  - {{type: xtts, name: x, base_url: '{server.url}'}}\n", "c", {})
    session = SimpleNamespace(
        service=SimpleNamespace(readable=readable),
        config=SimpleNamespace(config=config),
        api_keys=SimpleNamespace(resolve=no_key),
    )
    out = tmp_path / "long.wav"
    assert await speak(session, "m1", None, str(out)) == 0  # type: ignore[arg-type]
    assert [len(r.body["text"]) <= 4096 for r in server.requests] == [True, True, True]
    with wave.open(str(out)) as file:
        assert file.getnframes() == 3 * 2400

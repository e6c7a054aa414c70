"""Speech engines: text in, audio bytes out to a sink the caller gives (no files).

Two engines talk HTTP (httpx), both written from their servers' documented formats:

* ``openai``: the OpenAI speech API, ``POST {base_url}/audio/speech`` (``base_url``
  ends in ``/v1``), served by OpenAI, Kokoro-FastAPI, LocalAI and openedai-speech.
  Request: JSON ``{"model", "input", "voice", "response_format", "speed"}`` with
  ``Authorization: Bearer KEY`` when a key is set; ``response_format`` is one of mp3,
  opus, aac, flac, wav, pcm and ``speed`` 0.25 to 4.0. Answer: the audio bytes
  (``audio/mpeg``, ``audio/wav``, ...), streamed; an error is JSON
  ``{"error": {"message": ...}}`` (FastAPI servers: ``{"detail": ...}``). Voices:
  ``GET {base_url}/audio/voices`` -> ``{"voices": [...]}`` where the server has it
  (Kokoro-FastAPI), else OpenAI's documented voices.
* ``xtts``: the XTTS API server (github.com/daswer123/xtts-api-server, the format the
  original app spoke), ``POST {base_url}/tts_to_audio/`` with JSON
  ``{"text", "speaker_wav", "language"}``; answer ``audio/wav`` bytes; an error is
  HTTP 400 or 500 with ``{"detail": "..."}``. Voices: ``GET {base_url}/speakers_list``
  -> a JSON list of speaker names. Its speed is a server setting
  (``POST /set_tts_settings``), not part of the request, so ``speed`` is not sent.
  (Coqui's own demo server, ``GET /api/tts?text=...``, puts the text in the URL, where
  proxies and server logs keep it: not supported.)

The third type, ``system``, is the operating system's voices; the window implements
``SystemVoices`` with QtTextToSpeech (this package imports no Qt).

Every engine is made by ``open_engine``, which applies the chat's tier policy first:
a refused engine is never constructed, so it never receives a request. An on-prem
engine is reached directly, whatever proxy the environment names (as models are,
providers.base.network_route); cloud engines follow the environment's proxy settings.
The text is never logged; API keys are registered with the log redactor.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Protocol, Self

import httpx

from app.config import TTSEntry
from app.errors import ConfigError
from app.logs import register_secret
from app.speech.errors import (
    NotAudioError,
    SpeechError,
    SpeechServerRefusedError,
    SpeechServerUnreachableError,
)
from app.speech.policy import require_engine
from app.tiers import Tier
from providers import Locality
from providers.spec import is_local_url

__all__ = [
    "OPENAI_VOICES",
    "Audio",
    "AudioSink",
    "HTTPSpeechEngine",
    "OpenAISpeechEngine",
    "SpeechEngine",
    "SystemVoices",
    "XTTSSpeechEngine",
    "open_engine",
]

log = logging.getLogger(__name__)

#: Receives the audio as it arrives, chunk by chunk (a player's buffer, a file, memory).
AudioSink = Callable[[bytes], Awaitable[None]]

#: OpenAI's documented voices, for servers that do not list theirs.
OPENAI_VOICES: Final = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
)  # fmt: skip
#: Content types accepted as audio besides ``audio/*`` (some servers send raw PCM so).
_ALSO_AUDIO: Final = frozenset({"application/octet-stream"})
#: How much of an error answer is read for its message.
_ERROR_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class Audio:
    """What an engine sent to the sink: its content type and size in bytes."""

    media_type: str
    size: int


class SpeechEngine(Protocol):
    """An engine that turns text into audio; one instance per engine entry.

    The window speaks a streamed answer sentence by sentence: one ``synthesize`` call
    per sentence (``app.speech.reader``), each sentence's audio handed to the player as
    it arrives. Cancelling the task that awaits ``synthesize`` stops the request.
    """

    entry: TTSEntry

    async def synthesize(
        self, text: str, sink: AudioSink, *, audio_format: str | None = None
    ) -> Audio:
        """Speak ``text`` (plain text, see ``prepare_for_speech``) into ``sink``, in
        ``audio_format`` (None: the entry's ``audio_format``; the window asks for wav,
        which it can play; an xtts server answers wav whatever is asked)."""
        ...

    async def voices(self) -> list[str]:
        """The voices (speakers) the engine offers, for Settings."""
        ...

    async def aclose(self) -> None:
        """Close the engine's connections."""
        ...


class SystemVoices(Protocol):
    """The operating system's voices (speech-dispatcher, AVSpeechSynthesizer, WinRT/SAPI).

    Implemented in the window with QtTextToSpeech; always on-prem. Playback is the
    system's own, so there is no audio sink: ``say`` returns once the text has been
    spoken or ``stop`` was called.
    """

    async def say(self, text: str, *, voice: str | None, rate: float) -> None:
        """Speak ``text`` with ``voice`` (None: the system's default) at ``rate``
        (1.0: normal, as the entry's ``speed``)."""
        ...

    def stop(self) -> None:
        """Stop speaking now; a pending ``say`` returns."""
        ...

    def voices(self) -> list[str]:
        """The system's voice names."""
        ...


def open_engine(
    entry: TTSEntry,
    *,
    tier: Tier,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> HTTPSpeechEngine:
    """The engine of ``entry`` for a chat of ``tier``.

    PolicyRefusedError (exit 5) before anything is built when the tier may not use the
    engine; ConfigError for a ``system`` entry (the window plays those, through
    ``SystemVoices``). ``transport`` replaces the network (tests).
    """
    require_engine(tier, entry)
    engine_type = _ENGINE_TYPES.get(entry.type)
    if engine_type is None:
        raise ConfigError(
            f"{entry.name}: system voices play in the window only; choose an openai or xtts "
            "engine (--engine NAME) to write audio to a file"
        )
    return engine_type(entry, api_key=api_key, transport=transport)


class HTTPSpeechEngine:
    """What both HTTP engines share: the client, errors, streaming audio to the sink."""

    type_name: ClassVar[str] = ""

    def __init__(
        self,
        entry: TTSEntry,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if entry.base_url is None:  # validated by Config; kept for type narrowing
            raise ConfigError(f"tts {entry.name}: base_url is required for {entry.type}")
        self.entry = entry
        self.base_url = entry.base_url
        register_secret(api_key)
        on_prem = entry.effective_locality is Locality.ON_PREM or is_local_url(self.base_url)
        verify: Any = True
        if on_prem and transport is None:
            # Ignoring the environment's proxies must not drop a private CA named in
            # SSL_CERT_FILE / SSL_CERT_DIR (as providers.base does).
            verify = httpx.create_ssl_context(trust_env=True)
        self._client = httpx.AsyncClient(
            transport=transport,
            trust_env=not on_prem,
            verify=verify,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(entry.timeout),
            follow_redirects=False,  # a redirected POST is not the same request
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def synthesize(
        self, text: str, sink: AudioSink, *, audio_format: str | None = None
    ) -> Audio:
        raise NotImplementedError

    async def voices(self) -> list[str]:
        raise NotImplementedError

    async def _post_audio(self, path: str, body: dict[str, Any], sink: AudioSink) -> Audio:
        """POST ``body`` to ``path`` and stream the audio answer into ``sink``."""
        url = f"{self.base_url}{path}"
        size = 0
        try:
            async with self._client.stream("POST", url, json=body) as response:
                await self._check(response)
                media_type = _media_type(response)
                async for chunk in response.aiter_bytes():
                    if chunk:
                        size += len(chunk)
                        await sink(chunk)
        except httpx.TimeoutException as error:
            raise SpeechServerUnreachableError(
                f"{self._label()} did not answer within {self.entry.timeout:g} s; check that "
                f"the server runs, or raise timeout: in its tts entry"
            ) from error
        except httpx.ConnectError as error:
            raise SpeechServerUnreachableError(
                f"{self._label()} is not answering at {self.base_url}; start the server, or "
                "correct base_url in its tts entry"
            ) from error
        except httpx.TransportError as error:
            raise SpeechError(
                f"{self._label()}: the connection broke off ({type(error).__name__}) after "
                f"{size:,} bytes of audio; try again"
            ) from error
        if size == 0:
            raise NotAudioError(f"{self._label()} answered without any audio; try again")
        log.info("speech engine %s: %d bytes of %s", self.entry.name, size, media_type)
        return Audio(media_type, size)

    async def _get_json(self, path: str) -> Any:
        """GET ``path`` and its JSON answer."""
        url = f"{self.base_url}{path}"
        try:
            response = await self._client.get(url)
        except httpx.TimeoutException as error:
            raise SpeechServerUnreachableError(
                f"{self._label()} did not answer within {self.entry.timeout:g} s"
            ) from error
        except httpx.TransportError as error:
            raise SpeechServerUnreachableError(
                f"{self._label()} is not answering at {self.base_url}; start the server, or "
                "correct base_url in its tts entry"
            ) from error
        await self._check(response)
        try:
            return response.json()
        except ValueError as error:
            raise SpeechError(f"{self._label()}: {path} did not answer with JSON") from error

    async def _check(self, response: httpx.Response) -> None:
        """Raise the error an unsuccessful answer means, with the server's own message."""
        if response.is_success:
            return
        detail = _error_detail(await _read_some(response))
        status = response.status_code
        if status in (401, 403):
            advice = "check api_key in its tts entry (the key, or the server's access rules)"
        elif status == 404:
            advice = f"is {self.base_url} the server's API address? ({self._base_url_hint()})"
        elif status == 429:
            advice = "the server is busy or over its quota; wait, then try again"
        elif 400 <= status < 500:
            advice = "check model, voice, format and language in its tts entry"
        else:
            advice = "the server failed; see its log, then try again"
        said = f": {detail}" if detail else ""
        raise SpeechServerRefusedError(
            f"{self._label()} answered HTTP {status}{said}; {advice}", status
        )

    def _label(self) -> str:
        return f"speech engine {self.entry.name} ({self.type_name})"

    def _base_url_hint(self) -> str:
        return ""


class OpenAISpeechEngine(HTTPSpeechEngine):
    """An OpenAI-compatible speech server: ``POST {base_url}/audio/speech``."""

    type_name = "openai"

    async def synthesize(
        self, text: str, sink: AudioSink, *, audio_format: str | None = None
    ) -> Audio:
        body = {
            "model": self.entry.model or "tts-1",
            "input": text,
            "voice": self.entry.voice or "alloy",
            "response_format": audio_format or self.entry.audio_format,
            "speed": self.entry.speed,
        }
        return await self._post_audio("/audio/speech", body, sink)

    async def voices(self) -> list[str]:
        try:
            answer = await self._get_json("/audio/voices")
        except SpeechServerRefusedError as error:
            if error.status in (404, 405):
                return list(OPENAI_VOICES)  # OpenAI itself lists none
            raise
        voices = answer.get("voices") if isinstance(answer, dict) else answer
        return [str(name) for name in voices] if isinstance(voices, list) else []

    def _base_url_hint(self) -> str:
        return "it usually ends in /v1, e.g. http://127.0.0.1:8880/v1"


class XTTSSpeechEngine(HTTPSpeechEngine):
    """An XTTS API server: ``POST {base_url}/tts_to_audio/`` (daswer123/xtts-api-server)."""

    type_name = "xtts"

    async def synthesize(
        self, text: str, sink: AudioSink, *, audio_format: str | None = None
    ) -> Audio:
        # The XTTS API server answers WAV only: ``audio_format`` cannot change that.
        body: dict[str, Any] = {"text": text, "language": self.entry.language}
        if self.entry.voice:
            body["speaker_wav"] = self.entry.voice
        return await self._post_audio("/tts_to_audio/", body, sink)

    async def voices(self) -> list[str]:
        answer = await self._get_json("/speakers_list")
        return [str(name) for name in answer] if isinstance(answer, list) else []

    def _base_url_hint(self) -> str:
        return "the server's address without a path, e.g. http://127.0.0.1:8020"


_ENGINE_TYPES: dict[str, type[HTTPSpeechEngine]] = {
    "openai": OpenAISpeechEngine,
    "xtts": XTTSSpeechEngine,
}


async def _read_some(response: httpx.Response) -> bytes:
    """Up to ``_ERROR_BYTES`` of an error answer (a streamed one is not read whole)."""
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= _ERROR_BYTES:
                break
    except httpx.StreamConsumed:
        data = response.content
    except httpx.TransportError:
        log.info("the error answer of a speech server broke off")
    return data[:_ERROR_BYTES]


def _error_detail(data: bytes) -> str:
    """The message in an error answer: OpenAI's ``error.message``, FastAPI's ``detail``,
    or the start of a plain text answer; one line, at most 300 characters."""
    text = data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    message: Any = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message is None:
            message = parsed.get("detail") or parsed.get("message")
    if isinstance(message, list):  # FastAPI validation errors
        message = "; ".join(str(item.get("msg", item)) for item in message if item)
    if message is None:
        message = "" if text.lstrip().startswith("<") else text  # an HTML error page
    return " ".join(str(message).split())[:300]


def _media_type(response: httpx.Response) -> str:
    """The answer's content type; NotAudioError unless it is audio."""
    header = str(response.headers.get("content-type", ""))
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type.startswith("audio/") or media_type in _ALSO_AUDIO:
        return media_type
    raise NotAudioError(
        f"speech server at {response.request.url.copy_with(query=None)} answered with "
        f"{media_type or 'no content type'}, not audio; check base_url and type in its tts "
        "entry (is it a speech server's API address?)"
    )

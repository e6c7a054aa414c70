"""A loopback speech server written from the documented request and response formats.

No real OpenAI-compatible or XTTS speech server installs from the package registries
without downloading a voice model when it runs (checked 2026-12-01: fastkokoro fetches
its ONNX model from the Hugging Face hub, local-tts-studio downloads Piper voices, the
XTTS API server downloads the XTTS model), so the HTTP engines are tested against this
one. It answers as the documentation says the real ones do:

* ``POST /v1/audio/speech`` (OpenAI's speech API, also Kokoro-FastAPI, LocalAI and
  openedai-speech): JSON ``model``, ``input``, ``voice`` required; ``response_format``
  one of mp3, opus, aac, flac, wav, pcm (default mp3); ``speed`` 0.25 to 4.0; the
  answer is the audio with its content type (mp3: ``audio/mpeg``), sent in several
  chunks; errors are JSON ``{"error": {"message", "type"}}``. ``GET /v1/audio/voices``
  answers ``{"voices": [...]}`` (Kokoro-FastAPI).
* ``POST /tts_to_audio/`` (daswer123/xtts-api-server): JSON ``text``, ``language``
  (required) and ``speaker_wav`` (optional); the answer is a WAV file
  (``audio/wav``); an unsupported language is HTTP 400 ``{"detail": "..."}``.
  ``GET /speakers_list`` answers a JSON list of names.

Every request is recorded (method, path, headers, JSON body) in ``requests``. The
"audio" is a real WAV for XTTS (silence, readable with ``wave``), and for OpenAI a
header naming the format followed by the input's bytes, so a test can tell what was
spoken. ``answer_with`` makes the next answers fixed (status, content type, body),
``delay`` holds every answer back (timeouts).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import threading
import time
import wave
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

OPENAI_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
XTTS_LANGUAGES = {"en", "de", "fr", "es", "it", "pt", "pl", "nl", "ru", "ja", "zh-cn"}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def fake_openai_audio(response_format: str, text: str) -> bytes:
    """What the server answers for ``text``: the format's name, then the text."""
    return f"FAKE-{response_format.upper()}\n".encode() + text.encode("utf-8")


def silent_wav(frames: int = 2400) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(24000)
        file.writeframes(b"\0\0" * frames)
    return buffer.getvalue()


class SpeechServer:
    """The server on 127.0.0.1 at a free port, in a thread (a context manager)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.fixed: tuple[int, str, bytes] | None = None
        self.delay = 0.0
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.connections = []
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def answer_with(self, status: int, content_type: str, body: bytes) -> None:
        """Answer every request so from now on."""
        self.fixed = (status, content_type, body)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        for connection in self._httpd.connections:  # kept alive: gone with the server
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    connections: list[socket.socket]

    def get_request(self) -> tuple[socket.socket, Any]:
        """Each connection is kept, so that stopping the server ends its keep-alive ones
        (as a server that goes down does)."""
        request = super().get_request()
        self.connections.append(request[0])
        return request

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout test) is expected; anything else is not."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: ClassVar[SpeechServer]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read ``requests``."""

    def do_GET(self) -> None:
        self._record(None)
        if self._fixed():
            return
        if self.path == "/v1/audio/voices":
            self._json(200, {"voices": ["af_heart", "am_adam"]})
        elif self.path == "/speakers_list":
            self._json(200, ["female", "male"])
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._record(body)
        if self._fixed():
            return
        if self.path == "/v1/audio/speech":
            self._openai(body)
        elif self.path == "/tts_to_audio/":
            self._xtts(body)
        else:
            self._json(404, {"detail": "Not Found"})

    def _openai(self, body: Any) -> None:
        if not isinstance(body, dict) or any(k not in body for k in ("model", "input", "voice")):
            self._openai_error(400, "model, input and voice are required")
            return
        response_format = body.get("response_format", "mp3")
        speed = body.get("speed", 1.0)
        if response_format not in OPENAI_TYPES:
            self._openai_error(400, f"Invalid response_format: {response_format}")
        elif not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            self._openai_error(400, "speed must be between 0.25 and 4.0")
        elif body["voice"] == "nobody":
            self._openai_error(400, "Voice nobody not found")
        else:
            audio = fake_openai_audio(response_format, str(body["input"]))
            self._audio(OPENAI_TYPES[response_format], audio)

    def _xtts(self, body: Any) -> None:
        if not isinstance(body, dict) or "text" not in body or "language" not in body:
            self._json(422, {"detail": [{"msg": "Field required"}]})
        elif str(body["language"]).lower() not in XTTS_LANGUAGES:
            self._json(400, {"detail": "Language code sent is either unsupported or misspelled."})
        else:
            self._audio("audio/wav", silent_wav())

    def _record(self, body: Any) -> None:
        self.owner.requests.append(
            Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if self.owner.delay:
            time.sleep(self.owner.delay)

    def _fixed(self) -> bool:
        if self.owner.fixed is None:
            return False
        status, content_type, body = self.owner.fixed
        self._send(status, content_type, body)
        return True

    def _openai_error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def _json(self, status: int, data: Any) -> None:
        self._send(status, "application/json", json.dumps(data).encode())

    def _audio(self, content_type: str, data: bytes) -> None:
        """Sent in three writes, as a server streaming its audio would."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        third = max(1, len(data) // 3)
        for start in range(0, len(data), third):
            self.wfile.write(data[start : start + third])
            self.wfile.flush()

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

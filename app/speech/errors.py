"""The speech engines' errors, each saying what to do::

    ProviderFailedError (app.errors)   exit 3
    └── SpeechError                     a speech engine failed
        ├── SpeechServerUnreachableError   not answering: down, wrong address, timed out
        ├── SpeechServerRefusedError       answered 4xx or 5xx (``status``)
        └── NotAudioError                  answered with something that is not audio

A tier refusing an engine is ``app.errors.PolicyRefusedError`` (exit 5), as for models.
"""

from __future__ import annotations

from app.errors import ProviderFailedError

__all__ = [
    "NotAudioError",
    "SpeechError",
    "SpeechServerRefusedError",
    "SpeechServerUnreachableError",
]


class SpeechError(ProviderFailedError):
    """A speech engine could not read the text aloud."""


class SpeechServerUnreachableError(SpeechError):
    """The speech server did not answer (refused connection, unknown host, timeout)."""


class SpeechServerRefusedError(SpeechError):
    """The speech server answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotAudioError(SpeechError):
    """The speech server answered, but not with audio (a web page, JSON)."""

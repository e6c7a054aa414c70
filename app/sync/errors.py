"""What can go wrong while syncing, as the engine needs to tell it apart.

The transport (``app/sync/client.py``) raises these; the engine (``app/sync/engine.py``)
decides: retry with backoff, wait as told, or stop and show the user they are signed out.
"""

from __future__ import annotations

from app.errors import ExitCode, HushchatError


class SyncError(HushchatError):
    """Syncing failed; the message says what to do. Commands exit with 3, as for a
    model server that failed: a server the app depends on did not do its part."""

    exit_code = ExitCode.PROVIDER


class SyncOfflineError(SyncError):
    """The server cannot be reached (network down, refused, reset, timed out): retry later."""


class SyncRetryLaterError(SyncError):
    """The server asked to wait (429 or 503 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SyncAuthError(SyncError):
    """The server refused this device (401/403: signed out, token revoked, device revoked).
    Syncing stops until the user signs in again."""


class SyncProtocolError(SyncError):
    """The server answered something this client does not understand (a bug or a newer
    server): logged, and syncing stops with the reason."""

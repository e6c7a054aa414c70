"""The one error of the attachments package, and why it was raised.

Every file the package refuses raises ``AttachmentError`` (a ``UsageError``: the CLI
exits 2), whose ``str()`` names the file, says what is wrong and what to do::

    HushchatError
    └── UsageError
        └── AttachmentError     reason: a ``RefusalReason`` (unreadable, empty, too large,
                                unsupported type, damaged, encrypted, zip bomb, no text)

Callers that need to tell the cases apart (tests, the window choosing an icon) read
``reason``; nobody parses the message.
"""

from __future__ import annotations

from enum import StrEnum

from app.errors import UsageError


class RefusalReason(StrEnum):
    """Why a file cannot be attached."""

    UNREADABLE = "unreadable"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    DAMAGED = "damaged"
    ENCRYPTED = "encrypted"
    ZIP_BOMB = "zip_bomb"
    NO_TEXT = "no_text"


class AttachmentError(UsageError):
    """A file cannot be attached; the message says which, why and what to do."""

    def __init__(self, message: str, *, reason: RefusalReason) -> None:
        super().__init__(message)
        self.reason = reason

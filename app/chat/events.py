"""Typed events of a chat turn, and change notifications for views.

A turn (send, regenerate, edit) is an async iterator of ``TurnEvent``. Views
that show lists of chats subscribe to ``ChangeBus`` and update just the rows
named in a ``ChatChanged`` instead of refreshing everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.store.models import Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """The user's message is saved and the request is on its way.

    Sent again (same ``assistant_message_id``) if the server refused the context as too
    long and the turn is retried with fewer messages.

    ``dropped`` older messages did not fit the model's context and were not sent.
    """

    chat_id: str
    user_message: Message | None
    assistant_message_id: str
    dropped: int
    context_tokens: int


@dataclass(frozen=True, slots=True)
class TurnDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TurnReasoning:
    text: str


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """The answer as saved: status complete, stopped, or error (``error`` says why)."""

    message: Message
    error: str | None = None
    error_kind: str | None = None


TurnEvent = TurnStarted | TurnDelta | TurnReasoning | TurnFinished


@dataclass(frozen=True, slots=True)
class ChatChanged:
    """Something about one chat changed: ``what`` is created, renamed, updated,
    messages, moved, deleted, restored or purged."""

    chat_id: str
    what: str


class ChangeBus:
    """Synchronous fan-out of ``ChatChanged`` to subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[ChatChanged], None]] = []

    def subscribe(self, callback: Callable[[ChatChanged], None]) -> Callable[[], None]:
        """Call ``callback`` for every change; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, chat_id: str, what: str) -> None:
        event = ChatChanged(chat_id, what)
        for callback in list(self._subscribers):
            callback(event)

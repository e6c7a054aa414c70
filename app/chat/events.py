"""Typed events of a chat turn, and change notifications for views.

A turn (send, regenerate, edit) is an async iterator of ``TurnEvent``. Views
that show chats subscribe to ``ChangeBus`` and update just the rows named in a
``ChatChanged`` (one subclass per kind of change) instead of refreshing everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.store.models import Message, Tier

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
    """Something about one chat changed; the subclass says what."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class ChatCreated(ChatChanged):
    """A new chat exists."""


@dataclass(frozen=True, slots=True)
class ChatRenamed(ChatChanged):
    """The title changed (by the user or the automatic title)."""


@dataclass(frozen=True, slots=True)
class ChatUpdated(ChatChanged):
    """Settings changed: system prompt, memory, provider, model or pinned."""


@dataclass(frozen=True, slots=True)
class MessagesChanged(ChatChanged):
    """Messages were added, changed, deleted, or another version was selected."""


@dataclass(frozen=True, slots=True)
class ChatMoved(ChatChanged):
    """The chat moved to another tier."""

    tier: Tier


@dataclass(frozen=True, slots=True)
class ChatDeleted(ChatChanged):
    """The chat is hidden; its delete can still be undone."""


@dataclass(frozen=True, slots=True)
class ChatRestored(ChatChanged):
    """A delete was undone."""


@dataclass(frozen=True, slots=True)
class ChatPurged(ChatChanged):
    """The chat is gone for good."""


class ChangeBus:
    """Synchronous fan-out of ``ChatChanged`` events to subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[ChatChanged], None]] = []

    def subscribe(self, callback: Callable[[ChatChanged], None]) -> Callable[[], None]:
        """Call ``callback`` for every change; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: ChatChanged) -> None:
        for callback in list(self._subscribers):
            callback(event)

"""The store's records: chats, messages, pages of a thread, search hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.tiers import Tier

__all__ = [
    "DEFAULT_TITLE",
    "Chat",
    "ChatRecord",
    "ChatSummary",
    "Message",
    "MessageStatus",
    "SearchHit",
    "ThreadPage",
    "Tier",
    "TitleSource",
]


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"  # still streaming, or the app stopped mid-answer
    STOPPED = "stopped"  # the user pressed Stop
    ERROR = "error"  # the provider failed; ``error`` says why


class TitleSource(StrEnum):
    DEFAULT = "default"  # "New Chat"
    AUTO = "auto"  # generated after the first answer
    USER = "user"  # set by the user: always wins


DEFAULT_TITLE = "New Chat"


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    title: str
    title_source: TitleSource
    tier: Tier
    system_prompt: str
    memory: str
    provider: str | None
    model: str | None
    pinned: bool
    active_leaf_id: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    chat_id: str
    parent_id: str | None
    role: str
    content: str
    status: MessageStatus
    created_at: float
    reasoning: str = ""
    error: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    duration_ms: int | None = None
    # When this version was last shown: the newest sibling wins when the thread is walked.
    selected_at: float = 0.0
    # Versions: this message is number ``version`` of ``versions`` siblings.
    version: int = 1
    versions: int = 1


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A whole chat with every message version: what imports write and moves copy."""

    chat: Chat
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class ThreadPage:
    """Consecutive messages of a chat's active thread, oldest first.

    ``has_older`` says whether messages before ``messages[0]`` exist; pass
    ``messages[0].id`` as ``before`` to get them.
    """

    messages: list[Message]
    has_older: bool


@dataclass(frozen=True, slots=True)
class SearchHit:
    chat_id: str
    chat_title: str
    tier: Tier
    message_id: str | None  # None when the title matched
    snippet: str  # the matched words are in [brackets]
    rank: float  # lower sorts first (newer)


@dataclass(frozen=True, slots=True)
class ChatSummary:
    """What the sidebar needs of a chat."""

    id: str
    title: str
    tier: Tier
    pinned: bool
    updated_at: float
    provider: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

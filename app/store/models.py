"""The store's records: chats, messages, attachments, pages of a thread, search hits."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from app.tiers import Tier

__all__ = [
    "DEFAULT_TITLE",
    "Attachment",
    "Chat",
    "ChatParams",
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

# The most stop sequences a chat keeps (OpenAI accepts 4; llama.cpp and Ollama more).
MAX_STOP_SEQUENCES: Final = 8


@dataclass(frozen=True, slots=True)
class ChatParams:
    """A chat's own model parameters; None (every field by default) means "use the
    provider's default" (the config entry's, else the server's).

    Stored as a JSON object in ``chats.params`` and synced as one field of the chat
    record; only the fields that are set are written, and a value this version does not
    understand is ignored on reading (a newer device may send more).
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    context_size: int | None = None
    stop: tuple[str, ...] | None = None
    #: Read its answers aloud as they arrive (the window's auto-read); None: off. Not a
    #: model parameter: ``effective_params`` never passes it to a provider.
    read_aloud: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as a JSON object."""
        data: dict[str, Any] = {}
        for name in ("temperature", "top_p", "max_tokens", "context_size"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.stop is not None:
            data["stop"] = list(self.stop)
        if self.read_aloud:
            data["read_aloud"] = True
        return data

    @classmethod
    def from_json(cls, data: Any) -> ChatParams:
        """Parameters from a stored or synced JSON object; out-of-range or malformed
        values (and anything that is not an object) read as "provider default"."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            temperature=_number(data.get("temperature"), 0.0, 2.0),
            top_p=_number(data.get("top_p"), 0.0, 1.0, open_low=True),
            max_tokens=_count(data.get("max_tokens")),
            context_size=_count(data.get("context_size")),
            stop=_stop(data.get("stop")),
            read_aloud=True if data.get("read_aloud") is True else None,
        )

    def to_text(self) -> str:
        """How the ``chats.params`` column stores them."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | None) -> ChatParams:
        """Parameters from the ``chats.params`` column (not JSON: the provider's defaults)."""
        try:
            return cls.from_json(json.loads(text or "{}"))
        except ValueError:
            return cls()

    @property
    def is_default(self) -> bool:
        return self == ChatParams()


def _number(value: Any, low: float, high: float, *, open_low: bool = False) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number > high or number < low or (open_low and number == low):
        return None
    return number


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _stop(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list | tuple):
        return None
    stops = tuple(s for s in value if isinstance(s, str) and s)
    return stops[:MAX_STOP_SEQUENCES]


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
    params: ChatParams = field(default_factory=ChatParams)


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
    # An answer's excerpt labels it was given ("report.pdf, p. 3"); empty otherwise.
    sources: tuple[str, ...] = ()
    # Versions: this message is number ``version`` of ``versions`` siblings.
    version: int = 1
    versions: int = 1


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message; its bytes are the blob ``sha256`` (shared by every
    attachment with the same content) and are read with ``ChatStore.read_attachment``."""

    id: str
    message_id: str
    chat_id: str
    name: str
    media_type: str
    size: int
    sha256: str
    position: int  # order among the message's attachments, from 0
    created_at: float


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A whole chat with every message version: what imports write and moves copy."""

    chat: Chat
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class ThreadPage:
    """Consecutive messages of a chat's active thread, oldest first.

    ``has_older`` says whether messages before ``messages[0]`` exist; pass
    ``messages[0].id`` as ``before`` to get them. ``has_newer`` says whether the thread
    goes on after ``messages[-1]`` (a window around a search hit); pass
    ``messages[-1].id`` as ``after`` to get the next newer page.
    """

    messages: list[Message]
    has_older: bool
    has_newer: bool = False


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

"""Fitting a chat into a model's context window.

The system prompt and the chat's memory are always sent; the history is added
newest first until the estimated size reaches the budget (context size minus
the room kept for the answer); older messages are dropped and counted, so the
UI can say "N older messages not sent to the model". The estimate starts
at about 4 UTF-8 bytes per token (plus a few tokens of framing per message);
the chat service refines the ratio per provider from the token counts servers
report, and shrinks it further when a server still refuses a context as too long.

The context size is the one the server states (``ContextWindow.source`` "server",
learned through ``providers.base.context_length``) or else the entry's configured
``context_size`` ("config"); ``measure_use`` says what a draft would take of it before
anything is sent, so the window can refuse a message that cannot fit and say by how much.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.errors import ExitCode, HushchatError
from app.store.models import Message, MessageStatus
from providers import ChatMessage, ImageInput, Role

MESSAGE_OVERHEAD = 4
DEFAULT_ANSWER_RESERVE = 1024
DEFAULT_TOKENS_PER_BYTE = 0.25


class ContextOverflowError(HushchatError):
    """The newest message alone does not fit the model's context window."""

    exit_code = ExitCode.PROVIDER


def estimate_tokens(text: str, tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE) -> int:
    """Estimated tokens of ``text``: its UTF-8 size times ``tokens_per_byte``, rounded up."""
    size = len(text.encode("utf-8"))
    return math.ceil(size * tokens_per_byte)


def answer_reserve(context_size: int, max_tokens: int | None) -> int:
    """Tokens kept free for the answer."""
    if max_tokens is not None:
        return min(max_tokens, context_size // 2)
    return min(DEFAULT_ANSWER_RESERVE, context_size // 4)


@dataclass(frozen=True)
class Context:
    messages: list[ChatMessage]
    memory: str
    dropped: int
    estimated_tokens: int


def build_context(
    system_prompt: str,
    memory: str,
    history: Sequence[Message],
    *,
    context_size: int,
    max_tokens: int | None = None,
    tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE,
    images: Mapping[str, Sequence[ImageInput]] | None = None,
) -> Context:
    """The messages to send: system prompt, then as much recent history as fits.

    ``images`` (by message id) go with those user messages (attachments for a model that
    accepts images); their text (inline attachments, excerpts) is already in ``content``.
    """

    def estimate(text: str) -> int:
        return estimate_tokens(text, tokens_per_byte)

    usable = [m for m in history if not (m.status == MessageStatus.ERROR and not m.content)]
    fixed = 0
    if system_prompt:
        fixed += estimate(system_prompt) + MESSAGE_OVERHEAD
    if memory:
        fixed += estimate(memory) + MESSAGE_OVERHEAD
    budget = context_size - answer_reserve(context_size, max_tokens) - fixed
    chosen: list[Message] = []
    used = 0
    for message in reversed(usable):
        cost = estimate(message.content) + MESSAGE_OVERHEAD
        if used + cost > budget:
            break
        chosen.append(message)
        used += cost
    if usable and not chosen:
        newest = usable[-1]
        raise ContextOverflowError(
            f"the message is about {estimate(newest.content)} tokens, more than fits the "
            f"model's context of {context_size} tokens with room for an answer; shorten it or "
            "choose a model with a larger context"
        )
    chosen.reverse()
    messages = []
    if system_prompt:
        messages.append(ChatMessage(role=Role.SYSTEM, content=system_prompt))
    images = images or {}
    messages.extend(
        ChatMessage(
            role=Role(m.role),
            content=m.content,
            images=list(images.get(m.id, ())) if m.role == Role.USER else [],
        )
        for m in chosen
    )
    return Context(messages, memory, len(usable) - len(chosen), fixed + used)


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """The context size turns are fitted into, and where it comes from."""

    size: int
    #: "server": the server stated it; "config": the entry's ``context_size`` (the server
    #: did not say).
    source: Literal["server", "config"]

    def describe(self) -> str:
        """``"512 tokens (reported by the server)"`` or ``"4,096 tokens (configured)"``."""
        where = "reported by the server" if self.source == "server" else "configured"
        return f"{self.size:,} tokens ({where})"


@dataclass(frozen=True, slots=True)
class ContextUse:
    """What one turn takes of the context window, in estimated tokens.

    ``history`` is the part of the earlier messages that fits (older ones are dropped,
    ``dropped`` of them); ``reserve`` is kept for the answer. ``total`` never counts
    more history than is sent. ``over`` is by how many tokens the draft, the system
    prompt, the memory and the reserve together exceed the window (0: it fits).
    ``more_older``: the chat has messages before the ones measured, not sent either and
    not counted in ``dropped`` (counting them would read the whole thread).
    """

    window: ContextWindow
    system: int
    memory: int
    history: int
    dropped: int
    draft: int
    reserve: int
    tokens_per_byte: float
    more_older: bool = False

    @property
    def total(self) -> int:
        return self.system + self.memory + self.history + self.draft + self.reserve

    @property
    def over(self) -> int:
        return max(0, self.system + self.memory + self.draft + self.reserve - self.window.size)

    @property
    def fits(self) -> bool:
        return self.over == 0

    def with_draft(self, draft: str) -> ContextUse:
        """The same use with ``draft`` as the message being written.

        History is left as measured (it may in truth lose an old message to a longer
        draft; the meter is an estimate and ``fits`` does not depend on it)."""
        cost = estimate_tokens(draft, self.tokens_per_byte) + MESSAGE_OVERHEAD if draft else 0
        return dataclasses.replace(self, draft=cost)

    def overflow_message(self) -> str:
        """Why the draft cannot be sent, and what to do."""
        fixed = (("the system prompt", self.system), ("the memory", self.memory))
        alongside = [name for name, tokens in fixed if tokens]
        alongside.append(f"{self.reserve:,} tokens kept for the answer")
        together = ", ".join(alongside[:-1]) + (" and " if len(alongside) > 1 else "")
        return (
            f"This message is about {self.draft:,} tokens; with {together}{alongside[-1]} "
            "it needs about "
            f"{self.system + self.memory + self.draft + self.reserve:,}, more than the model's "
            f"context of {self.window.describe()}. Shorten it by about {self.over:,} tokens "
            "(roughly "
            f"{max(1, math.ceil(self.over / max(self.tokens_per_byte, 0.01))):,} characters), "
            "or choose a model with a larger context."
        )


def measure_use(
    system_prompt: str,
    memory: str,
    history: Sequence[Message],
    draft: str,
    *,
    window: ContextWindow,
    max_tokens: int | None = None,
    tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE,
) -> ContextUse:
    """What sending ``draft`` after ``history`` would take of ``window`` (see ``ContextUse``).

    History is counted as ``build_context`` sends it: newest first while it fits beside
    the system prompt, the memory, the draft and the answer's reserve; an answer counts
    like any message (what the model said is sent back with the next question).
    """

    def estimate(text: str) -> int:
        return estimate_tokens(text, tokens_per_byte) + MESSAGE_OVERHEAD

    size = window.size
    system = estimate(system_prompt) if system_prompt else 0
    memory_cost = estimate(memory) if memory else 0
    draft_cost = estimate(draft) if draft else 0
    reserve = answer_reserve(size, max_tokens)
    budget = size - reserve - system - memory_cost - draft_cost
    usable = [m for m in history if not (m.status == MessageStatus.ERROR and not m.content)]
    used = 0
    sent = 0
    for message in reversed(usable):
        cost = estimate(message.content)
        if used + cost > budget:
            break
        used += cost
        sent += 1
    return ContextUse(
        window, system, memory_cost, used, len(usable) - sent, draft_cost, reserve,
        tokens_per_byte,
    )  # fmt: skip

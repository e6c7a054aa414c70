"""Fitting a chat into a model's context window.

The system prompt and the chat's memory are always sent; the history is added
newest first until the estimated size reaches the budget (context size minus
the room kept for the answer); older messages are dropped and counted, so the
UI can say "N older messages not sent to the model". The estimate starts
at about 4 UTF-8 bytes per token (plus a few tokens of framing per message);
the chat service refines the ratio per provider from the token counts servers
report, and shrinks it further when a server still refuses a context as too long.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import ExitCode, HushchatError
from app.store.models import Message, MessageStatus
from providers import ChatMessage, Role

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
) -> Context:
    """The messages to send: system prompt, then as much recent history as fits."""

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
    messages.extend(ChatMessage(role=Role(m.role), content=m.content) for m in chosen)
    return Context(messages, memory, len(usable) - len(chosen), fixed + used)

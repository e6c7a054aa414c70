"""Fitting a chat into a model's context window.

The system prompt and the chat's memory are always sent; the history is added
newest first until the estimated size reaches the budget (context size minus
the room kept for the answer); older messages are dropped and counted, so the
UI can say "N older messages not sent to the model". The estimate is
deliberately conservative (about 4 UTF-8 bytes per token, plus a few tokens of
framing per message): a little unused room is cheaper than a refused request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import ExitCode, HushchatError
from app.store.models import Message, MessageStatus
from providers import ChatMessage, Role

MESSAGE_OVERHEAD = 4
DEFAULT_ANSWER_RESERVE = 1024


class ContextOverflowError(HushchatError):
    """The newest message alone does not fit the model's context window."""

    exit_code = ExitCode.PROVIDER


def estimate_tokens(text: str) -> int:
    """A conservative token estimate: ceil(UTF-8 bytes / 4), at least 1 for non-empty text."""
    size = len(text.encode("utf-8"))
    return (size + 3) // 4


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
) -> Context:
    """The messages to send: system prompt, then as much recent history as fits."""
    usable = [m for m in history if not (m.status == MessageStatus.ERROR and not m.content)]
    fixed = 0
    if system_prompt:
        fixed += estimate_tokens(system_prompt) + MESSAGE_OVERHEAD
    if memory:
        fixed += estimate_tokens(memory) + MESSAGE_OVERHEAD
    budget = context_size - answer_reserve(context_size, max_tokens) - fixed
    chosen: list[Message] = []
    used = 0
    for message in reversed(usable):
        cost = estimate_tokens(message.content) + MESSAGE_OVERHEAD
        if used + cost > budget:
            break
        chosen.append(message)
        used += cost
    if usable and not chosen:
        newest = usable[-1]
        raise ContextOverflowError(
            f"the message is about {estimate_tokens(newest.content)} tokens, more than fits the "
            f"model's context of {context_size} tokens with room for an answer; shorten it or "
            "choose a model with a larger context"
        )
    chosen.reverse()
    messages = []
    if system_prompt:
        messages.append(ChatMessage(role=Role.SYSTEM, content=system_prompt))
    messages.extend(ChatMessage(role=Role(m.role), content=m.content) for m in chosen)
    return Context(messages, memory, len(usable) - len(chosen), fixed + used)

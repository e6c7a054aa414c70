"""Fitting history into the context window."""

from __future__ import annotations

import pytest

from app.chat.context import ContextOverflowError, build_context, estimate_tokens
from app.store.models import Message, MessageStatus
from providers import Role


def msg(i: int, role: str, content: str, status: MessageStatus = MessageStatus.COMPLETE) -> Message:
    return Message(f"m{i}", "c", None, role, content, status, float(i))


def test_estimate_is_conservative_for_multibyte_text() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("日本語") == 3  # 9 bytes


def test_everything_fits() -> None:
    history = [msg(0, "user", "hi"), msg(1, "assistant", "hello"), msg(2, "user", "how?")]
    context = build_context("be nice", "likes tea", history, context_size=4096)
    assert [m.role for m in context.messages] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    assert context.memory == "likes tea"
    assert context.dropped == 0


def test_oldest_dropped_first_and_counted() -> None:
    history = [msg(i, "user" if i % 2 == 0 else "assistant", "word " * 40) for i in range(20)]
    context = build_context("sys", "", history, context_size=512, max_tokens=64)
    kept = len(context.messages) - 1
    assert 0 < kept < 20
    assert context.dropped == 20 - kept
    assert context.messages[-1].content == history[-1].content
    assert context.estimated_tokens <= 512 - 64


def test_failed_empty_answers_are_not_sent() -> None:
    history = [msg(0, "user", "q"), msg(1, "assistant", "", MessageStatus.ERROR)]
    context = build_context("", "", history, context_size=512)
    assert [m.content for m in context.messages] == ["q"]


def test_message_bigger_than_the_context_is_a_clear_error() -> None:
    with pytest.raises(ContextOverflowError, match="shorten it or choose a model"):
        build_context("", "", [msg(0, "user", "x" * 1_000_000)], context_size=512)

"""The context window a chat is fitted into: the server's stated size wins over the
configured one (issue 12, item 7), the meter's count, and the check before sending."""

from __future__ import annotations

from typing import Any

import pytest

from app.chat.context import ContextOverflowError, ContextWindow, measure_use
from app.chat.events import TurnFinished, TurnStarted
from app.store.models import Message, MessageStatus, Tier
from providers import ProviderSpec
from tests.peers.scripted_provider import ScriptedProvider
from tests.unit.chat.test_service import Harness


class StatingProvider(ScriptedProvider):
    """A scripted provider whose server states a context window."""

    stated: int | None = 512
    asked: int = 0

    async def context_length(self, model: str | None = None) -> int | None:
        StatingProvider.asked += 1
        return self.stated


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    plain = harness._factory

    def factory(spec: ProviderSpec) -> Any:
        scripted = plain(spec)
        return StatingProvider(spec, scripted._script)

    harness.service._provider_factory = factory
    StatingProvider.stated = 512
    StatingProvider.asked = 0
    return harness


async def test_a_stated_512_wins_over_the_configured_4096(h: Harness) -> None:
    chat = await h.service.create_chat(Tier.STANDARD)  # "local": context_size 4096
    assert await h.service.context_window(chat) == ContextWindow(512, "server")
    await h.service.context_window(chat)
    assert StatingProvider.asked == 1  # asked once per provider and model


async def test_configured_size_when_the_server_does_not_say(h: Harness) -> None:
    StatingProvider.stated = None
    chat = await h.service.create_chat(Tier.STANDARD)
    window = await h.service.context_window(chat)
    assert window == ContextWindow(4096, "config")
    assert window.describe() == "4,096 tokens (configured)"


async def test_a_message_over_the_stated_window_is_refused_before_it_is_saved(
    h: Harness,
) -> None:
    chat = await h.service.create_chat(Tier.STANDARD)
    # ~700 tokens: fits the configured 4096, not the server's 512.
    with pytest.raises(ContextOverflowError, match=r"512 tokens \(reported by the server\)"):
        await h.run(h.service.send(chat.id, "word " * 560))
    assert h.library.store(Tier.STANDARD).full_thread(chat.id) == []
    assert h.requests == []


async def test_turns_are_fitted_into_the_stated_window(h: Harness) -> None:
    chat = await h.service.create_chat(Tier.STANDARD)
    for number in range(12):
        await h.run(h.service.send(chat.id, f"question {number} " + "x" * 200))
    started, *_, finished = await h.run(h.service.send(chat.id, "last"))
    assert isinstance(started, TurnStarted) and isinstance(finished, TurnFinished)
    assert started.dropped > 0  # 4096 would have held all of them
    assert started.context_tokens <= 512


def message(role: str, content: str, status: MessageStatus = MessageStatus.COMPLETE) -> Message:
    return Message(
        id=f"{role}-{len(content)}", chat_id="c", parent_id=None, role=role, content=content,
        status=status, created_at=0.0,
    )  # fmt: skip


def test_the_meter_counts_system_memory_history_answer_draft_and_reserve() -> None:
    window = ContextWindow(512, "server")
    history = [message("user", "a" * 40), message("assistant", "b" * 400)]
    use = measure_use("s" * 40, "m" * 20, history, "d" * 80, window=window, max_tokens=100)
    assert use.system == 10 + 4 and use.memory == 5 + 4 and use.draft == 20 + 4
    assert use.history == (10 + 4) + (100 + 4)  # the answer counts
    assert use.reserve == 100
    assert use.total == 14 + 9 + 118 + 24 + 100
    assert use.fits and use.over == 0
    assert use.with_draft("").draft == 0


def test_an_overflow_says_by_how_much_and_what_to_do() -> None:
    use = measure_use("", "", [], "w" * 2400, window=ContextWindow(512, "server"))
    assert not use.fits
    assert use.draft == 604 and use.reserve == 128 and use.over == 604 + 128 - 512
    text = use.overflow_message()
    assert "512 tokens (reported by the server)" in text
    assert "Shorten it by about 220 tokens" in text and "larger context" in text


async def test_the_meter_of_a_long_chat_reads_its_newest_page_and_counts_every_dropped(
    h: Harness,
) -> None:
    StatingProvider.stated = None  # configured 4,096
    chat = await h.service.create_chat(Tier.STANDARD)
    store = h.library.store(Tier.STANDARD)
    parent = None
    for number in range(300):
        role = "user" if number % 2 == 0 else "assistant"
        parent = store.add_message(
            chat.id, role, f"message {number} " + "x" * 200, parent_id=parent
        ).id
    use = await h.service.context_use(chat.id, "a draft")
    assert use.window == ContextWindow(4096, "config")
    assert use.more_older  # only the newest page was read
    assert 0 < 100 - use.dropped < 100 and use.history > 0
    assert use.history + use.reserve + use.draft <= 4096

"""ChatService's less travelled paths: regenerate and edit corner cases, reasoning, a stream
that never finishes, the tokenizer estimate, titles and send-blocking verdicts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.chat.context import DEFAULT_TOKENS_PER_BYTE
from app.chat.events import ChatPurged, TurnFinished, TurnReasoning
from app.chat.service import (
    ChatService,
    closing,
    default_provider,
    sending_blocked_reason,
)
from app.config import LoadedConfig, parse_config
from app.errors import PolicyRefusedError, UsageError
from app.store.library import Library, memory_connection
from app.store.models import MessageStatus, Tier, TitleSource
from providers import (
    ChatRequest,
    FinishEvent,
    ReasoningDelta,
    TextDelta,
    Usage,
    UsageEvent,
)
from tests.unit.chat.test_service import Harness

CLOUD_ONLY = """
llms:
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud, api_key: '${KEY}'}
"""


@pytest.fixture
def h() -> Harness:
    return Harness()


def service_for(config_text: str) -> ChatService:
    config = parse_config(config_text, "test", {"KEY": "sk-cloud-key"}, lambda: ["openai"])
    library = Library(memory_connection(), memory_connection())
    return ChatService(library, LoadedConfig(config, None, {}))


async def test_regenerate_refuses_an_empty_chat_and_answers_a_trailing_question(
    h: Harness,
) -> None:
    chat = await h.service.create_chat()
    with pytest.raises(UsageError, match="nothing to regenerate"):
        await h.run(h.service.regenerate(chat.id))
    # A question left without an answer (the provider was down) is answered again.
    store = h.library.store(Tier.STANDARD)
    store.add_message(chat.id, "user", "still there?", parent_id=None)
    events = await h.run(h.service.regenerate(chat.id))
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.message.content == "Hello there"
    assert [m.role for m in store.full_thread(chat.id)] == ["user", "assistant"]


async def test_regenerate_refuses_an_answer_without_a_question(h: Harness) -> None:
    chat = await h.service.create_chat()
    h.library.store(Tier.STANDARD).add_message(chat.id, "assistant", "orphan", parent_id=None)
    with pytest.raises(UsageError, match="no question to answer again"):
        await h.run(h.service.regenerate(chat.id))
    assert h.requests == []


async def test_editing_an_answer_adds_a_version_without_asking_the_model(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "Hi!"))
    await h.service.wait_for_titles(5)
    before = len(h.requests)
    store = h.library.store(Tier.STANDARD)
    original = store.full_thread(chat.id)[-1]
    assert await h.run(h.service.edit(original.id, "Corrected answer")) == []
    thread = store.full_thread(chat.id)
    assert thread[-1].content == "Corrected answer"
    assert thread[-1].id != original.id and thread[-1].provider == original.provider
    assert len(h.requests) == before
    with pytest.raises(UsageError, match="delete it instead"):
        await h.run(h.service.edit(original.id, "  "))


async def test_reasoning_is_streamed_and_saved_beside_the_answer(h: Harness) -> None:
    async def thinking(_request: ChatRequest) -> AsyncIterator[Any]:
        yield ReasoningDelta("Let me think.")
        yield TextDelta("42")
        yield FinishEvent("stop")

    h.script = thinking
    chat = await h.service.create_chat()
    events = await h.run(h.service.send(chat.id, "The answer?"))
    assert [e.text for e in events if isinstance(e, TurnReasoning)] == ["Let me think."]
    saved = events[-1]
    assert isinstance(saved, TurnFinished)
    assert (saved.message.reasoning, saved.message.content) == ("Let me think.", "42")


async def test_the_answer_being_written_is_known_until_it_ends(h: Harness) -> None:
    """Sync leaves an answer alone while this process writes it (ChatService.streaming)."""
    seen: list[set[str]] = []

    async def slow(_request: ChatRequest) -> AsyncIterator[Any]:
        seen.append(set(h.service.streaming))
        yield TextDelta("42")
        yield FinishEvent("stop")

    h.script = slow
    chat = await h.service.create_chat()
    finished = (await h.run(h.service.send(chat.id, "The answer?")))[-1]
    assert isinstance(finished, TurnFinished)
    assert seen == [{finished.message.id}]
    assert h.service.streaming == set()


async def test_a_stream_that_ends_without_a_finish_is_an_error_that_keeps_the_text(
    h: Harness,
) -> None:
    async def cut(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("half an ans")

    h.script = cut
    chat = await h.service.create_chat()
    finished = (await h.run(h.service.send(chat.id, "Hi!")))[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.error is not None and "without a finish" in finished.error
    assert finished.message.status is MessageStatus.ERROR
    assert finished.message.content == "half an ans"
    # No auto-title from a broken answer.
    await h.service.wait_for_titles(1)
    assert (await h.service.chat(chat.id)).title_source is TitleSource.DEFAULT


async def test_the_tokens_per_byte_estimate_learns_from_reported_prompt_tokens(
    h: Harness,
) -> None:
    reported: list[int | None] = [None]

    async def counted(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("ok")
        yield UsageEvent(Usage(reported[0], 1))
        yield FinishEvent("stop")

    h.script = counted
    chat = await h.service.create_chat()
    # No count, or too little text to judge: the default stays.
    await h.run(h.service.send(chat.id, "short"))
    reported[0] = 3
    await h.run(h.service.send(chat.id, "tiny"))
    assert h.service._tokens_per_byte.get("local", DEFAULT_TOKENS_PER_BYTE) == (
        DEFAULT_TOKENS_PER_BYTE
    )
    # 1,000 bytes of question counted as 1,000 tokens: about one token per byte.
    reported[0] = 1000
    await h.run(h.service.send(chat.id, "x" * 1000))
    learned = h.service._tokens_per_byte["local"]
    assert 0.9 < learned < 1.2
    # A later low count lowers it at most by half per answer.
    reported[0] = 1
    await h.run(h.service.send(chat.id, "y" * 1000))
    assert h.service._tokens_per_byte["local"] == pytest.approx(max(learned * 0.5, 0.05))


async def test_the_title_model_is_skipped_when_the_tier_forbids_it(h: Harness) -> None:
    h.service.config.config.title_llm = "cloud"
    chat = await h.service.create_chat(Tier.PRIVATE)
    await h.run(h.service.send(chat.id, "Plans for the merger next week"))
    await h.service.wait_for_titles(5)
    titled = await h.service.chat(chat.id)
    assert titled.title_source is TitleSource.AUTO
    assert titled.title == "Greeting chat"  # by the chat's own local model (docs/chats.md)
    assert all(name != "cloud" for name, _request in h.requests)


async def test_purge_deleted_reports_each_chat(h: Harness) -> None:
    kept = await h.service.create_chat()
    gone = await h.service.create_chat()
    await h.service.delete_chat(gone.id)
    assert await h.service.purge_deleted(older_than=-1) == [gone.id]
    assert any(isinstance(c, ChatPurged) and c.chat_id == gone.id for c in h.changes)
    assert [s.id for s in await h.service.list_chats()] == [kept.id]


async def test_without_providers_a_chat_starts_without_one_and_sending_says_why() -> None:
    service = service_for("llms: []\n")
    chat = await service.create_chat()
    assert chat.provider is None
    assert "add a provider in Settings" in sending_blocked_reason(service.config.config, chat)
    assert default_provider(service.config.config, Tier.PRIVATE) is None


async def test_a_tier_no_provider_may_serve() -> None:
    service = service_for(CLOUD_ONLY)
    config = service.config.config
    assert default_provider(config, Tier.PRIVATE) is None
    with pytest.raises(PolicyRefusedError):
        await service.create_chat(Tier.PRIVATE)
    reason = sending_blocked_reason(config, None, Tier.PRIVATE)
    assert reason.endswith("Choose an allowed model in the chat settings.")
    assert sending_blocked_reason(config, None, Tier.STANDARD) == ""
    chat = await service.create_chat(Tier.STANDARD)
    assert sending_blocked_reason(config, chat) == ""


async def test_a_chat_whose_provider_was_removed_is_told_to_choose_another(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.service.update(chat.id, provider="tiny")
    renamed = await h.service.chat(chat.id)
    assert renamed.model == "t"
    config = parse_config(
        "llms:\n  - {provider_name: other, type: openai, base_url: 'http://127.0.0.1:3/v1',"
        " model_name: o}\n",
        "test",
        {},
        lambda: ["openai"],
    )
    reason = sending_blocked_reason(config, renamed)
    assert "tiny" in reason and reason.endswith("Choose another model in the chat settings.")


async def test_closing_accepts_a_stream_without_aclose() -> None:
    class Plain:
        def __init__(self) -> None:
            self.items = iter([1, 2])

        def __aiter__(self) -> Plain:
            return self

        async def __anext__(self) -> int:
            try:
                return next(self.items)
            except StopIteration:
                raise StopAsyncIteration from None

    seen = []
    async with closing(Plain()) as stream:
        async for item in stream:
            seen.append(item)
    assert seen == [1, 2]


async def test_a_huge_message_is_refused_before_anything_is_written(h: Harness) -> None:
    chat = await h.service.create_chat()
    with pytest.raises(UsageError, match="the limit is 4,000,000"):
        await h.run(h.service.send(chat.id, "x" * 4_000_001))
    assert h.library.store(Tier.STANDARD).full_thread(chat.id) == []


async def test_close_waits_for_the_query_running_on_the_database_thread() -> None:
    # Closing a SQLCipher connection while another thread steps a statement on it
    # crashed the process (a title's query was running when a test closed its library).
    service = service_for(CLOUD_ONLY)
    chat = await service.create_chat(Tier.STANDARD)
    store = service.library.store(Tier.STANDARD)
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow_query() -> None:
        started.set()
        assert release.wait(10)
        seen.append(store.chat(chat.id).id)  # still open: close waits behind this

    running = asyncio.ensure_future(service.runner.db(slow_query))
    await asyncio.to_thread(started.wait, 10)
    closer = threading.Thread(target=service.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and service.library.tiers  # close is waiting its turn
    release.set()
    await running
    closer.join(10)
    assert not closer.is_alive()
    assert seen == [chat.id] and service.library.tiers == []
    with pytest.raises(RuntimeError, match="after shutdown"):  # the runner it made is stopped
        await service.runner.db(lambda: None)


def test_vector_search_is_available_only_when_every_open_database_loaded_it() -> None:
    service = service_for(CLOUD_ONLY)
    assert service.vector_search_available  # sqlite-vec is installed here
    service.library.store(Tier.PRIVATE).vectors_available = False
    assert not service.vector_search_available

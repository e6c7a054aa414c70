"""The chat service end to end against the real llama-server (tiny model, 512 tokens)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from app.chat.events import TurnDelta, TurnEvent, TurnFinished, TurnStarted
from app.chat.service import ChatService
from app.chat.stats import message_stats_line
from app.config import LoadedConfig, parse_config
from app.store.library import Library, memory_connection
from app.store.models import DEFAULT_TITLE, ChatParams, MessageStatus, Tier, TitleSource
from tests.peers.llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.llama_server


@pytest.fixture
def service(llama_server: LlamaServer) -> ChatService:
    config = parse_config(
        f"""llms:
  - provider_name: local
    type: openai
    base_url: {llama_server.base_url}/v1
    model_name: {MODEL_ALIAS}
    context_size: 512
""",
        "test",
        {},
    )
    library = Library(memory_connection(), memory_connection())
    chat_service = ChatService(library, LoadedConfig(config, None, {}), checkpoint_seconds=0.05)
    yield chat_service
    chat_service.close()  # a title may still be querying on the database thread


async def collect(turn: AsyncIterator[TurnEvent]) -> list[TurnEvent]:
    async with contextlib.aclosing(turn):
        return [event async for event in turn]


async def test_send_streams_and_titles(service: ChatService) -> None:
    chat = await service.create_chat(Tier.PRIVATE, system_prompt="You are terse.")
    events = await collect(service.send(chat.id, "hello world", max_tokens=12))
    assert isinstance(events[0], TurnStarted) and events[0].dropped == 0
    text = "".join(e.text for e in events if isinstance(e, TurnDelta))
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.error is None
    assert finished.message.content == text and text.strip()
    assert finished.message.status is MessageStatus.COMPLETE
    assert finished.message.completion_tokens == 12
    assert finished.message.first_token_at is not None
    await service.wait_for_titles(30)
    titled = await service.chat(chat.id)
    assert titled.title != DEFAULT_TITLE and titled.title_source is TitleSource.AUTO


async def test_stop_mid_answer_keeps_partial(service: ChatService) -> None:
    chat = await service.create_chat()
    turn = service.send(chat.id, "go on and on", max_tokens=4000)
    deltas = 0
    async for event in turn:
        if isinstance(event, TurnDelta):
            deltas += 1
            if deltas == 20:
                break
    await turn.aclose()
    last = service.library.store(Tier.STANDARD).full_thread(chat.id)[-1]
    assert last.status is MessageStatus.STOPPED
    # No usage arrives for a stopped answer: the chunks are counted for its stats line.
    assert last.content and last.completion_tokens == 20


async def test_regenerate_and_edit_make_versions(service: ChatService) -> None:
    chat = await service.create_chat()
    await collect(service.send(chat.id, "first", max_tokens=8))
    await collect(service.regenerate(chat.id, max_tokens=8))
    store = service.library.store(Tier.STANDARD)
    thread = store.full_thread(chat.id)
    assert (thread[-1].version, thread[-1].versions) == (2, 2)
    await collect(service.edit(thread[0].id, "first, edited", max_tokens=8))
    thread = store.full_thread(chat.id)
    assert thread[0].content == "first, edited" and thread[0].versions == 2
    assert thread[1].status is MessageStatus.COMPLETE


async def test_context_trimmed_on_a_512_token_model(service: ChatService) -> None:
    chat = await service.create_chat()
    store = service.library.store(Tier.STANDARD)
    parent = None
    for i in range(30):  # about 1,500 tokens of history: far more than 512
        parent = store.add_message(chat.id, "user", f"old question {i} " + "lorem " * 40,
                                   parent_id=parent).id  # fmt: skip
        parent = store.add_message(chat.id, "assistant", "old answer " * 10, parent_id=parent).id
    events = await collect(service.send(chat.id, "and now?", max_tokens=16))
    started = [e for e in events if isinstance(e, TurnStarted)][-1]
    finished = events[-1]
    assert started.dropped > 40
    # The server accepted what was sent: the trimmed context fits its window.
    assert isinstance(finished, TurnFinished) and finished.error is None


async def test_the_chats_max_tokens_bounds_a_runaway_answer(service: ChatService) -> None:
    chat = await service.create_chat()
    await service.update(chat.id, params=ChatParams(max_tokens=5, temperature=0.0))
    events = await collect(service.send(chat.id, "Count from one to one hundred in words."))
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.error is None
    # The server stopped at the limit and says so in its usage.
    assert finished.message.completion_tokens == 5
    assert finished.message.status is MessageStatus.COMPLETE
    line = message_stats_line(finished.message)
    assert line is not None and line.startswith("5 tokens in ")


async def test_the_chats_stop_sequence_ends_the_answer(service: ChatService) -> None:
    chat = await service.create_chat()
    params = ChatParams(max_tokens=40, temperature=0.0)
    await service.update(chat.id, params=params)
    first = await collect(service.send(chat.id, "Write a long story about a cat."))
    free = first[-1]
    assert isinstance(free, TurnFinished) and free.message.content.strip()
    # A stop sequence taken from that answer (deterministic at temperature 0) ends the
    # same answer before it.
    words = free.message.content.split()
    assert len(words) >= 3, free.message.content
    stop = words[2]
    await service.update(chat.id, params=ChatParams(max_tokens=40, temperature=0.0, stop=(stop,)))
    second = await collect(service.regenerate(chat.id))
    stopped = second[-1]
    assert isinstance(stopped, TurnFinished) and stopped.error is None
    assert stop not in stopped.message.content
    assert len(stopped.message.content) < len(free.message.content)

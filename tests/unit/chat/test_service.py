"""ChatService with scripted providers: turns, stop, regenerate, edit, failures, titles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.chat.context import DEFAULT_TOKENS_PER_BYTE, ContextOverflowError
from app.chat.events import (
    ChatChanged,
    ChatRenamed,
    MessagesChanged,
    TurnDelta,
    TurnEvent,
    TurnFinished,
    TurnStarted,
)
from app.chat.service import ChatService, clean_title, heuristic_title
from app.config import LoadedConfig, parse_config
from app.errors import PolicyRefusedError, UsageError
from app.store.chats import ChatStore
from app.store.library import Library, memory_connection
from app.store.models import DEFAULT_TITLE, MessageStatus, Tier, TitleSource
from providers import (
    ChatRequest,
    ConnectionFailedError,
    ContextTooLongError,
    FinishEvent,
    ProviderSpec,
    TextDelta,
    Usage,
    UsageEvent,
)
from tests.peers.scripted_provider import Script, ScriptedProvider

CONFIG = """
default_llm: local
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:1/v1', model_name: m,
     context_size: 4096}
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud, api_key: '${KEY}'}
  - {provider_name: tiny, type: openai, base_url: 'http://127.0.0.1:2/v1', model_name: t,
     context_size: 256}
"""


def answer(*pieces: str) -> Script:
    async def script(_request: ChatRequest) -> AsyncIterator[Any]:
        for piece in pieces:
            yield TextDelta(piece)
        yield UsageEvent(Usage(None, len(pieces)))
        yield FinishEvent("stop")

    return script


class Harness:
    def __init__(self, library: Library | None = None) -> None:
        self.library = library or Library(memory_connection(), memory_connection())
        config = parse_config(CONFIG, "test", {"KEY": "sk-test-key-123"}, lambda: ["openai"])
        self.requests: list[Any] = []
        self.script: Script = answer("Hello", " there")
        self.title_script: Script = answer("Greeting", " chat")
        self.service = ChatService(
            self.library,
            LoadedConfig(config, None, {}),
            provider_factory=self._factory,
            checkpoint_seconds=0.0,
        )
        self.changes: list[ChatChanged] = []
        self.service.changes.subscribe(self.changes.append)

    def _factory(self, spec: ProviderSpec) -> Any:
        def choose(request: ChatRequest) -> AsyncIterator[Any]:
            self.requests.append((spec.name, request))
            is_title = "title of at most" in request.messages[-1].content
            return (self.title_script if is_title else self.script)(request)

        return ScriptedProvider(spec, choose)

    async def run(self, turn: AsyncIterator[TurnEvent]) -> list[TurnEvent]:
        events = []
        async with contextlib.aclosing(turn):
            async for event in turn:
                events.append(event)
        return events


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_send_saves_question_then_streams_and_saves_answer(h: Harness) -> None:
    chat = await h.service.create_chat(Tier.STANDARD, system_prompt="be kind")
    await h.service.update(chat.id, memory="the user is Ada")
    events = await h.run(h.service.send(chat.id, "Hi!"))
    started, *deltas, finished = events
    assert isinstance(started, TurnStarted) and started.user_message is not None
    assert [e.text for e in deltas if isinstance(e, TurnDelta)] == ["Hello", " there"]
    assert isinstance(finished, TurnFinished) and finished.error is None
    assert finished.message.content == "Hello there"
    assert finished.message.status is MessageStatus.COMPLETE
    assert finished.message.completion_tokens == 2 and finished.message.provider == "local"
    _, request = h.requests[0]
    assert [m.content for m in request.messages] == ["be kind", "Hi!"]
    assert request.memory == "the user is Ada"
    thread = h.library.store(Tier.STANDARD).full_thread(chat.id)
    assert [(m.role, m.content) for m in thread] == [("user", "Hi!"), ("assistant", "Hello there")]
    assert any(isinstance(c, MessagesChanged) for c in h.changes)


async def test_auto_title_after_first_answer_and_user_title_wins(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "Hi!"))
    await h.service.wait_for_titles(5)
    titled = await h.service.chat(chat.id)
    assert (titled.title, titled.title_source) == ("Greeting chat", TitleSource.AUTO)
    assert any(isinstance(c, ChatRenamed) for c in h.changes)

    other = await h.service.create_chat()
    gate = asyncio.Event()

    async def slow_title(_request: ChatRequest) -> AsyncIterator[Any]:
        await gate.wait()
        yield TextDelta("Too late")
        yield FinishEvent("stop")

    h.title_script = slow_title
    await h.run(h.service.send(other.id, "Hi!"))
    await h.service.rename(other.id, "Mine")
    gate.set()
    await h.service.wait_for_titles(5)
    assert (await h.service.chat(other.id)).title == "Mine"


async def test_title_falls_back_to_heuristic_when_model_fails(h: Harness) -> None:
    async def failing(_request: ChatRequest) -> AsyncIterator[Any]:
        raise ConnectionFailedError("down", provider="local")
        yield  # pragma: no cover - makes this an async generator

    h.title_script = failing
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "how do magnets work in motors?\nmore"))
    await h.service.wait_for_titles(5)
    assert (await h.service.chat(chat.id)).title == "How do magnets work in motors"


async def test_stop_keeps_partial_answer(h: Harness) -> None:
    release = asyncio.Event()

    async def endless(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("partial ")
        yield TextDelta("words")
        await release.wait()
        yield FinishEvent("stop")

    h.script = endless
    chat = await h.service.create_chat()
    turn = h.service.send(chat.id, "go")
    seen = []
    async for event in turn:
        seen.append(event)
        if len(seen) == 3:
            break
    await turn.aclose()
    (answer_message,) = [
        m for m in h.library.store(Tier.STANDARD).full_thread(chat.id) if m.role == "assistant"
    ]
    assert answer_message.status is MessageStatus.STOPPED
    assert answer_message.content == "partial words"
    assert (await h.service.chat(chat.id)).title == DEFAULT_TITLE  # no title for a stopped turn


async def test_cancelled_task_keeps_partial_answer(h: Harness) -> None:
    async def endless(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("so far")
        await asyncio.sleep(3600)
        yield FinishEvent("stop")

    h.script = endless
    chat = await h.service.create_chat()
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in h.service.send(chat.id, "go"):
            if isinstance(event, TurnDelta):
                first_delta.set()

    task = asyncio.create_task(consume())
    await first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    last = h.library.store(Tier.STANDARD).full_thread(chat.id)[-1]
    assert (last.status, last.content) == (MessageStatus.STOPPED, "so far")


async def test_provider_cut_mid_answer_keeps_partial_marked_error(h: Harness) -> None:
    async def cut(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("half an ans")
        raise ConnectionFailedError("the connection broke mid-answer", provider="local")

    h.script = cut
    chat = await h.service.create_chat()
    *_, finished = await h.run(h.service.send(chat.id, "go"))
    assert isinstance(finished, TurnFinished)
    assert finished.message.status is MessageStatus.ERROR
    assert finished.message.content == "half an ans"
    assert finished.error is not None and "mid-answer" in finished.error
    assert finished.error_kind == "ConnectionFailedError"
    stored = h.library.store(Tier.STANDARD).full_thread(chat.id)
    assert stored[0].content == "go" and stored[1].error is not None


async def test_regenerate_adds_a_version(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "q"))
    h.script = answer("second")
    await h.run(h.service.regenerate(chat.id))
    thread = h.library.store(Tier.STANDARD).full_thread(chat.id)
    assert [m.content for m in thread] == ["q", "second"]
    assert (thread[1].version, thread[1].versions) == (2, 2)
    first = h.library.store(Tier.STANDARD).sibling(thread[1].id, -1)
    await h.service.select_version(first.id)
    assert h.library.store(Tier.STANDARD).full_thread(chat.id)[1].content == "Hello there"
    # The regenerated request did not repeat the old answer.
    _, request = h.requests[-1]
    assert [m.content for m in request.messages] == ["q"]


async def test_edit_user_message_reruns_from_there(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "first question"))
    await h.run(h.service.send(chat.id, "second question"))
    store = h.library.store(Tier.STANDARD)
    thread = store.full_thread(chat.id)
    h.script = answer("edited answer")
    await h.run(h.service.edit(thread[2].id, "better second question"))
    thread = store.full_thread(chat.id)
    assert [m.content for m in thread] == [
        "first question", "Hello there", "better second question", "edited answer",
    ]  # fmt: skip
    assert thread[2].versions == 2
    with pytest.raises(UsageError):
        await h.run(h.service.edit(thread[2].id, "   "))


async def test_private_chat_refuses_cloud_provider_before_writing(h: Harness) -> None:
    with pytest.raises(PolicyRefusedError, match="on-prem"):
        await h.service.create_chat(Tier.PRIVATE, provider="cloud")
    chat = await h.service.create_chat(Tier.PRIVATE)
    with pytest.raises(PolicyRefusedError):
        await h.service.update(chat.id, provider="cloud")
    # A chat moved into a tier its provider is not allowed in is refused too.
    standard = await h.service.create_chat(Tier.STANDARD, provider="cloud")
    with pytest.raises(PolicyRefusedError):
        await h.service.move(standard.id, Tier.PRIVATE)
    assert h.library.store(Tier.PRIVATE).count_messages() == 0
    assert h.requests == []


async def test_policy_is_enforced_at_send_time(h: Harness) -> None:
    chat = await h.service.create_chat(Tier.PRIVATE)
    # Even if the stored provider was changed behind the service's back:
    h.library.store(Tier.PRIVATE).update_chat(chat.id, provider="cloud")
    with pytest.raises(PolicyRefusedError):
        await h.run(h.service.send(chat.id, "secret"))
    assert h.library.store(Tier.PRIVATE).count_messages() == 0
    assert h.requests == []


async def test_ephemeral_chat_lives_in_memory_store(h: Harness) -> None:
    chat = await h.service.create_chat(Tier.EPHEMERAL)
    await h.run(h.service.send(chat.id, "hi"))
    assert h.library.store(Tier.EPHEMERAL).count_messages(chat.id) == 2
    assert h.library.store(Tier.STANDARD).count_messages() == 0


async def test_context_trimming_reports_dropped(h: Harness) -> None:
    chat = await h.service.create_chat(provider="tiny")
    for i in range(12):
        await h.run(h.service.send(chat.id, f"message {i} " + "word " * 20))
    started = (await h.run(h.service.send(chat.id, "last")))[0]
    assert isinstance(started, TurnStarted)
    assert started.dropped > 0
    _, request = h.requests[-1]
    assert request.messages[-1].content == "last"
    assert len(request.messages) < 25


async def test_empty_and_huge_messages(h: Harness) -> None:
    chat = await h.service.create_chat()
    with pytest.raises(UsageError, match="empty"):
        await h.run(h.service.send(chat.id, "  \n"))
    big = "y" * 1_000_000
    with pytest.raises(ContextOverflowError, match="Shorten it by about"):
        await h.run(h.service.send(chat.id, big))
    # Refused before anything is written (issue 12, item 3): no question without an answer;
    # the window keeps the text in the composer.
    assert h.library.store(Tier.STANDARD).full_thread(chat.id) == []


async def test_reset_and_delete_message(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "q"))
    store = h.library.store(Tier.STANDARD)
    await h.service.delete_message(store.full_thread(chat.id)[-1].id)
    assert [m.content for m in store.full_thread(chat.id)] == ["q"]
    await h.service.reset(chat.id)
    assert store.full_thread(chat.id) == []


def test_title_helpers() -> None:
    assert clean_title('Title: "Rust lifetimes explained."\nextra') == "Rust lifetimes explained"
    assert clean_title("  \n ### \n") is None
    assert clean_title("one two three four five six seven eight") == "one two three four five six"
    assert heuristic_title("   ") == DEFAULT_TITLE
    assert heuristic_title("x" * 200).endswith("…")


async def test_context_refused_as_too_long_is_retried_smaller(h: Harness) -> None:
    sizes: list[int] = []

    async def strict(request: ChatRequest) -> AsyncIterator[Any]:
        sizes.append(len(request.messages))
        if len(request.messages) > 4:
            raise ContextTooLongError("too long", provider="local", status=400)
        yield TextDelta("ok")
        yield FinishEvent("stop")

    chat = await h.service.create_chat(provider="tiny")
    store = h.library.store(Tier.STANDARD)
    parent = None
    for i in range(6):
        parent = store.add_message(chat.id, "user", f"q{i} " + "w " * 20, parent_id=parent).id
    h.script = strict
    events = await h.run(h.service.send(chat.id, "now"))
    starts = [e for e in events if isinstance(e, TurnStarted)]
    assert len(starts) >= 2 and starts[-1].dropped > starts[0].dropped
    assert sizes[0] > 4 >= sizes[-1]
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.message.content == "ok"
    # The smaller estimate is remembered for the next turn of this provider.
    sizes.clear()
    await h.run(h.service.send(chat.id, "again"))
    assert sizes[-1] <= 4 and len(sizes) <= 2
    assert h.service._tokens_per_byte["tiny"] > DEFAULT_TOKENS_PER_BYTE


async def test_context_too_long_after_text_is_not_retried(h: Harness) -> None:
    async def late(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("some")
        raise ContextTooLongError("too long", provider="local", status=400)

    h.script = late
    chat = await h.service.create_chat()
    events = await h.run(h.service.send(chat.id, "hi"))
    assert sum(isinstance(e, TurnStarted) for e in events) == 1
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.error_kind == "ContextTooLongError"
    assert finished.message.content == "some"


async def test_cancel_titles_on_lock(h: Harness) -> None:
    gate = asyncio.Event()

    async def never(_request: ChatRequest) -> AsyncIterator[Any]:
        await gate.wait()
        yield FinishEvent("stop")

    h.title_script = never
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "Hi!"))
    assert h.service._title_tasks
    h.service.cancel_titles()
    await h.service.wait_for_titles(5)
    assert not h.service._title_tasks
    assert (await h.service.chat(chat.id)).title == DEFAULT_TITLE


async def test_lock_while_streaming_keeps_the_checkpoint(tmp_path: Path) -> None:
    # A Standard database in a file, so what survives the lock can be read back.
    path = tmp_path / "standard.db"
    h = Harness(Library(file_connection(path), memory_connection()))

    async def endless(_request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("kept ")
        yield TextDelta("in memory only")
        await asyncio.sleep(3600)
        yield FinishEvent("stop")

    h.script = endless
    chat = await h.service.create_chat()
    turn = h.service.send(chat.id, "go")
    deltas = 0
    async for event in turn:
        deltas += isinstance(event, TurnDelta)
        if deltas == 2:  # "kept " was checkpointed on the way to the second delta
            break
    h.service.runner.db_sync(h.library.close)  # the vault locks mid-answer
    await turn.aclose()  # the final save meets a closed database: no crash
    reopened = ChatStore(file_connection(path), Tier.STANDARD)
    try:
        stored = reopened.full_thread(chat.id)[-1]
    finally:
        reopened.close()
    assert (stored.role, stored.status, stored.content) == (
        "assistant", MessageStatus.PARTIAL, "kept ",
    )  # fmt: skip


def file_connection(path: Path) -> Any:
    """A plain (unencrypted) SQLite file, as a store connection for this test."""
    import sqlcipher3

    return sqlcipher3.connect(str(path), check_same_thread=False, isolation_level=None)

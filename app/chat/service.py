"""``ChatService``: everything a chat does, as plain async Python (no Qt).

A turn commits the user's message before the request leaves, then streams the
answer as ``TurnEvent``s while checkpointing it to the database (status
``partial``), so a crash keeps what had arrived. Closing the turn's iterator
(or cancelling its task) is Stop: the partial answer is kept, marked
``stopped``. A provider failure keeps the partial answer marked ``error`` with
the reason. The tier's provider policy is checked before anything is written.

After the first answer of a chat still called "New Chat", a title is made in
the background by a model the tier allows (the configured ``title_llm`` or the
chat's own) with a local fallback; it never delays the answer, and a title the
user set always wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from app.chat.context import DEFAULT_TOKENS_PER_BYTE, Context, build_context
from app.chat.events import (
    ChangeBus,
    TurnDelta,
    TurnEvent,
    TurnFinished,
    TurnReasoning,
    TurnStarted,
)
from app.config import LLMEntry, LoadedConfig
from app.errors import UsageError
from app.executor import BlockingRunner
from app.logs import register_secret
from app.privacy import policy
from app.store.chats import DATABASE_ERRORS, ChatStore, StorageError
from app.store.library import Library
from app.store.models import DEFAULT_TITLE, Chat, Message, MessageStatus, Tier, TitleSource
from providers import (
    ChatMessage,
    ChatRequest,
    ContextTooLongError,
    FinishEvent,
    ProviderError,
    ProviderSpec,
    ReasoningDelta,
    Role,
    TextDelta,
    UsageEvent,
)

if TYPE_CHECKING:
    from providers import Provider

log = logging.getLogger(__name__)

ProviderFactory = Callable[[ProviderSpec], "Provider"]


def create_provider(spec: ProviderSpec) -> Provider:
    """The provider for ``spec`` (the HTTP stack is imported on first use)."""
    from providers import create_provider as create

    return create(spec)


MAX_MESSAGE_CHARS = 4_000_000
TITLE_WORDS = 6
TITLE_CHARS = 60
# Messages read from the thread to fill the context: more than any context window holds.
HISTORY_WINDOW = 2000
# What saving a stopped answer may meet when the vault locked meanwhile.
LOCK_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, StorageError)
# Times a turn is retried with a smaller context when the server says it is too long.
CONTEXT_RETRIES = 2


class ChatService:
    """Chats over the library's stores and the configured providers."""

    def __init__(
        self,
        library: Library,
        config: LoadedConfig,
        *,
        runner: BlockingRunner | None = None,
        provider_factory: ProviderFactory = create_provider,
        checkpoint_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.library = library
        self.config = config
        self.runner = runner or BlockingRunner()
        self.changes = ChangeBus()
        self._provider_factory = provider_factory
        self._checkpoint_seconds = checkpoint_seconds
        self._clock = clock
        self._title_tasks: set[asyncio.Task[None]] = set()
        # Learned per provider from reported prompt token counts (see _learn_ratio).
        self._tokens_per_byte: dict[str, float] = {}

    # --- providers and policy ----------------------------------------------------------------

    def provider_entry(self, chat: Chat) -> LLMEntry:
        """The config entry serving ``chat`` (its own, else the default)."""
        return self.config.config.llm(chat.provider)

    def _spec(self, entry: LLMEntry, model: str | None = None) -> ProviderSpec:
        key = self.config.resolve_api_key(entry)
        register_secret(key)
        spec = entry.to_spec(key)
        if model and model != spec.model:
            spec = spec.model_copy(update={"model": model})
        return spec

    def check_policy(self, chat: Chat, entry: LLMEntry) -> None:
        """PolicyRefusedError if the chat's tier may not use this provider."""
        policy.require(chat.tier, entry.effective_locality, entry.provider_name)

    # --- chats -------------------------------------------------------------------------------

    async def create_chat(
        self,
        tier: Tier = Tier.STANDARD,
        *,
        provider: str | None = None,
        system_prompt: str = "",
        memory: str = "",
    ) -> Chat:
        """A new chat titled "New Chat"; the provider must be allowed for the tier."""
        entry = None
        if provider is not None or self.config.config.llms:
            entry = self.config.config.llm(provider)
            policy.require(tier, entry.effective_locality, entry.provider_name)
        store = self.library.store(tier)
        chat = await self.runner.db(
            store.create_chat,
            system_prompt=system_prompt,
            memory=memory,
            provider=entry.provider_name if entry else None,
            model=entry.model_name if entry else None,
        )
        self.changes.emit(chat.id, "created")
        return chat

    async def chat(self, chat_id: str) -> Chat:
        return await self.runner.db(self.library.chat, chat_id)

    async def rename(self, chat_id: str, title: str) -> Chat:
        store = await self.runner.db(self.library.store_of, chat_id)
        chat = await self.runner.db(store.rename, chat_id, title)
        self.changes.emit(chat_id, "renamed")
        return chat

    async def update(self, chat_id: str, **fields: Any) -> Chat:
        """Change system prompt, memory, provider, model or pinned."""
        store = await self.runner.db(self.library.store_of, chat_id)
        if "provider" in fields and fields["provider"] is not None:
            current = await self.runner.db(store.chat, chat_id)
            entry = self.config.config.llm(fields["provider"])
            policy.require(current.tier, entry.effective_locality, entry.provider_name)
            fields.setdefault("model", entry.model_name)
        chat = await self.runner.db(store.update_chat, chat_id, **fields)
        self.changes.emit(chat_id, "updated")
        return chat

    async def move(self, chat_id: str, tier: Tier) -> Chat:
        """Move a chat to another tier; refused if its provider is not allowed there."""
        chat = await self.chat(chat_id)
        if chat.provider is not None and self.config.config.llms:
            entry = self.config.config.llm(chat.provider)
            policy.require(tier, entry.effective_locality, entry.provider_name)
        moved = await self.runner.db(self.library.move, chat_id, tier)
        self.changes.emit(chat_id, "moved")
        return moved

    async def delete_chat(self, chat_id: str) -> None:
        await self.runner.db(self.library.delete, chat_id)
        self.changes.emit(chat_id, "deleted")

    async def undo_delete(self, chat_id: str) -> None:
        await self.runner.db(self.library.undo_delete, chat_id)
        self.changes.emit(chat_id, "restored")

    async def purge_deleted(self, older_than: float) -> list[str]:
        purged = await self.runner.db(self.library.purge_deleted, older_than=older_than)
        for chat_id in purged:
            self.changes.emit(chat_id, "purged")
        return purged

    async def delete_message(self, message_id: str) -> None:
        store, message = await self._find_message(message_id)
        await self.runner.db(store.delete_message, message_id)
        self.changes.emit(message.chat_id, "messages")

    async def reset(self, chat_id: str) -> None:
        """Delete a chat's history, keeping its title, system prompt and memory."""
        store = await self.runner.db(self.library.store_of, chat_id)
        await self.runner.db(store.reset, chat_id)
        self.changes.emit(chat_id, "messages")

    async def select_version(self, message_id: str) -> Message:
        store, message = await self._find_message(message_id)
        selected = await self.runner.db(store.select_version, message_id)
        self.changes.emit(message.chat_id, "messages")
        return selected

    async def _find_message(self, message_id: str) -> tuple[ChatStore, Message]:
        def find() -> tuple[ChatStore, Message]:
            for store in self.library.stores.values():
                row = store.conn.execute(
                    "SELECT 1 FROM messages WHERE id = ?", (message_id,)
                ).fetchone()
                if row is not None:
                    return store, store.message(message_id)
            raise UsageError(f"no message with id {message_id}")

        return await self.runner.db(find)

    # --- turns -------------------------------------------------------------------------------

    async def send(
        self, chat_id: str, text: str, *, max_tokens: int | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """Save ``text`` as the user's message and stream the answer."""
        if not text.strip():
            raise UsageError("the message is empty; type something to send")
        if len(text) > MAX_MESSAGE_CHARS:
            raise UsageError(
                f"the message is {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}"
            )
        store = await self.runner.db(self.library.store_of, chat_id)
        chat = await self.runner.db(store.chat, chat_id)
        entry = self.provider_entry(chat)
        self.check_policy(chat, entry)
        user = await self.runner.db(
            store.add_message, chat_id, "user", text, parent_id=chat.active_leaf_id
        )
        self.changes.emit(chat_id, "messages")
        async with contextlib.aclosing(
            self._answer(store, chat, entry, user, max_tokens, user=user)
        ) as events:
            async for event in events:
                yield event

    async def regenerate(
        self, chat_id: str, *, max_tokens: int | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """A new version of the last answer (the earlier ones are kept)."""
        store = await self.runner.db(self.library.store_of, chat_id)
        chat = await self.runner.db(store.chat, chat_id)
        if chat.active_leaf_id is None:
            raise UsageError("there is nothing to regenerate in an empty chat")
        entry = self.provider_entry(chat)
        self.check_policy(chat, entry)
        last = await self.runner.db(store.message, chat.active_leaf_id)
        if last.role == "assistant":
            if last.parent_id is None:
                raise UsageError("this answer has no question to answer again")
            question = await self.runner.db(store.message, last.parent_id)
        else:
            question = last
        async with contextlib.aclosing(
            self._answer(store, chat, entry, question, max_tokens, user=None)
        ) as events:
            async for event in events:
                yield event

    async def edit(
        self, message_id: str, text: str, *, max_tokens: int | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """A new version of a message; for the user's own message, answer it again."""
        if not text.strip():
            raise UsageError("the message is empty; delete it instead")
        store, original = await self._find_message(message_id)
        chat = await self.runner.db(store.chat, original.chat_id)
        if original.role != "user":
            await self.runner.db(
                store.add_message, chat.id, original.role, text, parent_id=original.parent_id,
                provider=original.provider, model=original.model,
            )  # fmt: skip
            self.changes.emit(chat.id, "messages")
            return
        entry = self.provider_entry(chat)
        self.check_policy(chat, entry)
        user = await self.runner.db(
            store.add_message, chat.id, "user", text, parent_id=original.parent_id
        )
        self.changes.emit(chat.id, "messages")
        async with contextlib.aclosing(
            self._answer(store, chat, entry, user, max_tokens, user=user)
        ) as events:
            async for event in events:
                yield event

    async def _answer(
        self,
        store: ChatStore,
        chat: Chat,
        entry: LLMEntry,
        question: Message,
        max_tokens: int | None,
        *,
        user: Message | None,
    ) -> AsyncGenerator[TurnEvent, None]:
        """Stream an answer to ``question`` as a new child of it, checkpointing as it goes.

        ``user`` is the user message this turn saved (None when regenerating).
        """
        page = await self.runner.db(store.thread, chat.id, limit=HISTORY_WINDOW, before=None)
        history = _history_up_to(page.messages, question.id)
        older = 0
        if page.has_older:
            older = await self.runner.db(store.thread_length, page.messages[0].id) - 1
        ratio = self._tokens_per_byte.get(entry.provider_name, DEFAULT_TOKENS_PER_BYTE)
        context = build_context(
            chat.system_prompt, chat.memory, history, context_size=entry.context_size,
            max_tokens=max_tokens, tokens_per_byte=ratio,
        )  # fmt: skip
        spec = self._spec(entry, chat.model)
        answer = await self.runner.db(
            store.add_message, chat.id, "assistant", "", parent_id=question.id,
            status=MessageStatus.PARTIAL, provider=entry.provider_name, model=spec.model,
        )  # fmt: skip
        self.changes.emit(chat.id, "messages")
        yield TurnStarted(
            chat.id, user, answer.id, context.dropped + older, context.estimated_tokens
        )
        text: list[str] = []
        reasoning: list[str] = []
        started = self._clock()
        fields: dict[str, Any] = {}
        last_checkpoint = time.monotonic()
        status = MessageStatus.PARTIAL
        error: ProviderError | None = None
        try:
            async with self._provider_factory(spec) as provider:
                for attempt in range(CONTEXT_RETRIES + 1):
                    request = ChatRequest(
                        messages=context.messages, memory=context.memory, max_tokens=max_tokens
                    )
                    stream = provider.stream_chat(request)
                    try:
                        async with closing(stream):
                            async for event in stream:
                                if isinstance(event, TextDelta):
                                    if not text:
                                        fields["first_token_at"] = self._clock()
                                    text.append(event.text)
                                    yield TurnDelta(event.text)
                                elif isinstance(event, ReasoningDelta):
                                    reasoning.append(event.text)
                                    yield TurnReasoning(event.text)
                                elif isinstance(event, UsageEvent):
                                    fields["prompt_tokens"] = event.usage.prompt_tokens
                                    fields["completion_tokens"] = event.usage.completion_tokens
                                    self._learn_ratio(entry, context, event.usage.prompt_tokens)
                                elif isinstance(event, FinishEvent):
                                    status = MessageStatus.COMPLETE
                                if time.monotonic() - last_checkpoint >= self._checkpoint_seconds:
                                    last_checkpoint = time.monotonic()
                                    await self.runner.db(
                                        store.update_message, answer.id,
                                        content="".join(text), reasoning="".join(reasoning),
                                    )  # fmt: skip
                    except ContextTooLongError:
                        if text or reasoning or attempt == CONTEXT_RETRIES:
                            raise
                        # The server counts more tokens than we estimated: halve what we
                        # think fits, remember it for this provider, and try once more.
                        ratio *= 2
                        self._tokens_per_byte[entry.provider_name] = ratio
                        context = build_context(
                            chat.system_prompt, chat.memory, history,
                            context_size=entry.context_size, max_tokens=max_tokens,
                            tokens_per_byte=ratio,
                        )  # fmt: skip
                        log.info("context refused as too long; retrying with a smaller one")
                        yield TurnStarted(
                            chat.id, user, answer.id, context.dropped + older,
                            context.estimated_tokens,
                        )  # fmt: skip
                        continue
                    break
            if status != MessageStatus.COMPLETE:
                status = MessageStatus.ERROR
                error = ProviderError(
                    "the answer ended without a finish", provider=entry.provider_name
                )
        except ProviderError as failure:
            status, error = MessageStatus.ERROR, failure
        except (asyncio.CancelledError, GeneratorExit):
            status = MessageStatus.STOPPED
            try:
                await asyncio.shield(
                    self._finish(store, answer.id, text, reasoning, status, None, started, fields)
                )
            except LOCK_ERRORS as failure:
                # The vault locked (closing the database) while the answer streamed: the
                # last checkpoint stays, marked partial.
                log.info("stopped answer not finalised: %s", type(failure).__name__)
            self.changes.emit(chat.id, "messages")
            raise
        saved = await self._finish(
            store, answer.id, text, reasoning, status, error, started, fields
        )
        self.changes.emit(chat.id, "messages")
        kind = type(error).__name__ if error else None
        yield TurnFinished(saved, str(error) if error else None, kind)
        if status == MessageStatus.COMPLETE and chat.title_source == TitleSource.DEFAULT:
            self._schedule_title(store, chat.id)

    def _learn_ratio(self, entry: LLMEntry, context: Context, prompt_tokens: int | None) -> None:
        """Refine the tokens-per-byte estimate of a provider from the count it reported."""
        if not prompt_tokens:
            return
        size = sum(len(m.content.encode("utf-8")) for m in context.messages)
        size += len(context.memory.encode("utf-8"))
        if size < 200:  # too little text to say anything about the tokenizer
            return
        observed = prompt_tokens / size * 1.1  # keep a margin for framing tokens
        current = self._tokens_per_byte.get(entry.provider_name, DEFAULT_TOKENS_PER_BYTE)
        self._tokens_per_byte[entry.provider_name] = max(observed, current * 0.5, 0.05)

    async def _finish(
        self,
        store: ChatStore,
        message_id: str,
        text: list[str],
        reasoning: list[str],
        status: MessageStatus,
        error: ProviderError | None,
        started: float,
        fields: dict[str, Any],
    ) -> Message:
        finished = self._clock()
        await self.runner.db(
            store.update_message,
            message_id,
            content="".join(text),
            reasoning="".join(reasoning),
            status=status,
            error=str(error) if error else None,
            finished_at=finished,
            duration_ms=int((finished - started) * 1000),
            **fields,
        )
        message: Message = await self.runner.db(store.message, message_id)
        return message

    # --- titles ------------------------------------------------------------------------------

    def _schedule_title(self, store: ChatStore, chat_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._make_title(store, chat_id))
        self._title_tasks.add(task)
        task.add_done_callback(self._title_tasks.discard)

    def cancel_titles(self) -> None:
        """Cancel pending title tasks (on lock: the library is about to close)."""
        for task in list(self._title_tasks):
            task.cancel()

    async def wait_for_titles(self, seconds: float) -> None:
        """Give pending title tasks up to ``seconds`` (the CLI calls this before exiting)."""
        if self._title_tasks:
            await asyncio.wait(set(self._title_tasks), timeout=seconds)

    async def _make_title(self, store: ChatStore, chat_id: str) -> None:
        chat = await self.runner.db(store.chat, chat_id)
        thread = (await self.runner.db(store.thread, chat_id, limit=4)).messages
        first_user = next((m.content for m in thread if m.role == "user"), "")
        first_answer = next((m.content for m in thread if m.role == "assistant"), "")
        title = await self._model_title(chat, first_user, first_answer)
        if title is None:
            title = heuristic_title(first_user)
        if await self.runner.db(store.set_auto_title, chat_id, title):
            self.changes.emit(chat_id, "renamed")

    async def _model_title(self, chat: Chat, question: str, answer: str) -> str | None:
        """A title from a model the tier allows, or None to fall back to the heuristic."""
        config = self.config.config
        name = config.title_llm or chat.provider
        if not config.llms:
            return None
        entry = config.llm(name)
        if not policy.decision(chat.tier, entry.effective_locality).allowed:
            return None
        prompt = (
            f"Write a title of at most {TITLE_WORDS} words for this conversation. "
            "Answer with the title only.\n\n"
            f"User: {question[:1000]}\nAssistant: {answer[:1000]}"
        )
        request = ChatRequest(
            messages=[ChatMessage(role=Role.USER, content=prompt)], max_tokens=24, temperature=0.2
        )
        pieces: list[str] = []
        try:
            async with self._provider_factory(self._spec(entry)) as provider:
                stream = provider.stream_chat(request)
                async with closing(stream):
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            pieces.append(event.text)
        except ProviderError as error:
            log.info("title model failed (%s); using the local fallback", type(error).__name__)
            return None
        return clean_title("".join(pieces))


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[Any]) -> AsyncIterator[AsyncIterator[Any]]:
    """Close a provider's event stream on exit (promptly ending its HTTP response).

    The Provider protocol promises an async iterator; the built-in providers return
    async generators, which have ``aclose``, and so may a third party's.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _history_up_to(thread: list[Message], message_id: str) -> list[Message]:
    for index, message in enumerate(thread):
        if message.id == message_id:
            return thread[: index + 1]
    return thread


def clean_title(raw: str) -> str | None:
    """A model's title answer tidied up, or None if nothing usable is left."""
    line = next((line for line in raw.strip().splitlines() if line.strip()), "")
    line = re.sub(r"^(title|titel)\s*[:\-]\s*", "", line.strip(), flags=re.IGNORECASE)
    line = line.strip(" \"'`*#.\u201c\u201d\u2018\u2019")
    words = line.split()
    if not words or not any(ch.isalpha() for ch in line):
        return None
    title = " ".join(words[:TITLE_WORDS])
    return title[:TITLE_CHARS].rstrip()


def heuristic_title(first_message: str) -> str:
    """A title from the first words of the user's first message."""
    line = next((ln for ln in first_message.strip().splitlines() if ln.strip()), "")
    words = re.sub(r"\s+", " ", line).strip().split(" ")
    title = " ".join(words[:TITLE_WORDS]).strip(" .,:;!?")
    if not title:
        return DEFAULT_TITLE
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    return title[0].upper() + title[1:]

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
import dataclasses
import io
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.api_keys import ApiKeys
from app.attachments import Extracted, Placement, extract, placement
from app.chat.attachments import (
    AttachmentCheck,
    AttachmentSettings,
    NewAttachment,
    Prepared,
    TextCache,
    check,
    excerpts_block,
    fitting,
    inline_block,
    lazy_chunks,
    prepare_all,
    vision_problem,
    vision_refusal,
    with_inline,
)
from app.chat.context import (
    DEFAULT_TOKENS_PER_BYTE,
    Context,
    ContextOverflowError,
    ContextUse,
    ContextWindow,
    answer_reserve,
    build_context,
    measure_use,
)
from app.chat.events import (
    ChangeBus,
    ChatCreated,
    ChatDeleted,
    ChatMoved,
    ChatPurged,
    ChatRenamed,
    ChatRestored,
    ChatUpdated,
    MessagesChanged,
    TurnDelta,
    TurnEvent,
    TurnFinished,
    TurnReasoning,
    TurnStarted,
)
from app.chat.titles import TITLE_WORDS, clean_title, heuristic_title
from app.config import Config, LLMEntry, LoadedConfig
from app.errors import ConfigError, PolicyRefusedError, UsageError
from app.executor import BlockingRunner
from app.logs import register_secret
from app.privacy import policy
from app.store.chats import DATABASE_ERRORS, ChatStore, StorageError
from app.store.library import Library
from app.store.models import (
    Attachment,
    Chat,
    ChatParams,
    ChatSummary,
    Message,
    MessageStatus,
    SearchHit,
    ThreadPage,
    Tier,
    TitleSource,
)
from providers import (
    ChatMessage,
    ChatRequest,
    ContextTooLongError,
    FinishEvent,
    ImageInput,
    ProviderError,
    ProviderSpec,
    ReasoningDelta,
    Role,
    TextDelta,
    UsageEvent,
)

if TYPE_CHECKING:
    from app.chat.retrieval import Retrieval
    from app.store.transfer import ImportedChats as ImportedChats  # the window names it
    from providers import Provider

log = logging.getLogger(__name__)

ProviderFactory = Callable[[ProviderSpec], "Provider"]


def create_provider(spec: ProviderSpec) -> Provider:
    """The provider for ``spec`` (the HTTP stack is imported on first use)."""
    from providers import create_provider as create

    return create(spec)


MAX_MESSAGE_CHARS = 4_000_000
# Messages read from the thread to fill the context: more than any context window holds.
HISTORY_WINDOW = 2000
# What saving a stopped answer may meet when the vault locked meanwhile.
LOCK_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, StorageError)
# Messages the context meter reads first (more only while they all fit).
CONTEXT_USE_PAGE = 100
# The image types every wire format takes (what attachments detect as images).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
# Times a turn is retried with a smaller context when the server says it is too long.
CONTEXT_RETRIES = 2


class ChatService:
    """Chats over the library's stores and the configured providers: every read and write.

    Widgets and commands hold this object (and its ``changes`` bus) and nothing below
    it: each method runs its database work on the runner's database thread.
    """

    def __init__(
        self,
        library: Library,
        config: LoadedConfig,
        *,
        runner: BlockingRunner | None = None,
        provider_factory: ProviderFactory = create_provider,
        api_keys: ApiKeys | None = None,
        checkpoint_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.library = library
        self._config_listeners: list[Callable[[], None]] = []
        self._config = config
        self._owns_runner = runner is None
        self.runner = runner or BlockingRunner()
        self.changes = ChangeBus()
        self.api_keys = api_keys or ApiKeys(runner=self.runner)
        self._provider_factory = provider_factory
        self._checkpoint_seconds = checkpoint_seconds
        self._clock = clock
        self._title_tasks: set[asyncio.Task[None]] = set()
        # Answers this process is writing (sync sends them once they end).
        self.streaming: set[str] = set()
        # Learned per provider from reported prompt token counts (see _learn_ratio).
        self._tokens_per_byte: dict[str, float] = {}
        # Context windows servers stated, per (provider, base URL, model); None: not said.
        self._windows: dict[tuple[str, str, str], int | None] = {}
        # Text re-read from stored attachments, per attachment id (memory only, bounded).
        self._texts = TextCache()
        # The text of attachments a turn in progress has just read, by attachment id.
        self._fresh: dict[str, Extracted] = {}
        self._retrieval: Retrieval | None = None
        # Attachments found too long to go inline (id -> the threshold then in force), so
        # the context meter does not read them again.
        self._long: dict[str, int] = {}

    # --- providers and policy ----------------------------------------------------------------

    @property
    def config(self) -> LoadedConfig:
        """The config chats are served with; setting it (``Session.apply_config``, after
        Settings saved a provider) tells every :meth:`follow_config` listener."""
        return self._config

    @config.setter
    def config(self, config: LoadedConfig) -> None:
        self._config = config
        for listener in list(self._config_listeners):
            listener()

    def follow_config(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each config change; returns a function that stops it."""
        self._config_listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):  # stopped twice
                self._config_listeners.remove(listener)

        return stop

    def provider_entry(self, chat: Chat) -> LLMEntry:
        """The config entry serving ``chat`` (its own, else the default)."""
        return self.config.config.llm(chat.provider)

    def default_provider(self, tier: Tier) -> LLMEntry | None:
        """The provider a new chat of ``tier`` gets (see :func:`default_provider`)."""
        return default_provider(self.config.config, tier)

    async def _spec(self, entry: LLMEntry, model: str | None = None) -> ProviderSpec:
        key = await self.api_keys.resolve(entry)
        register_secret(key)
        spec = entry.to_spec(key)
        if model and model != spec.model:
            spec = spec.model_copy(update={"model": model})
        return spec

    def check_policy(self, chat: Chat, entry: LLMEntry) -> None:
        """PolicyRefusedError if the chat's tier may not use this provider."""
        policy.require(chat.tier, entry.effective_locality, entry.provider_name)

    async def context_window(self, chat: Chat) -> ContextWindow:
        """The context size ``chat``'s turns are fitted into: what the server states for the
        chat's model (asked once per provider and model), else the configured size."""
        entry = self.provider_entry(chat)
        key = (entry.provider_name, entry.base_url, chat.model or entry.model_name)
        if key not in self._windows:
            detected: int | None = None
            try:
                from providers.base import context_length

                spec = await self._spec(entry, chat.model)
                async with self._provider_factory(spec) as provider:
                    detected = await context_length(provider, spec.model)
            except ProviderError as error:
                log.info("context size of %s not detected: %s", entry.provider_name, type(error))
            self._windows[key] = detected
            log.info(
                "context size of %s: %s", entry.provider_name, detected or "not stated, configured"
            )
        detected = self._windows[key]
        own = chat.params.context_size  # the chat's own setting, capped by the server's
        if detected is not None and (own is None or own >= detected):
            return ContextWindow(detected, "server")
        return ContextWindow(own or entry.context_size, "config")

    async def context_use(
        self, chat_id: str, draft: str = "", *, max_tokens: int | None = None
    ) -> ContextUse:
        """What sending ``draft`` in the chat now would take of its context window."""
        store = await self.runner.db(self.library.store_of, chat_id)
        chat = await self.runner.db(store.chat, chat_id)
        entry = self.provider_entry(chat)
        window = await self.context_window(chat)
        ratio = self._tokens_per_byte.get(entry.provider_name, DEFAULT_TOKENS_PER_BYTE)
        if max_tokens is None:  # the chat's (or its provider's) longest answer is reserved
            max_tokens = effective_params(entry, chat.params).max_tokens
        # The newest messages first, more only while all of them fit (a long chat's
        # newest page usually fills the window: one small read when the chat opens).
        limit = CONTEXT_USE_PAGE
        while True:
            page = await self.runner.db(store.thread, chat_id, limit=limit, before=None)
            counted, _images, _sources = await self._with_attachments(
                store, chat, entry, page.messages
            )
            use = measure_use(
                chat.system_prompt, chat.memory, counted, draft, window=window,
                max_tokens=max_tokens, tokens_per_byte=ratio,
            )  # fmt: skip
            if use.dropped or not page.has_older or limit >= HISTORY_WINDOW:
                break
            limit = min(limit * 4, HISTORY_WINDOW)
        return dataclasses.replace(use, more_older=page.has_older)

    async def _require_fits(
        self, chat: Chat, entry: LLMEntry, text: str, max_tokens: int | None
    ) -> None:
        """ContextOverflowError, before anything is written, if ``text`` cannot fit at all."""
        ratio = self._tokens_per_byte.get(entry.provider_name, DEFAULT_TOKENS_PER_BYTE)
        if max_tokens is None:
            max_tokens = effective_params(entry, chat.params).max_tokens
        use = measure_use(
            chat.system_prompt, chat.memory, [], text, window=await self.context_window(chat),
            max_tokens=max_tokens, tokens_per_byte=ratio,
        )  # fmt: skip
        if not use.fits:
            raise ContextOverflowError(use.overflow_message())

    # --- reading -----------------------------------------------------------------------------

    async def chat(self, chat_id: str) -> Chat:
        return await self.runner.db(self.library.chat, chat_id)

    async def resolve_id(self, prefix: str) -> str:
        """The chat whose id starts with ``prefix`` (people type the first characters)."""
        return await self.runner.db(self.library.resolve_id, prefix)

    async def readable(self, reference: str) -> tuple[Chat, Message]:
        """The message a reader names and its chat: a message id, or a chat id for its last
        answer, or a unique prefix of either (:meth:`Library.find_readable`)."""

        def read() -> tuple[Chat, Message]:
            store, message = self.library.find_readable(reference)
            return store.chat(message.chat_id), message

        return await self.runner.db(read)

    async def list_chats(self, *, limit: int | None = None) -> list[ChatSummary]:
        """Chats of every open tier (or the first ``limit``), pinned first, newest first."""
        return await self.runner.db(self.library.list_chats, limit=limit)

    async def summary(self, chat_id: str) -> ChatSummary | None:
        """What the sidebar shows of one chat; None when it is gone or deleted."""
        return await self.runner.db(self.library.summary, chat_id)

    async def open_chat(
        self, chat_id: str, *, limit: int, with_length: bool = False
    ) -> tuple[Chat, ThreadPage, int | None]:
        """The chat, the newest ``limit`` messages of its thread and, if asked, the
        thread's length, read together so they agree."""

        def read() -> tuple[Chat, ThreadPage, int | None]:
            store = self.library.store_of(chat_id)
            chat = store.chat(chat_id)
            page = store.thread(chat_id, limit=limit)
            length = None
            if with_length and chat.active_leaf_id is not None:
                length = store.thread_length(chat.active_leaf_id)
            return chat, page, length

        return await self.runner.db(read)

    async def open_around(
        self, chat_id: str, message_id: str, *, older: int, newer: int
    ) -> tuple[Chat, ThreadPage]:
        """The chat and the window of its thread around ``message_id`` (a search hit):
        ``older`` messages before it and ``newer`` after it, read together; the newest
        ``older + newer + 1`` when it is not on the shown thread (another version)."""

        def read() -> tuple[Chat, ThreadPage]:
            store = self.library.store_of(chat_id)
            chat = store.chat(chat_id)
            page = store.thread_window(chat_id, message_id, older=older, newer=newer)
            if not page.messages:
                page = store.thread(chat_id, limit=older + newer + 1)
            return chat, page

        return await self.runner.db(read)

    async def newer_messages(self, chat_id: str, after: str, *, limit: int) -> ThreadPage:
        """The ``limit`` messages of the thread after message ``after`` (scrolling down a
        window); an empty page when ``after`` is no longer on the thread."""

        def read() -> ThreadPage:
            store = self.library.store_of(chat_id)
            return store.thread(chat_id, limit=limit, after=after)

        return await self.runner.db(read)

    async def older_messages(self, chat_id: str, before: str, *, limit: int) -> ThreadPage:
        """The ``limit`` messages of the thread before message ``before``."""

        def read() -> ThreadPage:
            store = self.library.store_of(chat_id)
            return store.thread(chat_id, limit=limit, before=before)

        return await self.runner.db(read)

    async def full_thread(self, chat_id: str) -> list[Message]:
        """Every message of the chat's shown thread, oldest first."""
        return await self.runner.db(lambda: self.library.store_of(chat_id).full_thread(chat_id))

    async def count_messages(self, chat_id: str) -> int:
        """How many messages (every version) the chat has."""
        return await self.runner.db(lambda: self.library.store_of(chat_id).count_messages(chat_id))

    async def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search over titles and messages of every open tier."""
        return await self.runner.db(self.library.search, query, limit=limit)

    async def export(self, chat_ids: list[str] | None, fmt: Literal["md", "json"]) -> str:
        """Chats (None: all) as Markdown or as our JSON export format."""
        from app.store import transfer

        if fmt == "json":
            data = await self.runner.db(transfer.export_json, self.library, chat_ids)
            return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        return await self.runner.db(transfer.export_markdown, self.library, chat_ids)

    async def export_to_file(
        self, chat_ids: list[str] | None, fmt: Literal["md", "json"], path: Path
    ) -> None:
        """Export chats to ``path``, written atomically (a crash leaves no half file).

        Markdown links the attachments of the exported messages, written beside it in
        the folder ``<path>.attachments``."""
        from app.vault.atomic_file import write_atomically

        if fmt == "md":
            text = await self.runner.db(_markdown_with_files, self.library, chat_ids, path)
        else:
            text = await self.export(chat_ids, fmt)
        await self.runner.blocking(write_atomically, path, text.encode("utf-8"))

    async def import_file(self, path: Path, *, fmt: str | None, tier: Tier) -> ImportedChats:
        """Import an export file (ours, ChatGPT's .zip or JSON, Open WebUI's) into ``tier``.

        A chat whose provider the tier does not allow (or that this config lacks) comes
        in bound to the tier's default provider (:func:`default_provider`), or to none
        when no configured one is allowed. Other apps' files obey the ``attachments:``
        size limit. Long imported documents are indexed at the chat's next question
        (``_with_attachments``), with embeddings where the chat's tier allows them, like sent ones.
        """
        from app.store import transfer

        limits = transfer.AttachmentLimits(AttachmentSettings.of(self.config.config).max_bytes)
        chat_ids = await self.runner.db(
            transfer.import_file, self.library, path, fmt=fmt, tier=tier,
            bind=lambda chat: bind_to_allowed_provider(self.config.config, chat), limits=limits,
        )  # fmt: skip
        for chat_id in chat_ids:
            self.changes.emit(ChatCreated(chat_id))
        return chat_ids

    # --- chats -------------------------------------------------------------------------------

    async def create_chat(
        self,
        tier: Tier = Tier.STANDARD,
        *,
        provider: str | None = None,
        system_prompt: str = "",
        memory: str = "",
    ) -> Chat:
        """A new chat titled "New Chat".

        ``provider`` must be allowed for the tier; without one the chat gets
        :meth:`default_provider`, and PolicyRefusedError says so if none is allowed.
        """
        entry = None
        if provider is not None:
            entry = self.config.config.llm(provider)
            policy.require(tier, entry.effective_locality, entry.provider_name)
        elif self.config.config.llms:
            entry = self.default_provider(tier)
            if entry is None:
                default = self.config.config.llm()
                policy.require(tier, default.effective_locality, default.provider_name)
        store = self.library.store(tier)
        chat = await self.runner.db(
            store.create_chat,
            system_prompt=system_prompt,
            memory=memory,
            provider=entry.provider_name if entry else None,
            model=entry.model_name if entry else None,
        )
        self.changes.emit(ChatCreated(chat.id))
        return chat

    async def rename(self, chat_id: str, title: str) -> Chat:
        chat = await self.runner.db(lambda: self.library.store_of(chat_id).rename(chat_id, title))
        self.changes.emit(ChatRenamed(chat_id))
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
        self.changes.emit(ChatUpdated(chat_id))
        return chat

    async def move(self, chat_id: str, tier: Tier) -> Chat:
        """Move a chat to another tier; refused if its provider is not allowed there."""
        chat = await self.chat(chat_id)
        if chat.provider is not None and self.config.config.llms:
            entry = self.config.config.llm(chat.provider)
            policy.require(tier, entry.effective_locality, entry.provider_name)
        moved = await self.runner.db(self.library.move, chat_id, tier)
        self.changes.emit(ChatMoved(chat_id, tier))
        return moved

    async def delete_chat(self, chat_id: str) -> None:
        """Hide a chat; :meth:`undo_delete` brings it back until it is purged."""
        await self.runner.db(self.library.delete, chat_id)
        self.changes.emit(ChatDeleted(chat_id))

    async def undo_delete(self, chat_id: str) -> None:
        await self.runner.db(self.library.undo_delete, chat_id)
        self.changes.emit(ChatRestored(chat_id))

    async def purge(self, chat_id: str) -> None:
        """Delete a chat for good at once (the command line asks first)."""
        await self.runner.db(lambda: self.library.store_of(chat_id).purge(chat_id))
        self.changes.emit(ChatPurged(chat_id))

    async def purge_deleted(self, older_than: float) -> list[str]:
        purged = await self.runner.db(self.library.purge_deleted, older_than=older_than)
        for chat_id in purged:
            self.changes.emit(ChatPurged(chat_id))
        return purged

    async def delete_message(self, message_id: str) -> None:
        store, message = await self.runner.db(self.library.find_message, message_id)
        await self.runner.db(store.delete_message, message_id)
        self.changes.emit(MessagesChanged(message.chat_id))

    async def reset(self, chat_id: str) -> None:
        """Delete a chat's history, keeping its title, system prompt and memory."""
        await self.runner.db(lambda: self.library.store_of(chat_id).reset(chat_id))
        self.changes.emit(MessagesChanged(chat_id))

    async def select_version(self, message_id: str) -> Message:
        store, message = await self.runner.db(self.library.find_message, message_id)
        selected = await self.runner.db(store.select_version, message_id)
        self.changes.emit(MessagesChanged(message.chat_id))
        return selected

    async def switch_version(self, message_id: str, offset: int) -> Message:
        """Show the version ``offset`` places from ``message_id`` (-1 previous, +1 next)."""

        def find() -> Message:
            store, _message = self.library.find_message(message_id)
            return store.sibling(message_id, offset)

        other = await self.runner.db(find)
        return await self.select_version(other.id)

    # --- turns -------------------------------------------------------------------------------

    async def send(
        self,
        chat_id: str,
        text: str,
        *,
        attachments: Sequence[NewAttachment] = (),
        max_tokens: int | None = None,
    ) -> AsyncGenerator[TurnEvent, None]:
        """Save ``text`` (and its ``attachments``) as the user's message and stream the answer.

        Every refusal (empty message, a file that cannot be attached, images for a model
        that does not take them, the tier's policy, a message that cannot fit) is raised
        before anything is saved or sent; the message and its attachments are saved in
        one transaction.
        """
        files = list(attachments)
        if not text.strip() and not files:
            raise UsageError("the message is empty; type something to send")
        if len(text) > MAX_MESSAGE_CHARS:
            raise UsageError(
                f"the message is {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}"
            )
        store = await self.runner.db(self.library.store_of, chat_id)
        chat = await self.runner.db(store.chat, chat_id)
        entry = self.provider_entry(chat)
        self.check_policy(chat, entry)
        settings = AttachmentSettings.of(self.config.config)
        prepared: list[Prepared] = []
        if files:
            prepared = await self.runner.blocking(prepare_all, files, settings)
            if any(p.placement is Placement.IMAGE for p in prepared):
                refusal = vision_refusal(entry, chat.model)
                if refusal is not None:
                    raise refusal
        if any(p.placement is Placement.RETRIEVAL for p in prepared):
            self._check_embedding_policy(chat)  # a document for an embedding model
        inline = [inline_block(p.extracted) for p in prepared if p.placement is Placement.INLINE]
        await self._require_fits(chat, entry, with_inline(text, inline), max_tokens)
        user, stored = await self.runner.db(
            _store_question, store, chat_id, text, chat.active_leaf_id, prepared,
            settings.max_bytes,
        )  # fmt: skip
        # This turn uses the text just read (a large one is too big for the cache, and
        # reading it again from the store would hold it twice).
        fresh = [a.id for a in stored]
        for attachment, ready in zip(stored, prepared, strict=True):
            if ready.placement is not Placement.IMAGE:
                self._texts.put(attachment.id, ready.extracted)
                self._fresh[attachment.id] = ready.extracted
        self.changes.emit(MessagesChanged(chat_id))
        long_ones = [
            (attachment.id, ready.extracted)
            for attachment, ready in zip(stored, prepared, strict=True)
            if ready.placement is Placement.RETRIEVAL
        ]
        del prepared
        try:
            for attachment_id, extracted in long_ones:
                await self._index(chat_id, attachment_id, extracted)
            del long_ones
            async with contextlib.aclosing(
                self._answer(store, chat, entry, user, max_tokens, user=user)
            ) as events:
                async for event in events:
                    yield event
        finally:
            for attachment_id in fresh:
                self._fresh.pop(attachment_id, None)

    # --- attachments -------------------------------------------------------------------------

    async def check_attachments(
        self, chat_id: str, files: Sequence[NewAttachment]
    ) -> list[AttachmentCheck]:
        """What each file would be in ``chat_id`` (size, kind, the refusal if any), without
        storing anything: the composer's chips."""
        chat = await self.chat(chat_id)
        settings = AttachmentSettings.of(self.config.config)
        try:
            entry: LLMEntry | None = self.provider_entry(chat)
        except ConfigError:
            entry = None
        results = []
        for new in files:
            result, where = await self.runner.blocking(check, new, settings)
            problem = None
            if where is Placement.IMAGE and entry is not None:
                problem = vision_problem(entry, chat.model)
            elif where is Placement.RETRIEVAL:
                try:
                    self._check_embedding_policy(chat)
                except (PolicyRefusedError, ConfigError) as refused:
                    problem = f"{result.name} is long, so it would be searched: {refused}"
            if problem is not None:
                result = dataclasses.replace(result, problem=problem)
            results.append(result)
        return results

    async def attachments(self, chat_id: str) -> dict[str, list[Attachment]]:
        """Message id -> its attachments in order, for every message of the chat."""

        def read() -> dict[str, list[Attachment]]:
            by_message: dict[str, list[Attachment]] = {}
            for attachment in self.library.store_of(chat_id).chat_attachments(chat_id):
                by_message.setdefault(attachment.message_id, []).append(attachment)
            for items in by_message.values():
                items.sort(key=lambda a: a.position)
            return by_message

        return await self.runner.db(read)

    async def attachment_data(self, attachment_id: str, *, max_bytes: int) -> bytes:
        """An attachment's bytes (an image's thumbnail); UsageError above ``max_bytes``."""

        def read() -> bytes:
            store = self._store_of_attachment(attachment_id)
            attachment = store.attachment(attachment_id)
            if attachment.size > max_bytes:
                raise UsageError(
                    f"{attachment.name} is {attachment.size:,} bytes, more than the "
                    f"{max_bytes:,} shown here; save it and open it instead"
                )
            return b"".join(store.read_attachment(attachment_id))

        return await self.runner.db(read)

    async def save_attachment(self, attachment_id: str, path: Path) -> None:
        """Save a copy of an attachment to ``path`` (written atomically)."""
        await self.runner.db(
            lambda: self._store_of_attachment(attachment_id).save_attachment(attachment_id, path)
        )

    def _store_of_attachment(self, attachment_id: str) -> ChatStore:
        """The open store holding the attachment (database thread)."""
        from app.store.chats import ChatNotFoundError

        for tier in self.library.tiers:
            store = self.library.store(tier)
            try:
                store.attachment(attachment_id)
            except ChatNotFoundError:
                continue
            return store
        raise UsageError(f"no attachment with id {attachment_id}; it may have been deleted")

    async def _extracted(self, store: ChatStore, attachment: Attachment) -> Extracted:
        """The attachment's text, re-read from its stored bytes once per session."""
        cached = self._texts.get(attachment.id) or self._fresh.get(attachment.id)
        if cached is not None:
            return cached
        data = await self.runner.db(_read_all, store, attachment.id)
        extracted = await self.runner.blocking(extract, attachment.name, data, None)
        self._texts.put(attachment.id, extracted)
        return extracted

    @property
    def retrieval(self) -> Retrieval:
        """Chunk indexing and retrieval over the long attachments of this service's chats."""
        if self._retrieval is None:
            from app.chat.retrieval import Retrieval

            self._retrieval = Retrieval(self, self._provider_factory)
        return self._retrieval

    def _check_embedding_policy(self, chat: Chat) -> None:
        """PolicyRefusedError if the chat's embedding model may not see its documents."""
        embedder = self.retrieval.embedding_entry(chat)
        if embedder is not None:
            self.check_policy(chat, embedder)

    async def _index(self, chat_id: str, attachment_id: str, extracted: Extracted) -> None:
        """Index a long attachment's chunks for retrieval (BM25, and embeddings where the
        chat's entry names an embedding model; without them when that server fails)."""
        try:
            result = await self.retrieval.index(chat_id, attachment_id, lazy_chunks(extracted))
        except (ProviderError, ConfigError) as error:
            # The chunks are in the keyword index already; only the vectors are missing.
            log.warning(
                "attachment %s indexed for keyword search only: the embeddings request "
                "failed (%s: %s)", attachment_id, type(error).__name__, error,
            )  # fmt: skip
            return
        log.info("attachment %s indexed: %d chunks", attachment_id, result.chunks)

    async def _with_attachments(
        self,
        store: ChatStore,
        chat: Chat,
        entry: LLMEntry,
        history: list[Message],
        *,
        question: Message | None = None,
        excerpt_chars: int = 0,
    ) -> tuple[list[Message], dict[str, list[ImageInput]], tuple[str, ...]]:
        """``history`` as sent: inline attachments appended to their messages, the
        excerpts of long ones relevant to ``question`` appended to it, and the images of
        user messages (when the model accepts images); plus the excerpts' labels."""
        ids = {m.id for m in history}
        found = await self.runner.db(store.chat_attachments, chat.id)
        found = [a for a in found if a.message_id in ids]
        if not found:
            return history, {}, ()
        settings = AttachmentSettings.of(self.config.config)
        send_images = vision_problem(entry, chat.model) is None
        blocks: dict[str, list[str]] = {}
        images: dict[str, list[ImageInput]] = {}
        long_ones: list[Attachment] = []
        roles = {m.id: m.role for m in history}
        for attachment in sorted(found, key=lambda a: (a.message_id, a.position)):
            if attachment.media_type.startswith("image/"):
                if (
                    send_images
                    and roles[attachment.message_id] == "user"
                    and attachment.media_type in IMAGE_TYPES
                ):
                    data = await self.runner.db(_read_all, store, attachment.id)
                    images.setdefault(attachment.message_id, []).append(
                        ImageInput(media_type=attachment.media_type, data=data)
                    )
                elif roles[attachment.message_id] == "user":  # an earlier turn, another model
                    blocks.setdefault(attachment.message_id, []).append(
                        f"[image {attachment.name!r} not shown: this model does not take images]"
                    )
                continue
            known_long = self._long.get(attachment.id) == settings.inline_max_chars
            if known_long and question is None:
                continue  # the meter: a long one's excerpts are chosen per question
            if known_long or (await self.runner.db(store.count_chunks, chat.id, attachment.id)) > 0:
                long_ones.append(attachment)  # indexed: a long one, its text not needed
                continue
            try:
                extracted = await self._extracted(store, attachment)
            except UsageError as error:  # stored by an older version, now unreadable
                log.warning("attachment %s not readable: %s", attachment.id, type(error).__name__)
                continue
            where = placement(extracted, settings.inline_max_chars)
            if where is Placement.INLINE:
                blocks.setdefault(attachment.message_id, []).append(inline_block(extracted))
            else:  # long, not indexed yet (imported, or its indexing was cut short)
                self._long[attachment.id] = settings.inline_max_chars
                if question is not None:
                    self._check_embedding_policy(chat)
                    await self._index(chat.id, attachment.id, extracted)
                long_ones.append(attachment)
        sources: tuple[str, ...] = ()
        if question is not None and long_ones and question.content.strip():
            hits = await self.retrieval.relevant_chunks(
                chat.id, question.content, settings.retrieval_chunks
            )
            # (A file kept by an edited question is indexed once per version: one copy.)
            unique = list(dict.fromkeys((hit.label, hit.text) for hit in hits))
            excerpts = fitting(unique, excerpt_chars)
            if excerpts:
                blocks.setdefault(question.id, []).append(excerpts_block(excerpts))
                sources = tuple(dict.fromkeys(label for label, _ in excerpts))
        sent = [
            dataclasses.replace(m, content=with_inline(m.content, blocks[m.id]))
            if m.id in blocks
            else m
            for m in history
        ]
        return sent, images, sources

    async def _require_images_accepted(
        self, store: ChatStore, chat: Chat, entry: LLMEntry, message_id: str
    ) -> None:
        """The vision refusal when the question to answer (again) has images and the chat's
        model is not known to accept them: answering without them would answer another
        question."""
        found = await self.runner.db(store.attachments, message_id)
        if any(a.media_type.startswith("image/") for a in found):
            refusal = vision_refusal(entry, chat.model)
            if refusal is not None:
                raise refusal

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
        await self._require_images_accepted(store, chat, entry, question.id)
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
        store, original = await self.runner.db(self.library.find_message, message_id)
        chat = await self.runner.db(store.chat, original.chat_id)
        if original.role != "user":
            await self.runner.db(
                store.add_message, chat.id, original.role, text, parent_id=original.parent_id,
                provider=original.provider, model=original.model,
            )  # fmt: skip
            self.changes.emit(MessagesChanged(chat.id))
            return
        entry = self.provider_entry(chat)
        self.check_policy(chat, entry)
        await self._require_images_accepted(store, chat, entry, original.id)
        await self._require_fits(chat, entry, text, max_tokens)

        def save() -> Message:
            with store.transaction():  # the new version keeps the message's files
                user = store.add_message(chat.id, "user", text, parent_id=original.parent_id)
                store.copy_attachments(original.id, user.id)
            return user

        user = await self.runner.db(save)
        self.changes.emit(MessagesChanged(chat.id))
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
        thread = _history_up_to(page.messages, question.id)
        older = 0
        if page.has_older:
            older = await self.runner.db(store.thread_length, page.messages[0].id) - 1
        ratio = self._tokens_per_byte.get(entry.provider_name, DEFAULT_TOKENS_PER_BYTE)
        window = await self.context_window(chat)
        params = effective_params(entry, chat.params)
        if max_tokens is None:
            max_tokens = params.max_tokens
        # Excerpts take at most a third of what the window leaves beside the answer.
        room = window.size - answer_reserve(window.size, max_tokens)
        history, images, sources = await self._with_attachments(
            store, chat, entry, thread, question=question,
            excerpt_chars=max(200, int(room / 3 / max(ratio, 0.01))),
        )  # fmt: skip
        context = build_context(
            chat.system_prompt, chat.memory, history, context_size=window.size,
            max_tokens=max_tokens, tokens_per_byte=ratio, images=images,
        )  # fmt: skip
        spec = await self._spec(entry, chat.model)
        if chat.params.context_size is not None:  # Ollama loads the model with it (num_ctx)
            spec = spec.model_copy(update={"context_size": window.size})
        answer = await self.runner.db(
            store.add_message, chat.id, "assistant", "", parent_id=question.id,
            status=MessageStatus.PARTIAL, provider=entry.provider_name, model=spec.model,
            sources=sources,
        )  # fmt: skip
        self.streaming.add(answer.id)
        self.changes.emit(MessagesChanged(chat.id))
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
                        messages=context.messages, memory=context.memory, max_tokens=max_tokens,
                        temperature=params.temperature, top_p=params.top_p,
                        stop=list(params.stop or ()),
                    )  # fmt: skip
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
                    except ContextTooLongError as refused:
                        if text or reasoning or attempt == CONTEXT_RETRIES:
                            raise
                        # The server counts more tokens than we estimated: halve what we
                        # think fits, remember it for this provider, and try once more.
                        ratio *= 2
                        self._tokens_per_byte[entry.provider_name] = ratio
                        if sources:  # fewer excerpts fit now
                            history, images, sources = await self._with_attachments(
                                store, chat, entry, thread, question=question,
                                excerpt_chars=max(200, int(room / 3 / ratio)),
                            )  # fmt: skip
                            fields["sources"] = sources
                        try:
                            context = build_context(
                                chat.system_prompt, chat.memory, history,
                                context_size=window.size, max_tokens=max_tokens,
                                tokens_per_byte=ratio, images=images,
                            )  # fmt: skip
                        except ContextOverflowError:
                            raise refused from None  # the question alone is too long
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
            self.changes.emit(MessagesChanged(chat.id))
            raise
        saved = await self._finish(
            store, answer.id, text, reasoning, status, error, started, fields
        )
        self.changes.emit(MessagesChanged(chat.id))
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
        if fields.get("completion_tokens") is None and text:
            # The server did not report usage: count the text chunks (about one token each)
            # so the answer's stats line has a figure (app.chat.stats).
            fields = {**fields, "completion_tokens": len(text)}
        try:
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
        finally:  # written or not (the vault locked), nobody writes it any more
            self.streaming.discard(message_id)
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

    @property
    def vector_search_available(self) -> bool:
        """Whether every open chat database loaded sqlite-vec (else retrieval over
        attachments ranks by keywords alone)."""
        return all(self.library.store(tier).vectors_available for tier in self.library.tiers)

    def close(self) -> None:
        """Cancel the title tasks and close the library on the database thread.

        The library closes after any query still running there: closing a SQLCipher
        connection while another thread steps a statement on it crashes the process.
        A runner this service made itself is stopped too.
        """
        self.cancel_titles()
        self.runner.db_sync(self.library.close)
        if self._owns_runner:
            self.runner.shutdown()

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
            self.changes.emit(ChatRenamed(chat_id))

    async def _model_title(self, chat: Chat, question: str, answer: str) -> str | None:
        """A title from a model the tier allows, or None to fall back to the heuristic.

        The configured ``title_llm`` if the chat's tier allows it, else the chat's own
        model (a Private chat with a cloud title model is titled by its local one)."""
        config = self.config.config
        if not config.llms:
            return None
        candidates: list[tuple[str | None, str | None]] = []
        if config.title_llm:
            candidates.append((config.title_llm, None))
        candidates.append((chat.provider, chat.model))
        chosen: tuple[LLMEntry, str | None] | None = None
        for name, model in candidates:
            try:
                entry = config.llm(name)
            except ConfigError:  # a provider removed from the config
                continue
            if policy.decision(chat.tier, entry.effective_locality).allowed:
                chosen = entry, model
                break
        if chosen is None:
            return None
        entry, model = chosen
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
            async with self._provider_factory(await self._spec(entry, model)) as provider:
                stream = provider.stream_chat(request)
                async with closing(stream):
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            pieces.append(event.text)
        except ProviderError as error:
            log.info("title model failed (%s); using the local fallback", type(error).__name__)
            return None
        return clean_title("".join(pieces))


def default_provider(config: Config, tier: Tier) -> LLMEntry | None:
    """The provider a new chat of ``tier`` gets: the default one if the tier allows it,
    else the first configured one it allows; None when none is allowed.

    The window and the command line both start chats through this.
    """
    if not config.llms:
        return None
    default = config.llm()
    for entry in [default, *(e for e in config.llms if e is not default)]:
        if policy.decision(tier, entry.effective_locality).allowed:
            return entry
    return None


def effective_params(entry: LLMEntry, params: ChatParams) -> ChatParams:
    """The parameters a chat's request is sent with: each of the chat's own values, else
    its provider entry's default (``temperature``, ``top_p``, ``max_tokens``, ``stop`` and
    ``context_size`` in the config), else None (the server's default). The context size
    actually used may be smaller: the server's stated one caps it (``context_window``)."""
    return ChatParams(
        temperature=params.temperature if params.temperature is not None else entry.temperature,
        top_p=params.top_p if params.top_p is not None else entry.top_p,
        max_tokens=params.max_tokens if params.max_tokens is not None else entry.max_tokens,
        context_size=params.context_size or entry.context_size,
        stop=params.stop if params.stop is not None else _stops(entry.stop),
    )


def _stops(stop: list[str] | None) -> tuple[str, ...] | None:
    return None if stop is None else tuple(stop)


def bind_to_allowed_provider(config: Config, chat: Chat) -> Chat:
    """``chat`` as it may be kept in its tier: unchanged if the provider it would use is
    configured and allowed there, else bound to the tier's default provider (or to none
    when no configured provider is allowed; sending then says what to do)."""
    if not config.llms:
        return chat
    try:
        entry: LLMEntry | None = config.llm(chat.provider)
    except ConfigError:
        entry = None
    if entry is not None and policy.decision(chat.tier, entry.effective_locality).allowed:
        return chat
    allowed = default_provider(config, chat.tier)
    if allowed is None:
        return replace(chat, provider=None, model=None)
    return replace(chat, provider=allowed.provider_name, model=allowed.model_name)


def provider_choices(config: Config, tier: Tier) -> list[tuple[LLMEntry, policy.Decision]]:
    """Every configured provider with the tier policy's verdict on it, in config order."""
    return [
        (entry, policy.decision(tier, entry.effective_locality, entry.provider_name))
        for entry in config.llms
    ]


def sending_blocked_reason(config: Config, chat: Chat | None, tier: Tier | None = None) -> str:
    """Why nothing can be sent in ``chat`` (or a new chat of ``tier``); "" when it can."""
    if not config.llms:
        return "No model is set up yet: add a provider in Settings to start chatting."
    tier = chat.tier if chat is not None else (tier or Tier.STANDARD)
    if chat is None:
        entry = default_provider(config, tier)
        if entry is not None:
            return ""
        entry = config.llm()
    else:
        try:
            entry = config.llm(chat.provider)
        except ConfigError as error:
            return f"{error}. Choose another model in the chat settings."
    verdict = policy.decision(tier, entry.effective_locality, entry.provider_name)
    if verdict.allowed:
        return ""
    return f"{verdict.reason}. Choose an allowed model in the chat settings."


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


def _markdown_with_files(library: Library, chat_ids: list[str] | None, path: Path) -> str:
    """The Markdown export of ``chat_ids``; their attachments are saved in the folder
    ``<path>.attachments`` beside it (database thread)."""
    from app.store import transfer

    files = transfer.markdown_attachment_files(library, chat_ids)
    folder = path.with_name(path.name + ".attachments")
    if files:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"cannot create {folder} for the attachments "
                f"({error.strerror or type(error).__name__}); choose another place to export to"
            ) from error
        for store, attachment, name in files:
            store.save_attachment(attachment.id, folder / name)
    return transfer.export_markdown(
        library, chat_ids, attachments_folder=folder.name if files else None
    )


def _read_all(store: ChatStore, attachment_id: str) -> bytes:
    return b"".join(store.read_attachment(attachment_id))


def _store_question(
    store: ChatStore,
    chat_id: str,
    text: str,
    parent_id: str | None,
    prepared: Sequence[Prepared],
    max_bytes: int,
) -> tuple[Message, list[Attachment]]:
    """Save the user's message and its attachments in one transaction (database thread):
    a crash or a refusal leaves both or neither."""
    with store.transaction():
        user = store.add_message(chat_id, "user", text, parent_id=parent_id)
        stored = []
        for ready in prepared:
            new = ready.new
            source: Any = new.path if new.path is not None else io.BytesIO(new.data or b"")
            stored.append(
                store.add_attachment(
                    user.id,
                    source,
                    max_size=max_bytes,
                    name=ready.extracted.name,
                    media_type=ready.extracted.media_type,
                )
            )
    return user, stored


def _history_up_to(thread: list[Message], message_id: str) -> list[Message]:
    for index, message in enumerate(thread):
        if message.id == message_id:
            return thread[: index + 1]
    return thread

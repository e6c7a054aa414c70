"""Retrieval over long attachments: index their chunks, find the ones a question needs.

A long attachment's text arrives as chunks, ``(text, location label)`` pairs such as
``("...", "report.pdf, p. 3")`` (split by ``app.attachments``). :meth:`Retrieval.index`
stores them in the chat's encrypted database with a BM25 index (always) and, when the
chat's provider entry names an ``embedding_model``, one embedding vector per chunk from
that server's embeddings endpoint. :meth:`Retrieval.relevant_chunks` ranks a chat's chunks
for a question by BM25 and, where vectors exist, by cosine similarity of the question's
embedding, and merges both lists by reciprocal-rank fusion.

An embedding request carries the document (or the question) to a server exactly like a
chat request, so it passes the same tier check first (``ChatService.check_policy``):
a Private chat whose embedding entry is a cloud server raises ``PolicyRefusedError``
before any byte is sent. Qt-free; database work runs on the service's database thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config import LLMEntry
from app.errors import ConfigError
from app.logs import register_secret
from app.store.chunks import ChunkHit
from app.store.models import Chat
from providers.embeddings import SupportsEmbeddings

if TYPE_CHECKING:
    from app.chat.service import ChatService, ProviderFactory
    from app.store.chats import ChatStore

log = logging.getLogger(__name__)

#: The constant of reciprocal-rank fusion (Cormack et al. 2009): score = sum 1 / (K + rank).
RRF_K = 60
#: Candidates read from each ranking per chunk wanted, before fusion.
CANDIDATES_PER_CHUNK = 4


@dataclass(frozen=True, slots=True)
class IndexResult:
    """What :meth:`Retrieval.index` stored: chunks, and vectors made (0 without a model)."""

    chunks: int
    embedded: int
    model: str | None


@dataclass(frozen=True, slots=True)
class RelevantChunk:
    """One chunk chosen for a question, with where it came from and why."""

    chunk_id: int
    attachment_id: str
    label: str
    text: str
    #: Reciprocal-rank fusion score (higher is more relevant).
    score: float
    #: 1-based rank by BM25 and by vector similarity; None where that ranking missed it.
    bm25_rank: int | None
    vector_rank: int | None


class Retrieval:
    """Chunk indexing and retrieval for the chats of a ``ChatService``."""

    def __init__(self, service: ChatService, provider_factory: ProviderFactory) -> None:
        self._service = service
        self._provider_factory = provider_factory

    def embedding_entry(self, chat: Chat) -> LLMEntry | None:
        """The entry whose ``embedding_model`` serves ``chat`` (its own provider's), if any."""
        entry = self._service.provider_entry(chat)
        return entry if entry.embedding_model else None

    async def index(
        self, chat_id: str, attachment_id: str, chunks: Sequence[tuple[str, str]]
    ) -> IndexResult:
        """Index an attachment's chunks (replacing earlier ones) for retrieval.

        BM25 always; embeddings too when the chat's entry names an ``embedding_model``.
        PolicyRefusedError (nothing stored, nothing sent) when the chat's tier may not use
        that entry; a provider error from the embeddings request leaves the BM25 index.
        """
        store, chat = await self._chat(chat_id)
        entry = self.embedding_entry(chat)
        if entry is not None:
            self._service.check_policy(chat, entry)
        ids = await self._service.runner.db(store.index_chunks, attachment_id, chunks)
        if entry is None or not store.vectors_available:
            return IndexResult(chunks=len(ids), embedded=0, model=None)
        embedded = await self._embed_missing(store, chat, entry)
        return IndexResult(chunks=len(ids), embedded=embedded, model=entry.embedding_model)

    async def relevant_chunks(self, chat_id: str, question: str, k: int) -> list[RelevantChunk]:
        """The ``k`` chunks of the chat's attachments most relevant to ``question``."""
        if k <= 0:
            return []
        store, chat = await self._chat(chat_id)
        wanted = k * CANDIDATES_PER_CHUNK
        by_words = await self._service.runner.db(
            store.search_chunks, chat_id, question, limit=wanted
        )
        by_meaning: list[ChunkHit] = []
        entry = self.embedding_entry(chat)
        if entry is not None and store.vectors_available:
            model = str(entry.embedding_model)
            if await self._service.runner.db(store.count_vectors, chat_id, model):
                self._service.check_policy(chat, entry)
                (vector,) = await self._embed(entry, model, [question])
                by_meaning = await self._service.runner.db(
                    store.nearest_chunks, chat_id, vector, model, limit=wanted
                )
        return fuse(by_words, by_meaning, k)

    async def _chat(self, chat_id: str) -> tuple[ChatStore, Chat]:
        runner = self._service.runner
        store = await runner.db(self._service.library.store_of, chat_id)
        return store, await runner.db(store.chat, chat_id)

    async def _embed_missing(self, store: ChatStore, chat: Chat, entry: LLMEntry) -> int:
        model = str(entry.embedding_model)
        pending = await self._service.runner.db(store.chunks_without_vectors, chat.id, model)
        if not pending:
            return 0
        vectors = await self._embed(entry, model, [text for _, text in pending])
        await self._service.runner.db(
            store.store_vectors,
            model,
            [(chunk_id, vector) for (chunk_id, _), vector in zip(pending, vectors, strict=True)],
        )
        return len(vectors)

    async def _embed(self, entry: LLMEntry, model: str, texts: list[str]) -> list[list[float]]:
        """Vectors for ``texts`` from ``entry``'s server (the caller checked the policy)."""
        key = await self._service.api_keys.resolve(entry)
        register_secret(key)
        provider = self._provider_factory(entry.to_spec(key))
        async with provider:
            if not isinstance(provider, SupportsEmbeddings):
                raise ConfigError(
                    f"provider '{entry.provider_name}' (type {entry.type}) has no embeddings "
                    "endpoint; remove its `embedding_model` or name an OpenAI-compatible or "
                    "Ollama server's embedding model"
                )
            log.debug("embedding %d texts with %s", len(texts), entry.provider_name)
            return await provider.embed(texts, model)


def fuse(
    by_words: Sequence[ChunkHit], by_meaning: Sequence[ChunkHit], k: int
) -> list[RelevantChunk]:
    """Merge two rankings by reciprocal-rank fusion; the ``k`` best, best first."""
    scores: dict[int, float] = {}
    hits: dict[int, ChunkHit] = {}
    ranks: dict[int, list[int | None]] = {}
    for position, ranking in enumerate((by_words, by_meaning)):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            hits.setdefault(hit.chunk_id, hit)
            ranks.setdefault(hit.chunk_id, [None, None])[position] = rank
    best = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))[:k]
    return [
        RelevantChunk(
            chunk_id=chunk_id,
            attachment_id=hits[chunk_id].attachment_id,
            label=hits[chunk_id].label,
            text=hits[chunk_id].text,
            score=scores[chunk_id],
            bm25_rank=ranks[chunk_id][0],
            vector_rank=ranks[chunk_id][1],
        )
        for chunk_id in best
    ]

"""Retrieval over long attachments (issue 14): indexing with and without embeddings,
reciprocal-rank fusion, and the tier policy on embedding requests (a Private chat's
document never reaches a cloud embedding model; nothing is sent, nothing stored)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.chat.retrieval import RRF_K, Retrieval, fuse
from app.chat.service import ChatService
from app.config import LoadedConfig, parse_config
from app.errors import ConfigError, ExitCode, PolicyRefusedError
from app.store.chunks import ChunkHit
from app.store.library import Library, memory_connection
from app.store.models import Tier
from providers import ProviderSpec
from providers import create_provider as real_provider

CONFIG = """
default_llm: local
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:1/v1', model_name: m,
     embedding_model: emb}
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud, api_key: '${KEY}', embedding_model: emb-cloud}
  - {provider_name: plain, type: openai, base_url: 'http://127.0.0.1:2/v1', model_name: p}
  - {provider_name: claude, type: anthropic, base_url: 'http://127.0.0.1:3', model_name: c,
     embedding_model: none}
"""

CHUNKS = [
    ("The lease ends on 31 March 2027.", "lease.pdf, p. 1"),
    ("Rent is 1,200 euros a month.", "lease.pdf, p. 2"),
    ("Pets are allowed with consent.", "lease.pdf, p. 3"),
    ("The boiler is serviced every spring.", "lease.pdf, p. 4"),
]

# A toy embedding: one axis per topic word, so "money" questions land on the rent chunk
# although they share no word with it (BM25 alone cannot find it).
AXES = [("lease", "ends", "2027"), ("rent", "euros", "money", "pay"), ("pets", "dog")]


def toy_vector(text: str) -> list[float]:
    words = text.lower().replace(",", " ").replace("?", " ").replace(".", " ").split()
    return [1.0 + sum(w in axis for w in words) * 10 for axis in AXES]


class Harness:
    def __init__(self) -> None:
        self.library = Library(memory_connection(), memory_connection())
        config = parse_config(CONFIG, "test", {"KEY": "sk-test"}, lambda: ["openai", "anthropic"])
        self.service = ChatService(self.library, LoadedConfig(config, None, {}))
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.retrieval = Retrieval(self.service, self._factory)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.sent.append((f"{request.url.host} {request.url.path}", body))
        data = [
            {"object": "embedding", "index": i, "embedding": toy_vector(text)}
            for i, text in enumerate(body["input"])
        ]
        return httpx.Response(200, json={"object": "list", "data": data})

    def _factory(self, spec: ProviderSpec) -> Any:
        return real_provider(spec, transport=httpx.MockTransport(self._handle))

    def attachment(self, tier: Tier, provider: str) -> tuple[str, str]:
        store = self.library.store(tier)
        chat = store.create_chat(provider=provider)
        message = store.add_message(chat.id, "user", "see attached", parent_id=None)
        attachment = store.add_attachment(
            message.id, io.BytesIO(b"lease"), max_size=1 << 20, name="lease.pdf"
        )
        return chat.id, attachment.id


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.service.close()
    harness.library.close()


async def test_index_embeds_every_chunk_and_fusion_finds_by_meaning(h: Harness) -> None:
    chat_id, attachment_id = h.attachment(Tier.STANDARD, "local")
    result = await h.retrieval.index(chat_id, attachment_id, CHUNKS)
    assert (result.chunks, result.embedded, result.model) == (4, 4, "emb")
    ((route, body),) = h.sent
    assert route == "127.0.0.1 /v1/embeddings"
    assert body["model"] == "emb" and body["input"] == [text for text, _ in CHUNKS]
    hits = await h.retrieval.relevant_chunks(chat_id, "how much money do I pay", 2)
    assert hits[0].label == "lease.pdf, p. 2"
    assert hits[0].bm25_rank is None and hits[0].vector_rank == 1
    assert h.sent[-1][1]["input"] == ["how much money do I pay"]


async def test_words_and_meaning_agreeing_rank_first(h: Harness) -> None:
    chat_id, attachment_id = h.attachment(Tier.STANDARD, "local")
    await h.retrieval.index(chat_id, attachment_id, CHUNKS)
    hits = await h.retrieval.relevant_chunks(chat_id, "are pets allowed", 3)
    assert hits[0].label == "lease.pdf, p. 3"
    assert hits[0].bm25_rank == 1 and hits[0].vector_rank == 1
    assert hits[0].score == pytest.approx(2 / (RRF_K + 1))
    assert len(hits) == 3


async def test_without_embedding_model_bm25_only_and_nothing_sent(h: Harness) -> None:
    chat_id, attachment_id = h.attachment(Tier.STANDARD, "plain")
    result = await h.retrieval.index(chat_id, attachment_id, CHUNKS)
    assert (result.chunks, result.embedded, result.model) == (4, 0, None)
    hits = await h.retrieval.relevant_chunks(chat_id, "when does the lease end?", 2)
    assert hits[0].label == "lease.pdf, p. 1"
    assert hits[0].vector_rank is None
    assert await h.retrieval.relevant_chunks(chat_id, "money", 2) == []
    assert h.sent == []


async def test_private_chat_with_cloud_embedding_entry_is_refused_before_sending(
    h: Harness,
) -> None:
    chat_id, attachment_id = h.attachment(Tier.PRIVATE, "cloud")
    with pytest.raises(PolicyRefusedError) as caught:
        await h.retrieval.index(chat_id, attachment_id, CHUNKS)
    assert caught.value.exit_code == ExitCode.POLICY
    assert "cloud" in str(caught.value)
    assert h.sent == []
    store = h.library.store(Tier.PRIVATE)
    assert store.count_chunks(chat_id) == 0  # nothing stored either


async def test_question_embedding_obeys_the_policy_too(h: Harness) -> None:
    """Vectors made while the entry was allowed; then the config calls it cloud."""
    chat_id, attachment_id = h.attachment(Tier.PRIVATE, "local")
    await h.retrieval.index(chat_id, attachment_id, CHUNKS)
    sent = len(h.sent)
    moved = CONFIG.replace("embedding_model: emb}", "embedding_model: emb, locality: paid_cloud}")
    config = parse_config(moved, "test", {"KEY": "k"}, lambda: ["openai", "anthropic"])
    h.service.config = LoadedConfig(config, None, {})
    with pytest.raises(PolicyRefusedError):
        await h.retrieval.relevant_chunks(chat_id, "how much rent", 2)
    assert len(h.sent) == sent


async def test_a_type_without_embeddings_says_what_to_do(h: Harness) -> None:
    chat_id, attachment_id = h.attachment(Tier.STANDARD, "claude")
    with pytest.raises(ConfigError, match="has no embeddings endpoint; remove its"):
        await h.retrieval.index(chat_id, attachment_id, CHUNKS)
    assert h.library.store(Tier.STANDARD).count_chunks(chat_id) == 4  # BM25 still works


def hit(chunk_id: int) -> ChunkHit:
    return ChunkHit(chunk_id, "a", chunk_id, f"p. {chunk_id}", "t", 0.0)


def test_fusion_rewards_agreement_and_keeps_k() -> None:
    fused = fuse([hit(1), hit(2), hit(3)], [hit(3), hit(4), hit(1)], 3)
    assert [c.chunk_id for c in fused] == [1, 3, 2]
    assert (fused[1].bm25_rank, fused[1].vector_rank) == (3, 1)
    assert fuse([], [], 5) == []
    assert [c.chunk_id for c in fuse([hit(7)], [], 5)] == [7]

"""Retrieval figures (issue 14): a chat with 10,000 attachment chunks (about 200 words
each) in an encrypted chat database, each with a 384-dimension float32 vector; the median
time of a BM25 query (FTS5) and of a nearest-vector query (sqlite-vec cosine distance,
brute force over plain BLOB columns), against the budget of 50 ms median each.

The database is created and opened by the vault's own functions (every pragma the app
uses); queries are timed after one warm-up query, over distinct questions. The first
vector query decrypts every vector page (reported on its own, no budget); later ones find
them in the page cache that ``app.store.chunks`` sizes for the chat's vectors.
"""

from __future__ import annotations

import io
import random
import secrets
import statistics
import string
import tempfile
import time
from pathlib import Path

import numpy as np

from app.store.chats import ChatStore
from app.store.models import Tier
from app.vault.database import create_database, open_database
from tests.benchmarks._table import BenchmarkUnavailableError, Row

CHUNKS = 10_000
WORDS_PER_CHUNK = 200
DIMENSION = 384
QUERIES = 30
K = 24  # candidates per ranking: retrieval_chunks (6) x CANDIDATES_PER_CHUNK (4)
BUDGET_MS = 50.0


class Corpus:
    """Words drawn from a 20,000-word vocabulary with Zipf frequencies (as bench_store)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        letters = string.ascii_lowercase
        self.vocabulary = [
            "".join(self.rng.choice(letters) for _ in range(self.rng.randint(3, 9)))
            for _ in range(20_000)
        ]
        self.weights = [1 / (rank + 1) for rank in range(len(self.vocabulary))]

    def texts(self, count: int, words: int) -> list[str]:
        drawn = self.rng.choices(self.vocabulary, self.weights, k=count * words)
        return [" ".join(drawn[i * words : (i + 1) * words]) for i in range(count)]


def run() -> list[Row]:
    corpus = Corpus(seed=14)
    texts = corpus.texts(CHUNKS, WORDS_PER_CHUNK)
    questions = [" ".join(q.split()[:8]) + "?" for q in corpus.texts(QUERIES, 30)]
    rng = np.random.default_rng(14)
    vectors = rng.standard_normal((CHUNKS, DIMENSION), dtype=np.float32)
    probes = rng.standard_normal((QUERIES, DIMENSION), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        key = secrets.token_bytes(32)
        database = Path(folder) / "standard.db"
        create_database(database, key)
        conn = open_database(database, key)
        try:
            store = ChatStore(conn, Tier.STANDARD)
            if not store.vectors_available:
                raise BenchmarkUnavailableError("sqlite-vec cannot be loaded on this platform")
            chat = store.create_chat()
            message = store.add_message(chat.id, "user", "see attached", parent_id=None)
            attachment = store.add_attachment(
                message.id, io.BytesIO(b"x"), max_size=1 << 20, name="big.txt"
            )
            started = time.perf_counter()
            ids = store.index_chunks(
                attachment.id, [(t, f"big.txt, p. {i // 3 + 1}") for i, t in enumerate(texts)]
            )
            indexed = time.perf_counter() - started
            started = time.perf_counter()
            store.store_vectors(
                "bench", [(i, v.tolist()) for i, v in zip(ids, vectors, strict=True)]
            )
            stored = time.perf_counter() - started
            store.search_chunks(chat.id, questions[0], limit=K)
            bm25 = []
            for question in questions:
                started = time.perf_counter()
                hits = store.search_chunks(chat.id, question, limit=K)
                bm25.append(time.perf_counter() - started)
                assert hits, "a question drawn from the corpus finds chunks"
            started = time.perf_counter()
            store.nearest_chunks(chat.id, probes[0].tolist(), "bench", limit=K)
            cold = time.perf_counter() - started
            nearest = []
            for probe in probes:
                started = time.perf_counter()
                hits = store.nearest_chunks(chat.id, probe.tolist(), "bench", limit=K)
                nearest.append(time.perf_counter() - started)
                assert len(hits) == K
        finally:
            conn.close()
    return [
        Row(f"retrieval: index {CHUNKS:,} chunks of {WORDS_PER_CHUNK} words", indexed, "s"),
        Row(f"retrieval: store {CHUNKS:,} vectors of {DIMENSION} floats", stored, "s"),
        Row(
            f"retrieval: BM25 query over {CHUNKS:,} chunks (median)",
            statistics.median(bm25) * 1000,
            "ms",
            budget=BUDGET_MS,
        ),
        Row("retrieval: first nearest-vector query (pages decrypted)", cold * 1000, "ms"),
        Row(
            f"retrieval: nearest-vector query over {CHUNKS:,} chunks, dim {DIMENSION} (median)",
            statistics.median(nearest) * 1000,
            "ms",
            budget=BUDGET_MS,
        ),
    ]

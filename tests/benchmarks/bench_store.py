"""Chat store figures (DESIGN §8): SQLCipher insert cost vs plain sqlite3 on the same
schema, the newest page of a 10,000-message chat, full-text search over 100,000
messages, and the memory those take.

The encrypted databases are created and opened by the vault's own functions, so the
figures include every pragma the app uses. Text is drawn from a Zipf distribution over
a 20,000-word vocabulary, so common words match tens of thousands of messages, as in
real chats.
"""

from __future__ import annotations

import gc
import os
import random
import secrets
import sqlite3
import statistics
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from app.store.chats import ChatStore
from app.store.models import Tier
from app.vault.database import create_database, open_database
from tests.benchmarks._records import thread_chat
from tests.benchmarks._table import Row

INSERTS = 2000
CHATS = 10
PER_CHAT = 10_000


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        letters = string.ascii_lowercase
        self.vocabulary = [
            "".join(self.rng.choice(letters) for _ in range(self.rng.randint(3, 9)))
            for _ in range(20_000)
        ]
        self.weights = [1 / (rank + 1) for rank in range(len(self.vocabulary))]

    def texts(self, count: int, words: int = 40) -> list[str]:
        drawn = self.rng.choices(self.vocabulary, self.weights, k=count * words)
        return [" ".join(drawn[i * words : (i + 1) * words]) for i in range(count)]


def _encrypted(path: Path, key: bytes) -> Any:
    if not path.exists():
        create_database(path, key)
    return open_database(path, key)


def _plain(path: Path) -> Any:
    """Plain sqlite3 with the same journal, sync and delete settings as the vault's."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _insert_seconds(conn: Any, texts: list[str]) -> float:
    """Seconds for ChatStore.add_message of every text (one transaction each, as in use)."""
    store = ChatStore(conn, Tier.STANDARD)
    chat = store.create_chat()
    parent = None
    start = time.perf_counter()
    for text in texts:
        parent = store.add_message(chat.id, "user", text, parent_id=parent).id
    return time.perf_counter() - start


def _bulk_chat(store: ChatStore, texts: list[str]) -> str:
    """A chat holding ``texts`` as one long thread (set-up, not measured)."""
    return thread_chat(store, texts)


def run() -> list[Row]:
    corpus = Corpus()
    process = psutil.Process(os.getpid())
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        key = secrets.token_bytes(32)
        texts = corpus.texts(INSERTS)
        # Alternate halves so that disk and load noise hit both sides alike.
        half = INSERTS // 2
        encrypted_conn = _encrypted(root / "enc-insert.db", key)
        plain_conn = _plain(root / "plain-insert.db")
        encrypted = _insert_seconds(encrypted_conn, texts[:half])
        plain = _insert_seconds(plain_conn, texts[:half])
        plain += _insert_seconds(plain_conn, texts[half:])
        encrypted += _insert_seconds(encrypted_conn, texts[half:])
        encrypted_conn.close()
        plain_conn.close()
        rows.append(Row("store: insert, plain sqlite3", INSERTS / plain, "msg/s"))
        rows.append(Row("store: insert, SQLCipher (vault settings)", INSERTS / encrypted, "msg/s"))
        rows.append(Row("store: SQLCipher / plain insert time", encrypted / plain, "x", budget=1.5))

        conn = _encrypted(root / "big.db", key)
        store = ChatStore(conn, Tier.STANDARD)
        samples: list[str] = []
        chat_id = ""
        for _ in range(CHATS):
            chat_texts = corpus.texts(PER_CHAT)
            samples.extend(corpus.rng.sample(chat_texts, 3))
            identifier = _bulk_chat(store, chat_texts)
            chat_id = chat_id or identifier
        conn.close()

        gc.collect()
        before = process.memory_info().rss
        start = time.perf_counter()
        conn = _encrypted(root / "big.db", key)
        reopened = ChatStore(conn, Tier.STANDARD)
        page = reopened.thread(chat_id, limit=100)
        first_page = (time.perf_counter() - start) * 1000
        growth = (process.memory_info().rss - before) / 2**20
        assert len(page.messages) == 100 and page.has_older
        rows.append(
            Row("store: open + newest page of a 10,000-msg chat", first_page, "ms", budget=150)
        )
        rows.append(Row("store: memory growth for it", growth, "MB", budget=50))

        # Queries: one or two words a person remembers from a message, from rare to common.
        queries = []
        for text in samples:
            words = text.split()
            queries.append(corpus.rng.choice(words))
            queries.append(" ".join(corpus.rng.sample(words, 2)))
        timings = []
        for query in queries:
            start = time.perf_counter()
            hits = reopened.search(query, limit=50)
            timings.append((time.perf_counter() - start) * 1000)
            assert hits, query
        timings.sort()
        rows.append(
            Row(
                f"store: full-text search, {CHATS * PER_CHAT:,} msgs (median)",
                statistics.median(timings),
                "ms",
                budget=50,
                note=f"p90 {timings[int(len(timings) * 0.9)]:.1f} ms, {len(queries)} queries",
            )
        )
        conn.close()
    return rows

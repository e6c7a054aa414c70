"""The chunk index of long attachments (issue 14, retrieval): BM25 over a chat's chunks,
hostile queries, vectors with sqlite-vec, cascade deletes, migration from version 6."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

from app.store import chunks
from app.store.chats import ChatStore, StorageError
from app.store.library import Library, memory_connection
from app.store.migrations import LATEST, current_version
from app.store.models import Tier

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "store"

CHUNKS = [
    ("The lease ends on 31 March 2027 and renews for one year.", "lease.pdf, p. 1"),
    ("Rent is 1,200 euros a month, due on the first day.", "lease.pdf, p. 2"),
    ("Pets are allowed with written consent of the landlord.", "lease.pdf, p. 3"),
    ("The deposit equals three months of rent.", "lease.pdf, p. 4"),
]


@pytest.fixture
def library() -> Iterator[Library]:
    lib = Library(memory_connection(), memory_connection())
    yield lib
    lib.close()


@pytest.fixture
def store(library: Library) -> ChatStore:
    return library.store(Tier.STANDARD)


def attach(store: ChatStore, chat_id: str | None = None) -> tuple[str, str, str]:
    """(chat id, message id, attachment id) of a new attachment."""
    chat_id = chat_id or store.create_chat().id
    message = store.add_message(chat_id, "user", "see attached", parent_id=None)
    attachment = store.add_attachment(
        message.id, io.BytesIO(b"lease text"), max_size=1 << 20, name="lease.pdf"
    )
    return chat_id, message.id, attachment.id


def rows(store: ChatStore, table: str) -> int:
    return int(store._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def fts_rows(store: ChatStore, word: str) -> int:
    """Index entries for ``word`` (the external-content index keeps its own copy)."""
    conn = store._conn
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_vocab"
        " USING fts5vocab(main, 'attachment_chunks_fts', 'row')"
    )
    row = conn.execute("SELECT doc FROM temp.chunk_vocab WHERE term = ?", (word,)).fetchone()
    return int(row[0]) if row else 0


def test_bm25_ranks_the_matching_chunk_first_with_its_label(store: ChatStore) -> None:
    chat_id, _, attachment_id = attach(store)
    ids = store.index_chunks(attachment_id, CHUNKS)
    assert len(ids) == 4
    assert store.count_chunks(chat_id) == 4
    assert store.count_chunks(chat_id, attachment_id) == 4
    hits = store.search_chunks(chat_id, "how much is the rent each month?", limit=3)
    assert hits[0].label == "lease.pdf, p. 2"
    assert hits[0].attachment_id == attachment_id
    assert hits[0].score >= hits[-1].score
    assert store.search_chunks(chat_id, "are pets allowed")[0].label == "lease.pdf, p. 3"


def test_search_stays_within_the_chat(store: ChatStore) -> None:
    chat_a, _, att_a = attach(store)
    chat_b, _, att_b = attach(store)
    store.index_chunks(att_a, CHUNKS)
    store.index_chunks(att_b, [("Nothing about money here.", "other.txt")])
    assert {h.attachment_id for h in store.search_chunks(chat_b, "rent deposit money")} == {att_b}
    assert all(h.attachment_id == att_a for h in store.search_chunks(chat_a, "rent deposit"))


def test_reindexing_replaces_the_chunks(store: ChatStore) -> None:
    chat_id, _, attachment_id = attach(store)
    store.index_chunks(attachment_id, CHUNKS)
    store.index_chunks(attachment_id, [("Only one chunk now.", "lease.pdf, p. 1")])
    assert store.count_chunks(chat_id) == 1
    assert store.search_chunks(chat_id, "rent") == []
    assert fts_rows(store, "rent") == 0


@pytest.mark.parametrize(
    "query",
    [
        '"a" OR NEAR(',
        "*",
        "-x",
        "rent:",
        "^rent",
        'rent" OR "x',
        "NOT AND OR",
        "(rent",
        '"',
        "",
        "   ",
        "café naïve 租金 🏠",
        "rent\x00month",
    ],
)
def test_hostile_queries_never_raise(store: ChatStore, query: str) -> None:
    chat_id, _, attachment_id = attach(store)
    store.index_chunks(attachment_id, CHUNKS)
    hits = store.search_chunks(chat_id, query)
    assert isinstance(hits, list)


def test_operator_words_are_plain_words(store: ChatStore) -> None:
    chat_id, _, attachment_id = attach(store)
    store.index_chunks(attachment_id, [*CHUNKS, ("Use NEAR or OR as words.", "ops.txt")])
    assert [h.label for h in store.search_chunks(chat_id, "NEAR(")] == ["ops.txt"]
    assert store.search_chunks(chat_id, "-rent")  # not a NOT: finds the rent chunks


def test_unicode_and_diacritics_match(store: ChatStore) -> None:
    chat_id, _, attachment_id = attach(store)
    store.index_chunks(attachment_id, [("Le café est fermé le dimanche.", "fr.txt, p. 1")])
    assert [h.label for h in store.search_chunks(chat_id, "cafe ferme")] == ["fr.txt, p. 1"]


def test_vector_search_returns_the_nearest_chunks(store: ChatStore) -> None:
    assert store.vectors_available
    chat_id, _, attachment_id = attach(store)
    ids = store.index_chunks(attachment_id, CHUNKS)
    vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.7, 0.7, 0.0]]
    assert store.chunks_without_vectors(chat_id, "m") == list(
        zip(ids, [t for t, _ in CHUNKS], strict=True)
    )
    store.store_vectors("m", list(zip(ids, vectors, strict=True)))
    assert store.count_vectors(chat_id) == 4
    assert store.chunks_without_vectors(chat_id, "m") == []
    hits = store.nearest_chunks(chat_id, [0.1, 0.9, 0.0], "m", limit=2)
    assert [h.label for h in hits] == ["lease.pdf, p. 2", "lease.pdf, p. 4"]
    assert hits[0].score > hits[1].score
    # Vectors of another model (or dimension) are not compared.
    assert store.nearest_chunks(chat_id, [0.1, 0.9, 0.0], "other") == []
    assert store.nearest_chunks(chat_id, [0.1, 0.9], "m") == []


def test_vectors_round_trip_as_float32_blobs() -> None:
    blob = chunks.pack_vector([0.5, -1.0, 2.0])
    assert len(blob) == 12
    assert chunks.unpack_vector(blob) == [0.5, -1.0, 2.0]


def test_unusable_vectors_are_refused_and_nothing_is_stored(store: ChatStore) -> None:
    chat_id, _, attachment_id = attach(store)
    ids = store.index_chunks(attachment_id, CHUNKS)
    with pytest.raises(StorageError, match="unusable vector"):
        store.store_vectors("m", [(ids[0], [1.0]), (ids[1], [float("nan")])])
    with pytest.raises(StorageError, match="unusable vector"):
        store.store_vectors("m", [(ids[0], [])])
    assert store.count_vectors(chat_id) == 0


def test_no_other_extension_can_be_loaded(store: ChatStore) -> None:
    assert store.vectors_available
    with pytest.raises(sqlcipher3.OperationalError, match="not authorized"):
        store._conn.execute("SELECT load_extension('x')").fetchone()


def test_without_the_extension_vector_search_is_empty(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sqlite_vec", None)  # import fails
    monkeypatch.setattr(chunks, "_warned_unavailable", False)
    conn = memory_connection()
    store = ChatStore(conn, Tier.EPHEMERAL)
    assert not store.vectors_available
    assert "BM25 only" in caplog.text
    chat_id, _, attachment_id = attach(store)
    store.index_chunks(attachment_id, CHUNKS)
    assert store.nearest_chunks(chat_id, [1.0, 0.0, 0.0], "m") == []
    assert store.search_chunks(chat_id, "rent")
    store.close()


def _with_vectors(store: ChatStore) -> tuple[str, str, str]:
    chat_id, message_id, attachment_id = attach(store)
    ids = store.index_chunks(attachment_id, CHUNKS)
    store.store_vectors("m", [(i, [1.0, float(n)]) for n, i in enumerate(ids)])
    return chat_id, message_id, attachment_id


def _empty(store: ChatStore) -> None:
    assert rows(store, "attachment_chunks") == 0
    assert rows(store, "chunk_vectors") == 0
    assert fts_rows(store, "rent") == 0


def test_deleting_the_message_removes_chunks_index_rows_and_vectors(store: ChatStore) -> None:
    _, message_id, _ = _with_vectors(store)
    assert fts_rows(store, "rent") == 2
    store.delete_message(message_id)
    _empty(store)


def test_purging_the_chat_removes_chunks_index_rows_and_vectors(store: ChatStore) -> None:
    chat_id, _, _ = _with_vectors(store)
    store.mark_deleted(chat_id)
    store.purge(chat_id)
    _empty(store)


def test_resetting_the_chat_removes_its_chunks(store: ChatStore) -> None:
    chat_id, _, _ = _with_vectors(store)
    store.reset(chat_id)
    _empty(store)


def test_version_6_database_upgrades_and_indexes_its_attachment() -> None:
    conn: Any = sqlcipher3.connect(":memory:", isolation_level=None)
    conn.executescript((FIXTURES / "schema_v6.sql").read_text(encoding="utf-8"))
    assert current_version(conn) == 6
    store = ChatStore(conn, Tier.STANDARD)
    assert current_version(conn) == LATEST
    (attachment,) = store.chat_attachments("c1")
    assert b"".join(store.read_attachment(attachment.id)) == b"Fixture attachment text.\n"
    store.index_chunks(attachment.id, [("Fixture attachment text.", "notes.txt")])
    assert [h.label for h in store.search_chunks("c1", "fixture")] == ["notes.txt"]
    store.delete_message("m1")
    assert store.count_chunks("c1") == 0


def test_words_in_most_chunks_are_left_out_but_never_all(store: ChatStore) -> None:
    chat_id, _, attachment_id = attach(store)
    store.index_chunks(attachment_id, CHUNKS)
    conn = store._conn
    assert chunks._rare_words(conn, ["the", "rent", "zebra"]) == ["rent", "zebra"]
    assert chunks._rare_words(conn, ["the", "of"]) == ["of"]
    assert chunks._rare_words(conn, ["the", "the"]) == ["the", "the"]  # all common: kept
    assert store.search_chunks(chat_id, "the rent of the month")[0].label == "lease.pdf, p. 2"
    assert store.search_chunks(chat_id, "the the the")  # only common words: still answered


def test_vector_search_grows_the_page_cache_to_hold_the_vectors(store: ChatStore) -> None:
    chat_id, _, _ = _with_vectors(store)
    store._conn.execute("PRAGMA cache_size = -100")
    store.search_chunks(chat_id, "rent")
    assert store._conn.execute("PRAGMA cache_size").fetchone()[0] == -100
    store.nearest_chunks(chat_id, [1.0, 0.5], "m")
    assert store._conn.execute("PRAGMA cache_size").fetchone()[0] == -4096  # KiB, 4 chunks
    store._conn.execute("PRAGMA cache_size = -9000")
    store.nearest_chunks(chat_id, [1.0, 0.5], "m")
    assert store._conn.execute("PRAGMA cache_size").fetchone()[0] == -9000  # never shrinks


def test_a_move_between_tiers_carries_chunks_and_vectors(library: Library) -> None:
    standard, private = library.store(Tier.STANDARD), library.store(Tier.PRIVATE)
    chat_id, _, attachment_id = _with_vectors(standard)
    library.move(chat_id, Tier.PRIVATE)
    assert private.count_chunks(chat_id, attachment_id) == 4
    assert private.count_vectors(chat_id, "m") == 4
    assert private.search_chunks(chat_id, "rent")[0].label in {"lease.pdf, p. 2", "lease.pdf, p. 4"}
    assert private.nearest_chunks(chat_id, [1.0, 3.0], "m", limit=1)[0].label == "lease.pdf, p. 4"
    _empty(standard)

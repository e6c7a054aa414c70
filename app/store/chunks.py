"""The chunk index of long attachments: BM25 (FTS5) and embedding vectors (migration 7).

An attachment too long to send whole is split into chunks elsewhere (``app.attachments``);
this module stores them as ``(text, label)`` rows of ``attachment_chunks`` (the label says
where the chunk came from, such as ``"report.pdf, p. 3"``), keeps an FTS5 index over their
text (external content, triggers), and stores one embedding vector per chunk as a plain
little-endian float32 BLOB in ``chunk_vectors``.

Nearest chunks by vector use ``vec_distance_cosine`` from the sqlite-vec extension over
those ordinary BLOB columns (a brute-force scan at C speed; no virtual table, so the
database stays fully readable without the extension). The extension is loaded into the
connection by :func:`load_vector_extension`, which switches extension loading off again at
once so no SQL can load anything else. Where it cannot be loaded (an unsupported platform)
vector search is unavailable and retrieval falls back to BM25 alone.

All functions expect to run inside the caller's transaction where they write.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_warned_unavailable = False


@dataclass(frozen=True, slots=True)
class ChunkHit:
    """One chunk found for a query; ``score`` is higher for better (BM25: -rank;
    vectors: 1 - cosine distance)."""

    chunk_id: int
    attachment_id: str
    idx: int
    label: str
    text: str
    score: float


def load_vector_extension(conn: Any) -> bool:
    """Load sqlite-vec into ``conn``; False (logged once) where it cannot be loaded."""
    global _warned_unavailable
    try:
        path = _extension_path()
        conn.enable_load_extension(True)
        try:
            conn.load_extension(path)
        finally:
            conn.enable_load_extension(False)
    except Exception as error:  # ImportError, OSError, sqlcipher3's OperationalError...
        if not _warned_unavailable:
            _warned_unavailable = True
            log.warning(
                "vector search unavailable, retrieval uses BM25 only: %s", error, exc_info=True
            )
        return False
    return True


def _extension_path() -> str:
    """Where sqlite-vec's loadable extension is (SQLite adds .so, .dylib or .dll).

    Found without importing the ``sqlite_vec`` package, which imports the standard
    library's sqlite3 (left out of the desktop bundle: the databases are SQLCipher's).
    """
    spec = importlib.util.find_spec("sqlite_vec")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not folders:
        raise ImportError("the sqlite-vec package is not installed")
    return str(Path(folders[0]) / "vec0")


def pack_vector(vector: Sequence[float]) -> bytes:
    """A vector as the little-endian float32 BLOB that sqlite-vec reads."""
    if not vector:
        raise ValueError("an embedding vector must not be empty")
    if not all(math.isfinite(v) for v in vector):
        raise ValueError("an embedding vector must hold finite numbers only")
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack_vector(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def add_chunks(
    conn: Any, attachment_id: str, chat_id: str, chunks: Sequence[tuple[str, str]]
) -> list[int]:
    """Replace an attachment's chunks with ``chunks`` ((text, label) pairs); their ids."""
    conn.execute("DELETE FROM attachment_chunks WHERE attachment_id = ?", (attachment_id,))
    ids: list[int] = []
    for idx, (text, label) in enumerate(chunks):
        cursor = conn.execute(
            "INSERT INTO attachment_chunks (attachment_id, chat_id, idx, label, text)"
            " VALUES (?, ?, ?, ?, ?)",
            (attachment_id, chat_id, idx, label, text),
        )
        ids.append(int(cursor.lastrowid))
    return ids


def copy_chunks(source: Any, target: Any, attachment_id: str, chat_id: str) -> None:
    """Copy an attachment's chunks and their vectors from ``source`` into ``target`` (a
    move between tiers; inside the target's transaction). Chunk ids are the target's own."""
    rows = source.execute(
        "SELECT c.id, c.idx, c.label, c.text FROM attachment_chunks c"
        " WHERE c.attachment_id = ? ORDER BY c.idx",
        (attachment_id,),
    ).fetchall()
    for old_id, idx, label, text in rows:
        cursor = target.execute(
            "INSERT INTO attachment_chunks (attachment_id, chat_id, idx, label, text)"
            " VALUES (?, ?, ?, ?, ?)",
            (attachment_id, chat_id, idx, label, text),
        )
        target.executemany(
            "INSERT INTO chunk_vectors (chunk_id, model, vector) VALUES (?, ?, ?)",
            [
                (cursor.lastrowid, model, vector)
                for model, vector in source.execute(
                    "SELECT model, vector FROM chunk_vectors WHERE chunk_id = ?", (old_id,)
                ).fetchall()
            ],
        )


def set_vectors(conn: Any, model: str, vectors: Sequence[tuple[int, Sequence[float]]]) -> None:
    """Store (or replace) the embedding of each chunk id made with ``model``."""
    conn.executemany(
        "INSERT OR REPLACE INTO chunk_vectors (chunk_id, model, vector) VALUES (?, ?, ?)",
        [(chunk_id, model, pack_vector(vector)) for chunk_id, vector in vectors],
    )


def chunks_without_vectors(conn: Any, chat_id: str, model: str) -> list[tuple[int, str]]:
    """(id, text) of a chat's chunks that have no vector from ``model`` yet."""
    rows = conn.execute(
        "SELECT c.id, c.text FROM attachment_chunks c"
        " LEFT JOIN chunk_vectors v ON v.chunk_id = c.id AND v.model = ?"
        " WHERE c.chat_id = ? AND v.chunk_id IS NULL ORDER BY c.id",
        (model, chat_id),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def count_chunks(conn: Any, chat_id: str, attachment_id: str | None = None) -> int:
    if attachment_id is None:
        row = conn.execute("SELECT COUNT(*) FROM attachment_chunks WHERE chat_id = ?", (chat_id,))
    else:
        row = conn.execute(
            "SELECT COUNT(*) FROM attachment_chunks WHERE chat_id = ? AND attachment_id = ?",
            (chat_id, attachment_id),
        )
    return int(row.fetchone()[0])


def count_vectors(conn: Any, chat_id: str, model: str | None = None) -> int:
    sql = (
        "SELECT COUNT(*) FROM chunk_vectors v JOIN attachment_chunks c ON c.id = v.chunk_id"
        " WHERE c.chat_id = ?"
    )
    if model is None:
        return int(conn.execute(sql, (chat_id,)).fetchone()[0])
    return int(conn.execute(sql + " AND v.model = ?", (chat_id, model)).fetchone()[0])


#: A query word found in more than this share of all chunks is left out of a BM25 query:
#: its IDF is about zero, so it barely changes the ranking, but it makes FTS5 score every
#: chunk (a 10,000-chunk chat: "the" alone costs tens of milliseconds).
COMMON_WORD_SHARE = 0.5
_WORD = re.compile(r"\w+")


def query_words(text: str) -> list[str]:
    """The words of free text as FTS5's unicode61 tokenizer sees them, lower case, once each."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


def match_query(words: Sequence[str]) -> str:
    """A safe FTS5 query: every word a quoted string, joined by OR.

    Quoting turns operators (``OR``, ``NEAR(``, ``*``, ``-``, ``:``, ``^``) into plain
    words, so user input never causes an FTS5 syntax error; OR lets BM25 rank chunks that
    share most words of a question first instead of requiring every word.
    """
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words if w)


def _rare_words(conn: Any, words: list[str]) -> list[str]:
    """``words`` without the ones most chunks contain (all of them if every one is common)."""
    if len(words) < 2:
        return words
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.attachment_chunks_vocab"
        " USING fts5vocab(main, 'attachment_chunks_fts', 'row')"
    )
    total = int(conn.execute("SELECT COUNT(*) FROM attachment_chunks").fetchone()[0])
    counts = dict(
        conn.execute(
            "SELECT term, doc FROM temp.attachment_chunks_vocab"
            " WHERE term IN (SELECT value FROM json_each(?))",
            (json.dumps(words),),
        ).fetchall()
    )
    rare = [w for w in words if counts.get(w, 0) <= total * COMMON_WORD_SHARE]
    return rare or words


def search_bm25(conn: Any, chat_id: str, question: str, limit: int) -> list[ChunkHit]:
    """A chat's chunks that best match ``question`` by BM25, best first."""
    words = query_words(question)
    if not words or limit <= 0:
        return []
    match = match_query(_rare_words(conn, words))
    rows = conn.execute(
        "SELECT c.id, c.attachment_id, c.idx, c.label, c.text, f.rank"
        " FROM attachment_chunks_fts f JOIN attachment_chunks c ON c.id = f.rowid"
        " WHERE attachment_chunks_fts MATCH ? AND c.chat_id = ?"
        " ORDER BY f.rank LIMIT ?",
        (match, chat_id, limit),
    ).fetchall()
    return [_hit(row, -float(row[5])) for row in rows]


def search_vectors(
    conn: Any, chat_id: str, vector: Sequence[float], model: str, limit: int
) -> list[ChunkHit]:
    """A chat's chunks nearest to ``vector`` by cosine distance (vectors of ``model``)."""
    if limit <= 0:
        return []
    _fit_cache(conn, chat_id, len(vector))
    # Distances first, over the vectors alone (the chat's chunk ids come from its index);
    # the chunks' text is read for the ``limit`` nearest only.
    rows = conn.execute(
        "WITH near AS ("
        " SELECT chunk_id, vec_distance_cosine(vector, ?) AS d FROM chunk_vectors"
        " WHERE chunk_id IN (SELECT id FROM attachment_chunks WHERE chat_id = ?)"
        " AND model = ? AND length(vector) = ? ORDER BY d LIMIT ?)"
        " SELECT c.id, c.attachment_id, c.idx, c.label, c.text, near.d"
        " FROM near JOIN attachment_chunks c ON c.id = near.chunk_id ORDER BY near.d",
        (pack_vector(vector), chat_id, model, 4 * len(vector), limit),
    ).fetchall()
    return [_hit(row, 1.0 - float(row[5])) for row in rows]


#: Most page cache a connection is given for vector search, in KiB.
MAX_VECTOR_CACHE_KIB = 64 * 1024


def _fit_cache(conn: Any, chat_id: str, dimension: int) -> None:
    """Grow the connection's page cache to hold the chat's vectors (at most 64 MiB).

    Each nearest-chunk query reads every vector of the chat; with SQLite's default 2 MB
    cache SQLCipher decrypts them all again each time (10,000 x 384 floats: about 100 ms
    here, tests/benchmarks/bench_retrieval.py), with them cached about 20 ms. Only a
    connection that searches vectors grows; it never shrinks (that would drop the pages).
    """
    (chunks,) = conn.execute(
        "SELECT COUNT(*) FROM attachment_chunks WHERE chat_id = ?", (chat_id,)
    ).fetchone()
    wanted = min(int(chunks) * (4 * dimension + 64) * 3 // 2 // 1024 + 4096, MAX_VECTOR_CACHE_KIB)
    (setting,) = conn.execute("PRAGMA cache_size").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    current = -int(setting) if int(setting) < 0 else int(setting) * int(page_size) // 1024
    if wanted > current:
        conn.execute(f"PRAGMA cache_size = {-wanted}")


def optimize(conn: Any) -> None:
    """Merge the chunk index (drops deleted terms; used by ``ChatStore.compact``)."""
    conn.execute("INSERT INTO attachment_chunks_fts (attachment_chunks_fts) VALUES ('optimize')")


def _hit(row: Sequence[Any], score: float) -> ChunkHit:
    return ChunkHit(
        chunk_id=int(row[0]),
        attachment_id=str(row[1]),
        idx=int(row[2]),
        label=str(row[3]),
        text=str(row[4]),
        score=score,
    )

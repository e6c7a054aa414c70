"""Attachment bytes: content-addressed, chunked blobs inside the chat database.

A blob is the content of one or more attachments, named by its sha256 and stored as
numbered chunks of ``CHUNK_SIZE`` bytes (``blobs`` and ``blob_chunks``, migration 6),
so a 50 MB file is never held whole in memory: it is read, hashed and written one
chunk at a time. Being rows of the tier's database, blobs are encrypted with it
(SQLCipher) and Ephemeral ones live in its in-memory database.

The chunks are written under a provisional name and the blob is renamed to its hash
after the last one, in the caller's transaction: a crash at any point leaves either
the whole blob (with its attachment row) or nothing. When the content is already
stored (same hash) the new copy is dropped before commit; for a seekable source the
hash is computed first, so a duplicate is not written at all.

Unreferenced blobs are removed by the ``attachments_release_blob`` trigger when their
last attachment row goes (a message deleted, a chat reset or purged).
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, Final

from app.errors import UsageError

__all__ = [
    "CHUNK_SIZE",
    "SIZE_SETTING",
    "AttachmentRefusedError",
    "blob_chunks",
    "file_chunks",
    "format_size",
    "has_blob",
    "store_blob",
]

CHUNK_SIZE: Final = 1024 * 1024
# The setting that holds the limit callers pass as ``max_size`` (named in refusals).
SIZE_SETTING: Final = "attachments.max_size_mb"


class AttachmentRefusedError(UsageError):
    """A file that cannot be attached (empty, over the size limit, unreadable); nothing
    was stored."""


def format_size(size: int) -> str:
    """A size as people read it: "512 bytes", "12.3 KB", "50.0 MB" (binary units)."""
    if size < 1024:
        return f"{size} bytes" if size != 1 else "1 byte"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MB"
    return f"{size / 1024**3:.1f} GB"


def too_large(name: str, max_size: int, size: int | None = None) -> AttachmentRefusedError:
    """The refusal for a file over the limit (``size`` None: found while reading it)."""
    what = f"is {format_size(size)}" if size is not None else "is larger than that"
    return AttachmentRefusedError(
        f"{name} {what}: attachments are limited to {format_size(max_size)}; attach a "
        f"smaller file or raise the limit (setting {SIZE_SETTING})"
    )


def empty(name: str) -> AttachmentRefusedError:
    return AttachmentRefusedError(
        f"{name} is empty (0 bytes): there is nothing to attach; choose another file"
    )


def file_chunks(handle: BinaryIO, name: str) -> Iterator[bytes]:
    """The bytes of ``handle`` from its position, ``CHUNK_SIZE`` at a time; a read error
    becomes an ``AttachmentRefusedError`` that says which file."""
    while True:
        try:
            data = handle.read(CHUNK_SIZE)
        except OSError as error:
            raise AttachmentRefusedError(
                f"{name} could not be read ({error.strerror or type(error).__name__}); "
                "check the file and try again"
            ) from error
        if not data:
            return
        yield data


def hash_source(chunks: Iterable[bytes], name: str, max_size: int) -> tuple[str, int]:
    """sha256 and size of ``chunks``, refusing empty content and content over ``max_size``."""
    digest = hashlib.sha256()
    size = 0
    for data in chunks:
        size += len(data)
        if size > max_size:
            raise too_large(name, max_size)
        digest.update(data)
    if size == 0:
        raise empty(name)
    return digest.hexdigest(), size


def has_blob(conn: Any, sha256: str) -> bool:
    row = conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
    return row is not None


def store_blob(
    conn: Any,
    chunks: Iterable[bytes],
    *,
    name: str,
    max_size: int,
    clock: Callable[[], float] = time.time,
) -> tuple[str, int]:
    """Write ``chunks`` as a blob unless the same content is stored; returns its sha256
    and size. Runs inside the caller's transaction (or savepoint): on any error the
    caller rolls back and no chunk remains."""
    provisional = f"pending:{uuid.uuid4().hex}"
    blob_id = conn.execute(
        "INSERT INTO blobs (sha256, size, chunk_size, created_at) VALUES (?, 0, ?, ?)",
        (provisional, CHUNK_SIZE, clock()),
    ).lastrowid
    digest = hashlib.sha256()
    size = 0
    for index, data in enumerate(chunks):
        size += len(data)
        if size > max_size:
            raise too_large(name, max_size)
        digest.update(data)
        conn.execute(
            "INSERT INTO blob_chunks (blob_id, idx, data) VALUES (?, ?, ?)", (blob_id, index, data)
        )
    if size == 0:
        raise empty(name)
    sha256 = digest.hexdigest()
    if has_blob(conn, sha256):
        # Stored already (the source was not seekable, or changed since it was hashed).
        conn.execute("DELETE FROM blob_chunks WHERE blob_id = ?", (blob_id,))
        conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
    else:
        conn.execute("UPDATE blobs SET sha256 = ?, size = ? WHERE id = ?", (sha256, size, blob_id))
    return sha256, size


def blob_chunks(conn: Any, sha256: str) -> Iterator[bytes]:
    """The chunks of a stored blob, in order, one row read per step; raises
    ``LookupError`` when the blob is not stored, and (once its chunks run out) when they
    do not add up to its size."""
    row = conn.execute("SELECT id, size FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None:
        raise LookupError(f"blob {sha256} is not stored")
    return _chunks(conn, int(row[0]), int(row[1]))


def _chunks(conn: Any, blob_id: int, size: int) -> Iterator[bytes]:
    total = 0
    for index in itertools.count():
        row = conn.execute(
            "SELECT data FROM blob_chunks WHERE blob_id = ? AND idx = ?", (blob_id, index)
        ).fetchone()
        if row is None:
            break
        total += len(row[0])
        yield bytes(row[0])
    if total != size:
        raise LookupError(f"blob {blob_id} has {total} of its {size} bytes: a chunk is missing")

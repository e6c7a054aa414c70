"""``SyncState``: the sync bookkeeping of one tier's database, and the writes that apply
records from other devices.

The tables come from migration 4 (``app.store.migrations``):

* ``sync_keys``: this tier's sync key (``current``) and, during an epoch change, the
  ``next`` one; an old key's row is deleted (``secure_delete`` overwrites it).
* ``sync_chat_keys``: the key of each chat of this tier.
* ``sync_records``: one row per record id: the revision the server has, whether a local
  change still has to be sealed (``dirty``, set by triggers in the same transaction as the
  user's write, so a crash never loses a change), and the sealed bytes chosen for the next
  push (``pending_*``), saved before the push so that a retry re-sends them byte for byte.
* ``sync_settings``: the pull cursor, the account's keys, flags (Standard database).
* ``sync_inbox``: records that cannot be applied yet (their key is unknown here: a Private
  record while Private is locked, a record whose chat key has not arrived).
* ``sync_applying``: a row only while remote records are applied, so the triggers do not
  mark those writes as local changes.

All methods are blocking; multi-statement changes run inside ``transaction()``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.store import blobs
from app.store.models import ChatParams

if TYPE_CHECKING:
    from app.store.chats import ChatStore

__all__ = ["InboxRecord", "PendingRecord", "SyncRow", "SyncState"]

_ROW_COLUMNS = (
    "record_id, kind, chat_id, server_revision, server_deleted, dirty, local_deleted, "
    "pending_revision, pending_parent, pending_deleted, pending_key_id, pending_payload, state"
)
_CHAT_SYNC_COLUMNS = (
    "id, title, title_source, system_prompt, memory, provider, model, pinned, active_leaf_id, "
    "created_at, updated_at, move_state, params"
)
_MESSAGE_SYNC_COLUMNS = (
    "id, chat_id, parent_id, role, content, status, created_at, reasoning, error, provider, "
    "model, prompt_tokens, completion_tokens, first_token_at, finished_at, duration_ms, sources"
)
MESSAGE_SYNC_FIELDS: tuple[str, ...] = tuple(c.strip() for c in _MESSAGE_SYNC_COLUMNS.split(","))
CHAT_SYNC_FIELDS: tuple[str, ...] = tuple(c.strip() for c in _CHAT_SYNC_COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class SyncRow:
    """One record's sync state (see the module docstring)."""

    record_id: str
    kind: str
    chat_id: str | None
    server_revision: int
    server_deleted: bool
    dirty: bool
    local_deleted: bool
    pending_revision: int | None
    pending_parent: int | None
    pending_deleted: bool | None
    pending_key_id: str | None
    pending_payload: bytes | None
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """Sealed bytes waiting to be pushed."""

    record_id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """A record from the server kept until its key is known here."""

    record_id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    payload: bytes
    seq: int


def _row(row: Sequence[Any]) -> SyncRow:
    return SyncRow(
        row[0], row[1], row[2], int(row[3]), bool(row[4]), bool(row[5]), bool(row[6]),
        row[7], row[8], None if row[9] is None else bool(row[9]), row[10],
        None if row[11] is None else bytes(row[11]), json.loads(row[12]) if row[12] else {},
    )  # fmt: skip


class SyncState:
    """Sync bookkeeping of one tier's database (``ChatStore.sync_state()``)."""

    def __init__(self, store: ChatStore, conn: Any) -> None:
        self.store = store
        self.tier = store.tier
        self._conn = conn

    # --- transactions ------------------------------------------------------------------------

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self.store.transaction()

    @contextlib.contextmanager
    def applying(self) -> Iterator[None]:
        """Inside a transaction: writes here are remote changes, not local ones."""
        self._conn.execute("INSERT OR IGNORE INTO sync_applying (id) VALUES (1)")
        try:
            yield
        finally:
            self._conn.execute("DELETE FROM sync_applying")

    def applying_now(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sync_applying").fetchone() is not None

    # --- settings ----------------------------------------------------------------------------

    def setting(self, name: str) -> Any:
        row = self._conn.execute("SELECT value FROM sync_settings WHERE name = ?", (name,))
        found = row.fetchone()
        return None if found is None else found[0]

    def set_setting(self, name: str, value: Any) -> None:
        if value is None:
            self._conn.execute("DELETE FROM sync_settings WHERE name = ?", (name,))
            return
        self._conn.execute(
            "INSERT INTO sync_settings (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # --- sync keys ---------------------------------------------------------------------------

    def sync_keys(self) -> list[tuple[str, str, int, bytes, str]]:
        """(key_id, tier, epoch, secret, state) of every sync key held here."""
        rows = self._conn.execute("SELECT key_id, tier, epoch, secret, state FROM sync_keys")
        return [(r[0], r[1], int(r[2]), bytes(r[3]), r[4]) for r in rows.fetchall()]

    def put_sync_key(self, key_id: str, tier: str, epoch: int, secret: bytes, state: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO sync_keys (key_id, tier, epoch, secret, state) "
            "VALUES (?, ?, ?, ?, ?)",
            (key_id, tier, epoch, secret, state),
        )

    def delete_sync_key(self, key_id: str) -> None:
        self._conn.execute("DELETE FROM sync_keys WHERE key_id = ?", (key_id,))

    # --- chat keys ---------------------------------------------------------------------------

    def chat_keys(self) -> list[tuple[str, str, bytes, str]]:
        """(chat_id, key_id, secret, hlc) of every chat key held here."""
        rows = self._conn.execute("SELECT chat_id, key_id, secret, hlc FROM sync_chat_keys")
        return [(r[0], r[1], bytes(r[2]), r[3]) for r in rows.fetchall()]

    def chat_key_ids(self) -> set[str]:
        rows = self._conn.execute("SELECT key_id FROM sync_chat_keys").fetchall()
        return {r[0] for r in rows}

    def chat_key(self, chat_id: str) -> tuple[str, bytes, str] | None:
        row = self._conn.execute(
            "SELECT key_id, secret, hlc FROM sync_chat_keys WHERE chat_id = ?", (chat_id,)
        ).fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])

    def chat_key_by_id(self, key_id: str) -> tuple[str, bytes] | None:
        """(chat_id, secret) of the chat key with this id."""
        row = self._conn.execute(
            "SELECT chat_id, secret FROM sync_chat_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def put_chat_key(self, chat_id: str, key_id: str, secret: bytes, hlc: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO sync_chat_keys (chat_id, key_id, secret, hlc) "
            "VALUES (?, ?, ?, ?)",
            (chat_id, key_id, secret, hlc),
        )

    def delete_chat_key(self, chat_id: str) -> None:
        self._conn.execute("DELETE FROM sync_chat_keys WHERE chat_id = ?", (chat_id,))

    # --- per-record state --------------------------------------------------------------------

    def row(self, record_id: str) -> SyncRow | None:
        found = self._conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM sync_records WHERE record_id = ?", (record_id,)
        ).fetchone()
        return None if found is None else _row(found)

    def dirty_rows(self, limit: int = 500) -> list[SyncRow]:
        """Dirty records, attachment parts last (a large file never holds up messages)."""
        rows = self._conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM sync_records WHERE dirty = 1 "
            "ORDER BY kind = 'attachment_part', rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return [_row(r) for r in rows]

    def pending(self, limit: int = 500) -> list[PendingRecord]:
        rows = self._conn.execute(
            "SELECT record_id, kind, pending_revision, pending_parent, pending_deleted, "
            "pending_key_id, pending_payload FROM sync_records "
            "WHERE pending_revision IS NOT NULL ORDER BY rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            PendingRecord(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5], bytes(r[6])) for r in rows
        ]

    def pending_part_count(self) -> int:
        """Attachment parts sealed and waiting to be pushed (live ones, not tombstones)."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM sync_records WHERE kind = 'attachment_part' "
            "AND pending_revision IS NOT NULL AND local_deleted = 0"
        ).fetchone()
        return int(row[0])

    def has_unsent_deletes(self) -> bool:
        """Whether a tombstone of this tier is still to be sealed or pushed."""
        row = self._conn.execute(
            "SELECT 1 FROM sync_records WHERE local_deleted = 1 AND server_deleted = 0 "
            "AND (dirty = 1 OR pending_revision IS NOT NULL) LIMIT 1"
        ).fetchone()
        return row is not None

    def has_work(self) -> bool:
        """Whether a record waits to be pushed, or to be sealed (a message still being
        streamed does not count: it waits for its answer to finish)."""
        row = self._conn.execute(
            "SELECT 1 FROM sync_records r WHERE r.pending_revision IS NOT NULL "
            "OR (r.dirty = 1 AND NOT (r.kind = 'message' AND EXISTS ("
            " SELECT 1 FROM messages m WHERE m.id = substr(r.record_id, 5)"
            " AND m.status = 'partial'))) LIMIT 1"
        ).fetchone()
        return row is not None

    def rebase_tombstone(self, record_id: str, revision: int) -> None:
        """Seal this record's tombstone again on top of the server's ``revision``."""
        self._conn.execute(
            "UPDATE sync_records SET server_revision = ?, dirty = 1, pending_revision = NULL, "
            "pending_parent = NULL, pending_deleted = NULL, pending_key_id = NULL, "
            "pending_payload = NULL WHERE record_id = ? AND server_revision < ?",
            (revision, record_id, revision),
        )

    def put_row(
        self,
        record_id: str,
        kind: str,
        chat_id: str | None,
        *,
        server_revision: int,
        server_deleted: bool = False,
        dirty: bool = False,
        local_deleted: bool = False,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Set a record's state as known from the server (any pending push dropped)."""
        self._conn.execute(
            f"INSERT OR REPLACE INTO sync_records ({_ROW_COLUMNS}) "
            "VALUES (?,?,?,?,?,?,?,NULL,NULL,NULL,NULL,NULL,?)",
            (record_id, kind, chat_id, server_revision, int(server_deleted), int(dirty),
             int(local_deleted), json.dumps(state) if state else None),
        )  # fmt: skip

    def set_dirty(self, record_id: str, dirty: bool = True) -> None:
        self._conn.execute(
            "UPDATE sync_records SET dirty = ? WHERE record_id = ?", (int(dirty), record_id)
        )

    def set_state(self, record_id: str, state: dict[str, Any]) -> None:
        self._conn.execute(
            "UPDATE sync_records SET state = ? WHERE record_id = ?", (json.dumps(state), record_id)
        )

    def mark_kind_dirty(self, kind: str) -> None:
        """Every live record of ``kind`` needs sealing again (after an epoch change)."""
        self._conn.execute(
            "UPDATE sync_records SET dirty = 1 WHERE kind = ? AND local_deleted = 0 "
            "AND server_deleted = 0",
            (kind,),
        )

    def save_pending(self, record: PendingRecord, state: dict[str, Any] | None) -> None:
        """The sealed bytes of a record's next push (and clear its dirty flag)."""
        self._conn.execute(
            "INSERT INTO sync_records (record_id, kind, chat_id) VALUES (?, ?, NULL) "
            "ON CONFLICT (record_id) DO NOTHING",
            (record.record_id, record.kind),
        )
        self._conn.execute(
            "UPDATE sync_records SET dirty = 0, pending_revision = ?, pending_parent = ?, "
            "pending_deleted = ?, pending_key_id = ?, pending_payload = ?, "
            "state = COALESCE(?, state) WHERE record_id = ?",
            (record.revision, record.parent_revision, int(record.deleted), record.key_id,
             record.payload, json.dumps(state) if state is not None else None,
             record.record_id),
        )  # fmt: skip

    def mark_pushed(self, record_id: str, revision: int, deleted: bool) -> None:
        """The server saved the pending push: it is now the server's revision."""
        self._conn.execute(
            "UPDATE sync_records SET server_revision = ?, server_deleted = ?, "
            "pending_revision = NULL, pending_parent = NULL, pending_deleted = NULL, "
            "pending_key_id = NULL, pending_payload = NULL WHERE record_id = ?",
            (revision, int(deleted), record_id),
        )

    def drop_pending(self, record_id: str, *, dirty: bool) -> None:
        self._conn.execute(
            "UPDATE sync_records SET pending_revision = NULL, pending_parent = NULL, "
            "pending_deleted = NULL, pending_key_id = NULL, pending_payload = NULL, dirty = ? "
            "WHERE record_id = ?",
            (int(dirty), record_id),
        )

    def delete_row(self, record_id: str) -> None:
        self._conn.execute("DELETE FROM sync_records WHERE record_id = ?", (record_id,))

    def forget_chat_rows(self, chat_id: str) -> None:
        """A chat deleted on the server: nothing of it is left to push from here."""
        self._conn.execute(
            "UPDATE sync_records SET dirty = 0, local_deleted = 1, pending_revision = NULL, "
            "pending_parent = NULL, pending_deleted = NULL, pending_key_id = NULL, "
            "pending_payload = NULL, state = CASE WHEN kind = 'message' THEN state END "
            "WHERE chat_id = ?",
            (chat_id,),
        )

    def chat_ids_with_rows(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT chat_id FROM sync_records WHERE chat_id IS NOT NULL"
        ).fetchall()
        return [r[0] for r in rows]

    def chat_is_settled(self, chat_id: str) -> bool:
        """Whether nothing of the chat is waiting to be sealed or pushed."""
        row = self._conn.execute(
            "SELECT 1 FROM sync_records WHERE chat_id = ? "
            "AND (dirty = 1 OR pending_revision IS NOT NULL) LIMIT 1",
            (chat_id,),
        ).fetchone()
        return row is None

    def counts(self) -> tuple[int, int]:
        """(records waiting to be sealed or pushed, records in the inbox)."""
        waiting = self._conn.execute(
            "SELECT COUNT(*) FROM sync_records WHERE dirty = 1 OR pending_revision IS NOT NULL"
        ).fetchone()[0]
        inbox = self._conn.execute("SELECT COUNT(*) FROM sync_inbox").fetchone()[0]
        return int(waiting), int(inbox)

    # --- inbox -------------------------------------------------------------------------------

    def inbox_put(self, record: InboxRecord) -> None:
        """Keep a record for later (its newest revision only)."""
        self._conn.execute(
            "INSERT INTO sync_inbox (record_id, kind, revision, parent_revision, deleted, key_id, "
            "payload, seq) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (record_id) DO UPDATE SET "
            "kind = excluded.kind, revision = excluded.revision, "
            "parent_revision = excluded.parent_revision, deleted = excluded.deleted, "
            "key_id = excluded.key_id, payload = excluded.payload, seq = excluded.seq "
            "WHERE excluded.revision >= sync_inbox.revision",
            (record.record_id, record.kind, record.revision, record.parent_revision,
             int(record.deleted), record.key_id, record.payload, record.seq),
        )  # fmt: skip

    def inbox(self) -> list[InboxRecord]:
        rows = self._conn.execute(
            "SELECT record_id, kind, revision, parent_revision, deleted, key_id, payload, seq "
            "FROM sync_inbox ORDER BY seq"
        ).fetchall()
        return [
            InboxRecord(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5], bytes(r[6]), int(r[7]))
            for r in rows
        ]

    def inbox_heads(self) -> list[tuple[str, str, str]]:
        """(record id, kind, key id) of every record in the inbox, oldest first: without
        the payloads (attachment parts waiting for a locked tier's key can be large)."""
        rows = self._conn.execute(
            "SELECT record_id, kind, key_id FROM sync_inbox ORDER BY seq"
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def inbox_record(self, record_id: str) -> InboxRecord | None:
        r = self._conn.execute(
            "SELECT record_id, kind, revision, parent_revision, deleted, key_id, payload, seq "
            "FROM sync_inbox WHERE record_id = ?",
            (record_id,),
        ).fetchone()
        if r is None:
            return None
        return InboxRecord(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5], bytes(r[6]), int(r[7]))

    def inbox_delete(self, record_id: str) -> None:
        self._conn.execute("DELETE FROM sync_inbox WHERE record_id = ?", (record_id,))

    # --- chats and messages as records ---------------------------------------------------------

    def chat_row(self, chat_id: str) -> dict[str, Any] | None:
        """A chat's synced columns (None if this database does not hold it)."""
        row = self._conn.execute(
            f"SELECT {_CHAT_SYNC_COLUMNS} FROM chats WHERE id = ?", (chat_id,)
        ).fetchone()
        return None if row is None else dict(zip(CHAT_SYNC_FIELDS, row, strict=True))

    def has_chat_row(self, chat_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,))
        return row.fetchone() is not None

    def message_row(self, message_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            f"SELECT {_MESSAGE_SYNC_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return None if row is None else dict(zip(MESSAGE_SYNC_FIELDS, row, strict=True))

    def has_message(self, message_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,))
        return row.fetchone() is not None

    def write_chat(self, values: dict[str, Any]) -> bool:
        """Insert or update a chat from merged record values; True if it was new."""
        params = ChatParams.from_json(values.get("params")).to_text()
        exists = self._conn.execute("SELECT 1 FROM chats WHERE id = ?", (values["id"],))
        if exists.fetchone() is None:
            self._conn.execute(
                "INSERT INTO chats (id, title, title_source, tier, system_prompt, memory, "
                "provider, model, pinned, active_leaf_id, created_at, updated_at, params) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (values["id"], values["title"], values["title_source"], self.tier.value,
                 values["system_prompt"], values["memory"], values["provider"], values["model"],
                 int(bool(values["pinned"])), self._existing_leaf(values["active_leaf_id"]),
                 values["created_at"], values["updated_at"], params),
            )  # fmt: skip
            return True
        self._conn.execute(
            "UPDATE chats SET title = ?, title_source = ?, system_prompt = ?, memory = ?, "
            "provider = ?, model = ?, pinned = ?, params = ?, updated_at = MAX(updated_at, ?) "
            "WHERE id = ?",
            (values["title"], values["title_source"], values["system_prompt"], values["memory"],
             values["provider"], values["model"], int(bool(values["pinned"])), params,
             values["updated_at"], values["id"]),
        )  # fmt: skip
        leaf = self._existing_leaf(values["active_leaf_id"])
        if leaf is not None or values["active_leaf_id"] is None:
            self._conn.execute(
                "UPDATE chats SET active_leaf_id = ? WHERE id = ?", (leaf, values["id"])
            )
        return False

    def _existing_leaf(self, message_id: str | None) -> str | None:
        if message_id is None or not self.has_message(message_id):
            return None
        return message_id

    def set_active_leaf(self, chat_id: str, message_id: str) -> None:
        self._conn.execute(
            "UPDATE chats SET active_leaf_id = ? WHERE id = ?", (message_id, chat_id)
        )

    def insert_message(self, values: dict[str, Any]) -> None:
        """Insert a message from another device (shown as the newest of its versions)."""
        columns = [*MESSAGE_SYNC_FIELDS, "selected_at"]
        self._conn.execute(
            f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [*(values[name] for name in MESSAGE_SYNC_FIELDS), values["created_at"]],
        )

    def replace_partial_message(self, values: dict[str, Any]) -> bool:
        """An answer cut off here gets its newer version from the device that wrote it
        (content, status and timings; never its place in the tree). Final messages do
        not change: False."""
        fields = [f for f in MESSAGE_SYNC_FIELDS if f not in ("id", "chat_id", "parent_id")]
        cursor = self._conn.execute(
            f"UPDATE messages SET {', '.join(f'{f} = ?' for f in fields)} "
            "WHERE id = ? AND status = 'partial'",
            [*(values[f] for f in fields), values["id"]],
        )
        return bool(cursor.rowcount > 0)

    def delete_message(self, message_id: str) -> str | None:
        """Delete a message, its replies moving up to its parent; returns the parent."""
        row = self._conn.execute(
            "SELECT chat_id, parent_id FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        chat_id, parent_id = row
        self._conn.execute(
            "UPDATE messages SET parent_id = ? WHERE parent_id = ?", (parent_id, message_id)
        )
        self._conn.execute(
            "UPDATE chats SET active_leaf_id = ? WHERE id = ? AND active_leaf_id = ?",
            (parent_id, chat_id, message_id),
        )
        self._conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        return str(parent_id) if parent_id is not None else None

    def delete_chat(self, chat_id: str) -> bool:
        """Delete a chat and its messages; True if this database held it."""
        held = self._conn.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchone()
        self._conn.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
        self._conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
        self._conn.execute("DELETE FROM sync_attachment_parts WHERE chat_id = ?", (chat_id,))
        return held is not None

    # --- attachments as records ----------------------------------------------------------------

    def attachment_row(self, attachment_id: str) -> dict[str, Any] | None:
        """An attachment's synced columns (None if this database does not hold it)."""
        row = self._conn.execute(
            "SELECT message_id, chat_id, name, media_type, size, sha256, position, created_at "
            "FROM attachments WHERE id = ?",
            (attachment_id,),
        ).fetchone()
        if row is None:
            return None
        names = ("message_id", "chat_id", "name", "media_type", "size", "sha256", "position",
                 "created_at")  # fmt: skip
        return dict(zip(names, row, strict=True))

    def has_attachment(self, attachment_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM attachments WHERE id = ?", (attachment_id,))
        return row.fetchone() is not None

    def put_part_rows(self, attachment_id: str, chat_id: str, parts: int) -> None:
        """The "attpart:<id>:<n>" rows of an attachment (``app.sync.records``), all to be
        sealed (again)."""
        self._conn.executemany(
            "INSERT INTO sync_records (record_id, kind, chat_id, dirty) "
            "VALUES (?, 'attachment_part', ?, 1) "
            "ON CONFLICT (record_id) DO UPDATE SET dirty = 1 WHERE local_deleted = 0",
            [(f"attpart:{attachment_id}:{n}", chat_id) for n in range(parts)],
        )

    def blob_range(self, sha256: str, start: int, length: int) -> bytes:
        """``length`` bytes of a stored blob from ``start`` (fewer at its end), read from
        the chunks that hold them only; LookupError when the blob is not stored."""
        found = self._conn.execute("SELECT id FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        if found is None:
            raise LookupError(f"blob {sha256} is not stored")
        end = start + length
        out = bytearray()
        offset = 0
        for index, size in self._conn.execute(
            "SELECT idx, length(data) FROM blob_chunks WHERE blob_id = ? ORDER BY idx",
            (found[0],),
        ).fetchall():
            low, high = max(start, offset), min(end, offset + int(size))
            if low < high:
                piece = self._conn.execute(
                    "SELECT substr(data, ?, ?) FROM blob_chunks WHERE blob_id = ? AND idx = ?",
                    (low - offset + 1, high - low, found[0], index),
                ).fetchone()[0]
                out += bytes(piece)
            offset += int(size)
            if offset >= end:
                break
        return bytes(out)

    def stage_part(self, attachment_id: str, index: int, chat_id: str, data: bytes) -> None:
        """Keep a received part until the rest of its attachment is here."""
        self._conn.execute(
            "INSERT OR REPLACE INTO sync_attachment_parts (attachment_id, idx, chat_id, data) "
            "VALUES (?, ?, ?, ?)",
            (attachment_id, index, chat_id, data),
        )

    def staged_parts(self, attachment_id: str, parts: int) -> int:
        """How many of parts 0 .. ``parts`` - 1 are here."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM sync_attachment_parts WHERE attachment_id = ? AND idx < ?",
            (attachment_id, parts),
        ).fetchone()
        return int(row[0])

    def drop_parts(self, attachment_id: str) -> None:
        self._conn.execute(
            "DELETE FROM sync_attachment_parts WHERE attachment_id = ?", (attachment_id,)
        )

    def _staged_chunks(self, attachment_id: str, parts: int) -> Iterator[bytes]:
        """The staged parts regrouped into ``blobs.CHUNK_SIZE`` chunks, one part read at a
        time (never the whole file in memory)."""
        buffer = bytearray()
        for index in range(parts):
            row = self._conn.execute(
                "SELECT data FROM sync_attachment_parts WHERE attachment_id = ? AND idx = ?",
                (attachment_id, index),
            ).fetchone()
            buffer += bytes(row[0])
            while len(buffer) >= blobs.CHUNK_SIZE:
                yield bytes(buffer[: blobs.CHUNK_SIZE])
                del buffer[: blobs.CHUNK_SIZE]
        if buffer:
            yield bytes(buffer)

    def assemble_attachment(self, attachment_id: str, chat_id: str, values: dict[str, Any]) -> bool:
        """Store a received attachment from its staged parts (a savepoint inside the
        caller's transaction) and drop them. False, with nothing stored, when the bytes do
        not match the record's size and sha256."""
        from app.store.chats import _attachment_name

        self._conn.execute("SAVEPOINT sync_attachment")
        try:
            sha256, size = blobs.store_blob(
                self._conn,
                self._staged_chunks(attachment_id, int(values["parts"])),
                name="a synced attachment",
                max_size=int(values["size"]),
            )
        except blobs.AttachmentRefusedError:
            sha256, size = "", -1
        except BaseException:
            self._conn.execute("ROLLBACK TO sync_attachment")
            self._conn.execute("RELEASE sync_attachment")
            raise
        if sha256 != values["sha256"] or size != values["size"]:
            self._conn.execute("ROLLBACK TO sync_attachment")
            self._conn.execute("RELEASE sync_attachment")
            self.drop_parts(attachment_id)
            return False
        self._conn.execute(
            "INSERT INTO attachments (id, message_id, chat_id, sha256, name, media_type, size, "
            "position, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (attachment_id, values["message_id"], chat_id, sha256,
             _attachment_name(values["name"]), values["media_type"] or "application/octet-stream",
             size, values["position"], values["created_at"]),
        )  # fmt: skip
        self._conn.execute("RELEASE sync_attachment")
        self.drop_parts(attachment_id)
        return True

    def delete_attachment(self, attachment_id: str) -> bool:
        """Delete an attachment (another device deleted it); True if it was here."""
        cursor = self._conn.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))
        self.drop_parts(attachment_id)
        return bool(cursor.rowcount > 0)

"""``ChatStore``: chats and their messages in one database (one privacy tier).

Messages form a tree: a message's ``parent_id`` is the message it answers or
follows. Regenerating an answer, or editing a message, adds a *sibling* (same
parent), so every earlier version is kept and can be shown again. A chat's
visible thread is the path from the root to its ``active_leaf_id``; it is read
backwards from the leaf one primary-key lookup per message, so the newest page
of a 10,000-message chat costs as much as the newest page of a short one.

Messages carry attachments: their bytes are content-addressed, chunked blobs in the
same database (``app.store.blobs``), deleted with the last attachment that uses them.

All methods are blocking and expect an autocommit connection
(``isolation_level=None``); each write is one explicit transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mimetypes
import os
import stat
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import sqlcipher3

from app.errors import ExitCode, HushchatError, UsageError
from app.store import blobs, chunks
from app.store.blobs import AttachmentRefusedError
from app.store.migrations import migrate
from app.store.models import (
    DEFAULT_TITLE,
    Attachment,
    Chat,
    ChatParams,
    ChatRecord,
    ChatSummary,
    Message,
    MessageStatus,
    SearchHit,
    ThreadPage,
    Tier,
    TitleSource,
)
from app.store.sync_state import SyncState
from app.vault.atomic_file import write_chunks_atomically


class ChatNotFoundError(HushchatError):
    """No chat (or message) with that id in this profile."""

    exit_code = ExitCode.USAGE


class StorageError(HushchatError):
    """The database refused a write (disk full, read-only, damaged); nothing was lost."""


DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlcipher3.Error,)

_CHAT_COLUMNS = (
    "id, title, title_source, tier, system_prompt, memory, provider, model, pinned, "
    "active_leaf_id, created_at, updated_at, deleted_at, params"
)
_MESSAGE_COLUMNS = (
    "id, chat_id, parent_id, role, content, status, created_at, reasoning, error, provider, "
    "model, prompt_tokens, completion_tokens, first_token_at, finished_at, duration_ms, "
    "selected_at, sources"
)
_ATTACHMENT_COLUMNS = (
    "id, message_id, chat_id, name, media_type, size, sha256, position, created_at"
)
_MESSAGE_FIELDS = {
    "content",
    "reasoning",
    "status",
    "error",
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "first_token_at",
    "finished_at",
    "duration_ms",
    "sources",
}
_CHAT_FIELDS = {
    "title",
    "title_source",
    "system_prompt",
    "memory",
    "provider",
    "model",
    "pinned",
    "params",
}


def new_id() -> str:
    """A random, unguessable record id (UUID4, hex)."""
    return uuid.uuid4().hex


def sources_to_text(sources: Sequence[str] | None) -> str:
    """How ``messages.sources`` stores an answer's excerpt labels (a JSON list)."""
    return json.dumps(list(sources or ()), ensure_ascii=False)


def sources_from_text(text: str | None) -> tuple[str, ...]:
    """The labels in ``messages.sources`` (malformed or absent: none)."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _chat(row: Sequence[Any]) -> Chat:
    return Chat(
        id=row[0],
        title=row[1],
        title_source=TitleSource(row[2]),
        tier=Tier(row[3]),
        system_prompt=row[4],
        memory=row[5],
        provider=row[6],
        model=row[7],
        pinned=bool(row[8]),
        active_leaf_id=row[9],
        created_at=row[10],
        updated_at=row[11],
        deleted_at=row[12],
        params=ChatParams.from_text(row[13]),
    )


def _attachment(row: Sequence[Any]) -> Attachment:
    return Attachment(*row)


def _summary(row: Sequence[Any]) -> ChatSummary:
    return ChatSummary(row[0], row[1], Tier(row[2]), bool(row[3]), row[4], row[5])


def _message(row: Sequence[Any], version: int = 1, versions: int = 1) -> Message:
    return Message(
        id=row[0],
        chat_id=row[1],
        parent_id=row[2],
        role=row[3],
        content=row[4],
        status=MessageStatus(row[5]),
        created_at=row[6],
        reasoning=row[7],
        error=row[8],
        provider=row[9],
        model=row[10],
        prompt_tokens=row[11],
        completion_tokens=row[12],
        first_token_at=row[13],
        finished_at=row[14],
        duration_ms=row[15],
        selected_at=row[16],
        sources=sources_from_text(row[17]),
        version=version,
        versions=versions,
    )


class ChatStore:
    """The chats of one tier, in one database connection."""

    def __init__(self, conn: Any, tier: Tier, *, clock: Any = time.time) -> None:
        self._conn = conn
        self.tier = tier
        self._clock = clock
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
        #: Whether nearest-chunk search by vector works here (sqlite-vec loaded).
        self.vectors_available = chunks.load_vector_extension(conn)

    def sync_state(self) -> SyncState:
        """This database's sync bookkeeping (``app.store.sync_state``)."""
        return SyncState(self, self._conn)

    def close(self) -> None:
        """Close the connection (Ephemeral chats vanish with it)."""
        self._conn.close()

    def integrity_problems(self) -> list[str]:
        """SQLite's integrity check: an empty list when the database is sound."""
        rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return [] if [r[0] for r in rows] == ["ok"] else [str(r[0]) for r in rows]

    # --- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back whole on any error. Inside another one it
        joins it (the outer one commits or rolls back everything)."""
        if self._conn.in_transaction:
            yield
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except DATABASE_ERRORS as error:
            raise _storage_error(error) from error
        try:
            yield
        except DATABASE_ERRORS as error:
            self._conn.execute("ROLLBACK")
            raise _storage_error(error) from error
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except DATABASE_ERRORS as error:
            with contextlib.suppress(*DATABASE_ERRORS):
                self._conn.execute("ROLLBACK")
            raise _storage_error(error) from error

    # --- chats -------------------------------------------------------------------------------

    def create_chat(
        self,
        *,
        title: str = DEFAULT_TITLE,
        title_source: TitleSource = TitleSource.DEFAULT,
        system_prompt: str = "",
        memory: str = "",
        provider: str | None = None,
        model: str | None = None,
        chat_id: str | None = None,
        created_at: float | None = None,
        params: ChatParams | None = None,
    ) -> Chat:
        """Create a chat titled "New Chat" (until it is named)."""
        now = self._clock()
        chat_id = chat_id or new_id()
        with self.transaction():
            self._conn.execute(
                f"INSERT INTO chats ({_CHAT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (chat_id, title, title_source.value, self.tier.value, system_prompt, memory,
                 provider, model, 0, None, created_at or now, now, None,
                 (params or ChatParams()).to_text()),
            )  # fmt: skip
        return self.chat(chat_id)

    def chat(self, chat_id: str, *, include_deleted: bool = False) -> Chat:
        """The chat with this id; ChatNotFoundError if there is none here."""
        row = self._conn.execute(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = ? AND move_state IS NULL", (chat_id,)
        ).fetchone()
        if row is None or (row[12] is not None and not include_deleted):
            raise ChatNotFoundError(f"no chat with id {chat_id}")
        return _chat(row)

    def has_chat(self, chat_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM chats WHERE id = ? AND move_state IS NULL", (chat_id,)
        ).fetchone()
        return row is not None

    def resolve_prefix(self, prefix: str, *, limit: int = 3) -> list[str]:
        """Ids of (at most ``limit``) chats starting with ``prefix`` (a range of the primary
        key: ``%`` and ``_`` in what people type are characters, not ``LIKE`` wildcards)."""
        start = prefix.lower()
        rows = self._conn.execute(
            "SELECT id FROM chats WHERE id >= ? AND id < ? AND move_state IS NULL LIMIT ?",
            (start, start + "\U0010ffff", limit),
        ).fetchall()
        return [r[0] for r in rows]

    def resolve_message_prefix(self, prefix: str, *, limit: int = 3) -> list[str]:
        """Ids of (at most ``limit``) messages starting with ``prefix`` (a range of the
        primary key: no ``LIKE`` wildcards in what people type)."""
        start = prefix.lower()
        rows = self._conn.execute(
            "SELECT id FROM messages WHERE id >= ? AND id < ? LIMIT ?",
            (start, start + "\U0010ffff", limit),
        ).fetchall()
        return [r[0] for r in rows]

    def summary(self, chat_id: str) -> ChatSummary | None:
        """What the sidebar shows of one chat; None if it is not here or deleted."""
        row = self._conn.execute(
            "SELECT id, title, tier, pinned, updated_at, provider FROM chats "
            "WHERE id = ? AND deleted_at IS NULL AND move_state IS NULL",
            (chat_id,),
        ).fetchone()
        return None if row is None else _summary(row)

    def list_chats(self, *, limit: int = 10_000, offset: int = 0) -> list[ChatSummary]:
        """Chats by recent activity, pinned first; deleted (undo pending) ones left out."""
        rows = self._conn.execute(
            "SELECT id, title, tier, pinned, updated_at, provider FROM chats "
            "WHERE deleted_at IS NULL AND move_state IS NULL "
            "ORDER BY pinned DESC, updated_at DESC LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return [_summary(r) for r in rows]

    def update_chat(self, chat_id: str, **fields: Any) -> Chat:
        """Change title, title_source, system_prompt, memory, provider, model, pinned or
        params (a ``ChatParams``)."""
        unknown = set(fields) - _CHAT_FIELDS
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        self.chat(chat_id)
        values = {k: (v.value if isinstance(v, TitleSource) else v) for k, v in fields.items()}
        if "params" in fields:
            params = fields["params"]
            if not isinstance(params, ChatParams):
                raise TypeError("params must be a ChatParams")
            values["params"] = params.to_text()
        if "pinned" in values:
            values["pinned"] = int(bool(values["pinned"]))
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self.transaction():
            self._conn.execute(
                f"UPDATE chats SET {assignments}, updated_at = ? WHERE id = ?",
                (*values.values(), self._clock(), chat_id),
            )
        return self.chat(chat_id)

    def rename(self, chat_id: str, title: str) -> Chat:
        """The user's own title: it always wins over automatic ones."""
        title = " ".join(title.split())
        if not title:
            raise ValueError("a title cannot be empty")
        return self.update_chat(chat_id, title=title[:200], title_source=TitleSource.USER)

    def set_auto_title(self, chat_id: str, title: str) -> bool:
        """Set a generated title unless the user has named the chat; True if it was set."""
        with self.transaction():
            cursor = self._conn.execute(
                "UPDATE chats SET title = ?, title_source = 'auto' "
                "WHERE id = ? AND title_source = 'default'",
                (title, chat_id),
            )
        return bool(cursor.rowcount)

    def mark_deleted(self, chat_id: str) -> None:
        """Hide the chat; ``undelete`` brings it back until ``purge`` removes it."""
        self.chat(chat_id)
        with self.transaction():
            self._conn.execute(
                "UPDATE chats SET deleted_at = ? WHERE id = ?", (self._clock(), chat_id)
            )

    def undelete(self, chat_id: str) -> None:
        self.chat(chat_id, include_deleted=True)
        with self.transaction():
            self._conn.execute("UPDATE chats SET deleted_at = NULL WHERE id = ?", (chat_id,))

    def deleted_chats(self, *, before: float | None = None) -> list[str]:
        """Chats whose delete can still be undone (deleted at or before ``before``)."""
        if before is None:
            rows = self._conn.execute("SELECT id FROM chats WHERE deleted_at IS NOT NULL")
        else:
            rows = self._conn.execute(
                "SELECT id FROM chats WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (before,)
            )
        return [r[0] for r in rows.fetchall()]

    def purge(self, chat_id: str) -> None:
        """Remove a chat and its messages for good, including from the search index.

        With ``secure_delete`` the freed pages are overwritten; merging the full-text
        index and checkpointing the WAL leave no old copy of the content behind.
        """
        with self.transaction():
            self._delete_rows(chat_id)
        self.compact()

    def _delete_rows(self, chat_id: str) -> None:
        """Delete a chat's messages and the chat (inside the caller's transaction)."""
        self._conn.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
        self._conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    # --- whole chats in and out (imports and moves between tiers) ----------------------------

    def record(self, chat_id: str) -> ChatRecord:
        """A chat (deleted or not) with every message version, for a move or an export."""
        return ChatRecord(self.chat(chat_id, include_deleted=True), self.all_messages(chat_id))

    def insert_records(
        self,
        records: Sequence[ChatRecord],
        *,
        incoming: bool = False,
        attachments_from: ChatStore | None = None,
    ) -> None:
        """Write whole chats in one transaction: all or nothing.

        ``incoming`` marks them as the hidden first step of a move between tiers
        (see ``app.store.library``); ``finish_incoming`` makes them visible.
        ``attachments_from`` (the source of a move) copies the chats' attachments from
        that store in the same transaction, chunk by chunk.
        """
        with self.transaction():
            # A reply may come before its parent in a record's message list.
            self._conn.execute("PRAGMA defer_foreign_keys = ON")
            for record in records:
                chat = record.chat
                self._conn.execute(
                    f"INSERT INTO chats ({_CHAT_COLUMNS}, move_state) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (chat.id, chat.title, chat.title_source.value, self.tier.value,
                     chat.system_prompt, chat.memory, chat.provider, chat.model,
                     int(chat.pinned), chat.active_leaf_id, chat.created_at, chat.updated_at,
                     chat.deleted_at, chat.params.to_text(),
                     "incoming" if incoming else None),
                )  # fmt: skip
                self._conn.executemany(
                    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (m.id, chat.id, m.parent_id, m.role, m.content, m.status.value,
                         m.created_at, m.reasoning, m.error, m.provider, m.model,
                         m.prompt_tokens, m.completion_tokens, m.first_token_at,
                         m.finished_at, m.duration_ms, m.selected_at,
                         sources_to_text(m.sources))
                        for m in record.messages
                    ],
                )  # fmt: skip
                if attachments_from is not None:
                    self._copy_attachments(attachments_from, chat.id)

    def incoming(self) -> list[str]:
        """Chats copied here by a move that has not finished (see ``app.store.library``)."""
        rows = self._conn.execute("SELECT id FROM chats WHERE move_state = 'incoming'")
        return [r[0] for r in rows.fetchall()]

    def finish_incoming(self, chat_id: str) -> None:
        """Make a moved-in chat visible: the last step of a move."""
        with self.transaction():
            self._conn.execute("UPDATE chats SET move_state = NULL WHERE id = ?", (chat_id,))

    def remove_moved(self, chat_id: str) -> None:
        """Delete the source copy of a chat that was moved to another tier."""
        with self.transaction():
            # Not a delete for sync: the chat lives on in the other tier.
            self._conn.execute("INSERT OR IGNORE INTO sync_moves (chat_id) VALUES (?)", (chat_id,))
            self._delete_rows(chat_id)
        self.compact()

    def ids_taken(self, chat_ids: Sequence[str], message_ids: Sequence[str]) -> bool:
        """Whether any of these chat or message ids exists here (hidden moves included)."""
        for table, ids in (("chats", chat_ids), ("messages", message_ids)):
            if not ids:
                continue
            row = self._conn.execute(
                f"SELECT 1 FROM {table} WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1",
                (json.dumps(list(ids)),),
            ).fetchone()
            if row is not None:
                return True
        return False

    def compact(self) -> None:
        """Merge the search indexes (dropping deleted terms) and truncate the WAL."""
        with self.transaction():
            self._conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
            self._conn.execute("INSERT INTO chats_fts (chats_fts) VALUES ('optimize')")
            chunks.optimize(self._conn)
        # In-memory (Ephemeral) databases have no WAL; a busy reader only delays truncation.
        with contextlib.suppress(*DATABASE_ERRORS):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # --- messages ----------------------------------------------------------------------------

    def add_message(
        self,
        chat_id: str,
        role: str,
        content: str,
        *,
        parent_id: str | None,
        status: MessageStatus = MessageStatus.COMPLETE,
        provider: str | None = None,
        model: str | None = None,
        message_id: str | None = None,
        created_at: float | None = None,
        make_active: bool = True,
        **extra: Any,
    ) -> Message:
        """Append a message under ``parent_id`` (None: a root) and make it the active leaf."""
        unknown = set(extra) - _MESSAGE_FIELDS
        if unknown:
            raise ValueError(f"cannot set {', '.join(sorted(unknown))}")
        now = self._clock()
        message_id = message_id or new_id()
        columns = ["id", "chat_id", "parent_id", "role", "content", "status", "provider",
                   "model", "created_at", "selected_at"]  # fmt: skip
        values: list[Any] = [message_id, chat_id, parent_id, role, content, status.value,
                             provider, model, created_at or now, now]  # fmt: skip
        for name, value in extra.items():
            columns.append(name)
            values.append(sources_to_text(value) if name == "sources" else value)
        with self.transaction():
            self._conn.execute(
                f"INSERT INTO messages ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                values,
            )
            if make_active:
                self._conn.execute(
                    "UPDATE chats SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                    (message_id, now, chat_id),
                )
        return self.message(message_id)

    def update_message(self, message_id: str, **fields: Any) -> None:
        """Checkpoint a streaming answer: content, reasoning, status, usage, timings."""
        unknown = set(fields) - _MESSAGE_FIELDS
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if "status" in fields and isinstance(fields["status"], MessageStatus):
            fields["status"] = fields["status"].value
        if "sources" in fields:
            fields["sources"] = sources_to_text(fields["sources"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction():
            self._conn.execute(
                f"UPDATE messages SET {assignments} WHERE id = ?", (*fields.values(), message_id)
            )

    def find_message(self, message_id: str) -> Message | None:
        """The message with this id if this database holds it."""
        row = self._conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else self.message(message_id)

    def message(self, message_id: str) -> Message:
        row = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise ChatNotFoundError(f"no message with id {message_id}")
        version, versions = self._version_of(row[1], row[2], row[0])
        return _message(row, version, versions)

    def _version_of(self, chat_id: str, parent_id: str | None, message_id: str) -> tuple[int, int]:
        siblings = self._sibling_ids(chat_id, parent_id)
        return siblings.index(message_id) + 1, len(siblings)

    def _sibling_ids(self, chat_id: str, parent_id: str | None) -> list[str]:
        if parent_id is None:
            rows = self._conn.execute(
                "SELECT id FROM messages WHERE chat_id = ? AND parent_id IS NULL "
                "ORDER BY created_at, rowid",
                (chat_id,),
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT id FROM messages WHERE chat_id = ? AND parent_id = ? "
                "ORDER BY created_at, rowid",
                (chat_id, parent_id),
            ).fetchall()
        return [r[0] for r in rows]

    def thread(
        self,
        chat_id: str,
        *,
        limit: int = 100,
        before: str | None = None,
        after: str | None = None,
    ) -> ThreadPage:
        """The newest ``limit`` messages of the active thread (or those before ``before``).

        With ``after`` (a message of the active thread), the ``limit`` messages that follow
        it instead, ``has_newer`` saying whether more follow them (scrolling down a window
        opened with ``thread_window``); an empty page when it is not on the thread.
        """
        if after is not None:
            if limit < 1:
                raise ValueError("limit must be at least 1")
            leaf = self.chat(chat_id).active_leaf_id
            window = None if leaf is None else self._window(chat_id, leaf, after, 0, limit)
            if window is None:
                return ThreadPage([], False)
            rows, _, has_newer = window  # rows[0] is ``after`` itself
            return ThreadPage(self._with_versions(chat_id, rows[1:]), True, has_newer)
        chat = self.chat(chat_id)
        start = chat.active_leaf_id
        if before is not None:
            start = self.message(before).parent_id
        rows = []
        if start is not None:
            rows = self._conn.execute(
                f"""
                WITH RECURSIVE path(id, depth) AS (
                    SELECT ?, 0
                    UNION ALL
                    SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id
                    WHERE m.parent_id IS NOT NULL AND path.depth < ?
                )
                SELECT {", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))}
                FROM path JOIN messages m ON m.id = path.id ORDER BY path.depth DESC
                """,
                (start, limit),
            ).fetchall()
        has_older = len(rows) > limit
        rows = rows[-limit:] if has_older else rows
        return ThreadPage(self._with_versions(chat_id, rows), has_older)

    def thread_window(
        self, chat_id: str, message_id: str, *, older: int = 50, newer: int = 50
    ) -> ThreadPage:
        """The active thread around ``message_id`` (a search hit): up to ``older`` messages
        before it, it, and up to ``newer`` after it, oldest first, with ``has_older`` and
        ``has_newer``; an empty page when it is not on the active thread (another
        version's branch, or not in this chat).

        A chat without versions (no edit or regenerate: one message per parent) is read
        around the message only: ``older`` parents up, ``newer`` replies down, however
        far back it is. Otherwise one walk up from the active leaf to ``older`` messages
        beyond the hit decides what is on the thread (ids only; only the window's rows are
        read whole).
        """
        leaf = self.chat(chat_id).active_leaf_id
        window = None if leaf is None else self._window(chat_id, leaf, message_id, older, newer)
        if window is None:
            return ThreadPage([], False)
        rows, has_older, has_newer = window
        return ThreadPage(self._with_versions(chat_id, rows), has_older, has_newer)

    def _window(
        self, chat_id: str, leaf: str, anchor: str, older: int, newer: int
    ) -> tuple[list[Sequence[Any]], bool, bool] | None:
        """The rows of the active thread (ending at ``leaf``) from ``older`` before
        ``anchor`` to ``newer`` after it, oldest first, whether more come before and after;
        None when ``anchor`` is not on that thread."""
        if self._is_linear(chat_id, leaf):
            return self._linear_window(chat_id, anchor, older, newer)
        rows = self._window_rows(leaf, anchor, older, newer)
        if not rows:
            return None
        anchor_depth = int(rows[0][1])
        # rows: (depth, anchor depth, *message columns), oldest (deepest) first, one
        # more than ``older`` before the anchor when the thread goes on.
        has_older = int(rows[0][0]) > anchor_depth + older
        if has_older:
            rows = rows[1:]
        return [row[2:] for row in rows], has_older, int(rows[-1][0]) > 0

    def _is_linear(self, chat_id: str, leaf: str) -> bool:
        """Whether the chat is one chain ending at ``leaf``: one root, no message with two
        replies (no versions), nothing after the leaf; then every message is on the active
        thread. Reads the parent index only."""
        branched = self._conn.execute(
            "SELECT 1 FROM messages WHERE chat_id = ? GROUP BY parent_id HAVING COUNT(*) > 1 "
            "LIMIT 1",
            (chat_id,),
        ).fetchone()
        if branched is not None:
            return False
        below = self._conn.execute(
            "SELECT 1 FROM messages WHERE chat_id = ? AND parent_id = ? LIMIT 1", (chat_id, leaf)
        ).fetchone()
        return below is None

    def _linear_window(
        self, chat_id: str, anchor: str, older: int, newer: int
    ) -> tuple[list[Sequence[Any]], bool, bool] | None:
        """``_window`` in a chat without versions: parents up from ``anchor`` and replies
        down from it (one index lookup per message of the window; CROSS JOIN keeps SQLite
        from scanning the chat's messages instead)."""
        columns = ", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))
        rows = self._conn.execute(
            f"""
            WITH RECURSIVE
            up(id, k) AS (
                SELECT :anchor, 0
                UNION ALL
                SELECT m.parent_id, up.k - 1 FROM up CROSS JOIN messages m ON m.id = up.id
                WHERE m.parent_id IS NOT NULL AND up.k > -1 - :older
            ),
            down(id, k) AS (
                SELECT :anchor, 0
                UNION ALL
                SELECT m.id, down.k + 1
                FROM down CROSS JOIN messages m ON m.chat_id = :chat AND m.parent_id = down.id
                WHERE down.k < :newer + 1
            ),
            path(id, k) AS (SELECT id, k FROM up UNION ALL SELECT id, k FROM down WHERE k > 0)
            SELECT path.k, {columns}
            FROM path CROSS JOIN messages m ON m.id = path.id
            WHERE m.chat_id = :chat
            ORDER BY path.k
            """,
            {"anchor": anchor, "chat": chat_id, "older": older, "newer": newer},
        ).fetchall()
        if not any(row[0] == 0 for row in rows):
            return None  # not a message of this chat
        has_older = int(rows[0][0]) < -older
        has_newer = int(rows[-1][0]) > newer
        rows = rows[int(has_older) : len(rows) - int(has_newer)]
        return [row[1:] for row in rows], has_older, has_newer

    def _window_rows(self, leaf: str, anchor: str, older: int, newer: int) -> list[Sequence[Any]]:
        """The path from ``leaf`` up to ``older + 1`` messages beyond ``anchor``, keeping
        those from ``newer`` after it: (depth from the leaf, the anchor's depth, *columns),
        deepest first; empty when ``anchor`` is not on the path."""
        columns = ", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))
        rows: list[Sequence[Any]] = self._conn.execute(
            f"""
            WITH RECURSIVE path(id, depth, hit) AS (
                SELECT :leaf, 0, CASE WHEN :leaf = :anchor THEN 0 END
                UNION ALL
                SELECT m.parent_id, path.depth + 1,
                       COALESCE(path.hit, CASE WHEN m.parent_id = :anchor THEN path.depth + 1 END)
                FROM messages m JOIN path ON m.id = path.id
                WHERE m.parent_id IS NOT NULL
                  AND (path.hit IS NULL OR path.depth <= path.hit + :older)
            ),
            anchor(depth) AS (SELECT depth FROM path WHERE id = :anchor)
            SELECT path.depth, anchor.depth, {columns}
            FROM path JOIN anchor JOIN messages m ON m.id = path.id
            WHERE path.depth >= anchor.depth - :newer
            ORDER BY path.depth DESC
            """,
            {"leaf": leaf, "anchor": anchor, "older": older, "newer": newer},
        ).fetchall()
        return rows

    def thread_length(self, message_id: str) -> int:
        """How many messages the thread ending at ``message_id`` has (it included)."""
        row = self._conn.execute(
            """
            WITH RECURSIVE path(id) AS (
                SELECT ?
                UNION ALL
                SELECT m.parent_id FROM messages m JOIN path ON m.id = path.id
                WHERE m.parent_id IS NOT NULL
            )
            SELECT COUNT(*) FROM path
            """,
            (message_id,),
        ).fetchone()
        return int(row[0])

    def full_thread(self, chat_id: str) -> list[Message]:
        """Every message of the active thread, oldest first."""
        messages: list[Message] = []
        before: str | None = None
        while True:
            page = self.thread(chat_id, limit=1000, before=before)
            messages[:0] = page.messages
            if not page.has_older or not page.messages:
                return messages
            before = page.messages[0].id

    def _with_versions(self, chat_id: str, rows: list[Sequence[Any]]) -> list[Message]:
        if not rows:
            return []
        parents = {row[2] for row in rows}
        counts: dict[str | None, list[str]] = {}
        non_null = [p for p in parents if p is not None]
        for chunk_start in range(0, len(non_null), 500):
            chunk = non_null[chunk_start : chunk_start + 500]
            for parent_id, message_id in self._conn.execute(
                f"SELECT parent_id, id FROM messages WHERE chat_id = ? AND parent_id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY created_at, rowid",
                (chat_id, *chunk),
            ):
                counts.setdefault(parent_id, []).append(message_id)
        if None in parents:
            counts[None] = self._sibling_ids(chat_id, None)
        result = []
        for row in rows:
            siblings = counts.get(row[2], [row[0]])
            result.append(_message(row, siblings.index(row[0]) + 1, len(siblings)))
        return result

    def select_version(self, message_id: str) -> Message:
        """Show ``message_id`` (one of several versions) and the thread below it."""
        message = self.message(message_id)
        leaf = message_id
        now = self._clock()
        with self.transaction():
            self._conn.execute("UPDATE messages SET selected_at = ? WHERE id = ?", (now, leaf))
            while True:
                row = self._conn.execute(
                    "SELECT id FROM messages WHERE parent_id = ? "
                    "ORDER BY selected_at DESC, rowid DESC LIMIT 1",
                    (leaf,),
                ).fetchone()
                if row is None:
                    break
                leaf = row[0]
            self._conn.execute(
                "UPDATE chats SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                (leaf, now, message.chat_id),
            )
        return self.message(message_id)

    def sibling(self, message_id: str, offset: int) -> Message:
        """The version ``offset`` places away from ``message_id`` (wrapping)."""
        message = self.message(message_id)
        siblings = self._sibling_ids(message.chat_id, message.parent_id)
        index = (siblings.index(message_id) + offset) % len(siblings)
        return self.message(siblings[index])

    def delete_message(self, message_id: str) -> None:
        """Delete one message; its replies move up to its parent, so the thread stays whole."""
        message = self.message(message_id)
        chat = self.chat(message.chat_id)
        with self.transaction():
            self._conn.execute(
                "UPDATE messages SET parent_id = ? WHERE parent_id = ?",
                (message.parent_id, message_id),
            )
            if chat.active_leaf_id == message_id:
                self._conn.execute(
                    "UPDATE chats SET active_leaf_id = ? WHERE id = ?",
                    (message.parent_id, chat.id),
                )
            self._conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._conn.execute(
                "UPDATE chats SET updated_at = ? WHERE id = ?", (self._clock(), chat.id)
            )

    def reset(self, chat_id: str) -> None:
        """Delete every message of a chat, keeping its title, system prompt and memory."""
        self.chat(chat_id)
        with self.transaction():
            self._conn.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
            self._conn.execute(
                "UPDATE chats SET active_leaf_id = NULL, updated_at = ? WHERE id = ?",
                (self._clock(), chat_id),
            )
        self.compact()

    def all_messages(self, chat_id: str) -> list[Message]:
        """Every message of a chat, every version, in creation order (for export and moves)."""
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY created_at, rowid",
            (chat_id,),
        ).fetchall()
        return self._with_versions(chat_id, rows)

    def count_messages(self, chat_id: str | None = None) -> int:
        if chat_id is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        row = self._conn.execute("SELECT COUNT(*) FROM messages WHERE chat_id = ?", (chat_id,))
        return int(row.fetchone()[0])

    # --- attachments -------------------------------------------------------------------------

    def add_attachment(
        self,
        message_id: str,
        source: BinaryIO | str | os.PathLike[str],
        *,
        max_size: int,
        name: str | None = None,
        media_type: str | None = None,
        attachment_id: str | None = None,
    ) -> Attachment:
        """Attach a file (a path, or a binary file object read from its position) to a message.

        The bytes are read, hashed and written ``blobs.CHUNK_SIZE`` at a time, in one
        transaction with the attachment row (a savepoint when the caller's transaction
        also adds the message), so a crash leaves the whole attachment or nothing.
        Content already stored is not stored again. An empty file, or one over
        ``max_size`` bytes (the ``attachments.max_size_mb`` setting), is refused with
        ``AttachmentRefusedError`` and nothing is written. ``name`` defaults to the file's
        name, ``media_type`` to the type its extension suggests.
        """
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        message = self.message(message_id)
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            label = _attachment_name(name or path.name)
            try:
                handle = path.open("rb")
            except OSError as error:
                raise AttachmentRefusedError(
                    f"{label} could not be opened ({error.strerror or type(error).__name__}); "
                    "check that the file exists and that you may read it"
                ) from error
            with handle:
                return self._attach(message, handle, label, max_size, media_type, attachment_id)
        raw_name = getattr(source, "name", None)
        label = _attachment_name(name or (raw_name if isinstance(raw_name, str) else ""))
        return self._attach(message, source, label, max_size, media_type, attachment_id)

    def _attach(
        self,
        message: Message,
        handle: BinaryIO,
        label: str,
        max_size: int,
        media_type: str | None,
        attachment_id: str | None,
    ) -> Attachment:
        size = _remaining_size(handle)
        if size == 0:
            raise blobs.empty(label)
        if size is not None and size > max_size:
            raise blobs.too_large(label, max_size, size)
        known: tuple[str, int] | None = None
        start = _position(handle)
        if start is not None:
            # Hash first (outside the write lock) so a duplicate is never written.
            known = blobs.hash_source(blobs.file_chunks(handle, label), label, max_size)
            handle.seek(start)
        attachment_id = attachment_id or new_id()
        media_type = media_type or mimetypes.guess_type(label)[0] or "application/octet-stream"
        with self.transaction(), self._savepoint("attach"):
            if known is not None and blobs.has_blob(self._conn, known[0]):
                sha256, size = known
            else:
                sha256, size = blobs.store_blob(
                    self._conn,
                    blobs.file_chunks(handle, label),
                    name=label,
                    max_size=max_size,
                    clock=self._clock,
                )
            self._insert_attachment(
                Attachment(attachment_id, message.id, message.chat_id, label, media_type,
                           size, sha256, self._next_position(message.id), self._clock())
            )  # fmt: skip
        return self.attachment(attachment_id)

    def copy_attachments(self, source_message_id: str, target_message_id: str) -> list[Attachment]:
        """Attach to ``target_message_id`` the files of ``source_message_id`` (a new version
        of a message keeps them); the stored bytes are shared, not copied."""
        target = self.message(target_message_id)
        copied = []
        with self.transaction():
            for attachment in self.attachments(source_message_id):
                copy = Attachment(
                    new_id(), target.id, target.chat_id, attachment.name, attachment.media_type,
                    attachment.size, attachment.sha256, self._next_position(target.id),
                    self._clock(),
                )  # fmt: skip
                self._insert_attachment(copy)
                copied.append(copy)
        return copied

    def _next_position(self, message_id: str) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(MAX(position) + 1, 0) FROM attachments WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return int(row[0])

    def _insert_attachment(self, attachment: Attachment) -> None:
        a = attachment
        self._conn.execute(
            f"INSERT INTO attachments ({_ATTACHMENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (a.id, a.message_id, a.chat_id, a.name, a.media_type, a.size, a.sha256,
             a.position, a.created_at),
        )  # fmt: skip

    @contextlib.contextmanager
    def _savepoint(self, name: str) -> Iterator[None]:
        """A nested transaction: on error only what ran inside it is undone."""
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # A failed statement may already have ended the whole transaction.
            with contextlib.suppress(*DATABASE_ERRORS):
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    def attachment(self, attachment_id: str) -> Attachment:
        """The attachment with this id; ChatNotFoundError if there is none here."""
        row = self._conn.execute(
            f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE id = ?", (attachment_id,)
        ).fetchone()
        if row is None:
            raise ChatNotFoundError(f"no attachment with id {attachment_id}")
        return _attachment(row)

    def attachments(self, message_id: str) -> list[Attachment]:
        """A message's attachments, in the order they were added."""
        rows = self._conn.execute(
            f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE message_id = ? ORDER BY position",
            (message_id,),
        ).fetchall()
        return [_attachment(r) for r in rows]

    def chat_attachments(self, chat_id: str) -> list[Attachment]:
        """Every attachment of a chat (every message version), oldest first."""
        rows = self._conn.execute(
            f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE chat_id = ? "
            "ORDER BY created_at, position, rowid",
            (chat_id,),
        ).fetchall()
        return [_attachment(r) for r in rows]

    def read_attachment(self, attachment_id: str) -> Iterator[bytes]:
        """An attachment's bytes as chunks of at most ``blobs.CHUNK_SIZE`` bytes, in order."""
        attachment = self.attachment(attachment_id)
        try:
            chunks = blobs.blob_chunks(self._conn, attachment.sha256)
        except LookupError:
            raise _missing_content(attachment) from None
        return _reporting_damage(chunks, attachment)

    def save_attachment(self, attachment_id: str, path: str | os.PathLike[str]) -> Path:
        """Write an attachment to ``path`` atomically (temp file in the same folder, fsync,
        rename), checking its hash on the way; an existing file there is replaced."""
        attachment = self.attachment(attachment_id)
        target = Path(path)
        chunks = _verified(self.read_attachment(attachment_id), attachment)
        try:
            write_chunks_atomically(target, chunks)
        except OSError as error:
            raise UsageError(
                f"{attachment.name} could not be saved to {target} "
                f"({error.strerror or type(error).__name__}); choose another folder or free "
                "some space"
            ) from error
        return target

    def _copy_attachments(self, source: ChatStore, chat_id: str) -> None:
        """Copy a chat's attachments (and any blob missing here) from ``source``
        (inside the caller's transaction)."""
        for attachment in source.chat_attachments(chat_id):
            if not blobs.has_blob(self._conn, attachment.sha256):
                sha256, _ = blobs.store_blob(
                    self._conn,
                    source.read_attachment(attachment.id),
                    name=attachment.name,
                    max_size=attachment.size,
                    clock=self._clock,
                )
                if sha256 != attachment.sha256:
                    raise _missing_content(attachment)
            self._insert_attachment(attachment)
            chunks.copy_chunks(source._conn, self._conn, attachment.id, chat_id)

    # --- the chunk index of long attachments (app.store.chunks) ------------------------------

    def index_chunks(self, attachment_id: str, chunk_list: Sequence[tuple[str, str]]) -> list[int]:
        """Replace an attachment's indexed chunks ((text, label) pairs), in one transaction;
        returns the new chunk ids in order."""
        attachment = self.attachment(attachment_id)
        with self.transaction():
            return chunks.add_chunks(self._conn, attachment_id, attachment.chat_id, chunk_list)

    def store_vectors(self, model: str, vectors: Sequence[tuple[int, Sequence[float]]]) -> None:
        """Store the embedding (from ``model``) of each chunk id, in one transaction."""
        try:
            with self.transaction():
                chunks.set_vectors(self._conn, model, vectors)
        except ValueError as error:
            raise StorageError(
                f"the embedding model returned an unusable vector: {error}"
            ) from error

    def chunks_without_vectors(self, chat_id: str, model: str) -> list[tuple[int, str]]:
        """(id, text) of a chat's chunks not yet embedded with ``model``."""
        return chunks.chunks_without_vectors(self._conn, chat_id, model)

    def search_chunks(
        self, chat_id: str, question: str, *, limit: int = 6
    ) -> list[chunks.ChunkHit]:
        """A chat's attachment chunks ranked by BM25 for ``question`` (any text is safe)."""
        return chunks.search_bm25(self._conn, chat_id, question, limit)

    def nearest_chunks(
        self, chat_id: str, vector: Sequence[float], model: str, *, limit: int = 6
    ) -> list[chunks.ChunkHit]:
        """A chat's chunks nearest to ``vector`` (cosine); empty without sqlite-vec."""
        if not self.vectors_available:
            return []
        return chunks.search_vectors(self._conn, chat_id, vector, model, limit)

    def count_chunks(self, chat_id: str, attachment_id: str | None = None) -> int:
        return chunks.count_chunks(self._conn, chat_id, attachment_id)

    def count_vectors(self, chat_id: str, model: str | None = None) -> int:
        return chunks.count_vectors(self._conn, chat_id, model)

    # --- search ------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search over titles and messages, newest first, with snippets.

        Newest first rather than by relevance: FTS5 walks its index in rowid order and
        stops after ``limit`` hits, so a word found in half of 100,000 messages costs
        as little as a rare one, and recent conversations are what people look for.
        """
        match = fts_query(query)
        if not match:
            return []
        hits = [
            SearchHit(r[0], r[1], self.tier, None, r[2], -float(r[3]))
            for r in self._conn.execute(
                "SELECT c.id, c.title, f.snip, c.updated_at FROM ("
                " SELECT rowid, snippet(chats_fts, 0, '[', ']', '…', 12) AS snip FROM chats_fts"
                " WHERE chats_fts MATCH ? ORDER BY rowid DESC LIMIT ?"
                ") f JOIN chats c ON c.rowid = f.rowid "
                "WHERE c.deleted_at IS NULL AND c.move_state IS NULL",
                (match, limit),
            )
        ]
        hits += [
            SearchHit(r[0], r[1], self.tier, r[2], r[3], -float(r[4]))
            for r in self._conn.execute(
                "SELECT c.id, c.title, m.id, f.snip, m.created_at FROM ("
                " SELECT rowid, snippet(messages_fts, 0, '[', ']', '…', 12) AS snip"
                " FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?"
                ") f JOIN messages m ON m.rowid = f.rowid JOIN chats c ON c.id = m.chat_id "
                "WHERE c.deleted_at IS NULL AND c.move_state IS NULL",
                (match, limit),
            )
        ]
        # Title matches first, then messages, each newest first (rank: lower is better).
        hits.sort(key=lambda hit: (hit.message_id is not None, hit.rank))
        return hits[:limit]


def fts_query(text: str) -> str:
    """A safe FTS5 query: each word quoted (no operators), the last one as a prefix."""
    words = [w.replace('"', '""') for w in text.split() if w.strip('"')]
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _attachment_name(name: str) -> str:
    """The file name an attachment is shown and saved under: no folders, not empty."""
    base = Path(name.replace("\\", "/")).name.strip()
    return base[:255] or "attachment"


def _position(handle: BinaryIO) -> int | None:
    """Where a seekable file object stands; None when it cannot seek back (a pipe)."""
    try:
        return handle.tell() if handle.seekable() else None
    except (OSError, ValueError):
        return None


def _remaining_size(handle: BinaryIO) -> int | None:
    """How many bytes are left to read, when that can be known without reading them."""
    start = _position(handle)
    try:
        info = os.fstat(handle.fileno())
    except (OSError, ValueError, AttributeError):
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        return max(0, info.st_size - (start or 0))
    if start is None:
        return None
    end = handle.seek(0, io.SEEK_END)
    handle.seek(start)
    return max(0, end - start)


def _reporting_damage(chunks: Iterator[bytes], attachment: Attachment) -> Iterator[bytes]:
    """The chunks, a missing one reported as damage to this attachment (StorageError)."""
    try:
        yield from chunks
    except LookupError:
        raise _missing_content(attachment) from None


def _verified(chunks: Iterable[bytes], attachment: Attachment) -> Iterator[bytes]:
    """The chunks, checked against the attachment's size and hash after the last one."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != attachment.size or digest.hexdigest() != attachment.sha256:
        raise _missing_content(attachment)


def _missing_content(attachment: Attachment) -> StorageError:
    return StorageError(
        f"the content of {attachment.name} is missing or damaged in the chat database; "
        "restore the profile from a backup"
    )


def _storage_error(error: Exception) -> StorageError:
    text = str(error).lower()
    if "full" in text:
        return StorageError(
            "the disk is full: the chat database could not be written; free some space and "
            "try again (nothing already saved was lost)"
        )
    if "readonly" in text or "read-only" in text:
        return StorageError("the chat database is read-only; check the profile's permissions")
    if "locked" in text or "busy" in text:
        return StorageError("the chat database is busy; try again")
    return StorageError(f"the chat database could not be written ({type(error).__name__})")

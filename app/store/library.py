"""``Library``: the chats of all three tiers behind one interface.

Standard and Private chats live in the vault's two SQLCipher databases;
Ephemeral chats live in an in-memory database that is never written to disk
and is gone when the library closes (app exit or lock).

Moving a chat between tiers copies it into the destination marked
``move_state = 'incoming'`` (hidden), deletes it from the source, then clears
the mark; three commits. ``recover_moves`` (run at open) finishes a move that a
crash interrupted, so a chat is never lost or shown twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import sqlcipher3

from app.errors import UsageError
from app.store.chats import ChatNotFoundError, ChatStore
from app.store.models import Chat, ChatSummary, SearchHit, Tier

log = logging.getLogger(__name__)

UNDO_SECONDS = 10.0


def memory_connection() -> Any:
    """An in-memory database for Ephemeral chats: no file, no journal, temp in RAM."""
    conn = sqlcipher3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


class Library:
    """All chats: Standard and Private when the vault is unlocked, Ephemeral always."""

    def __init__(
        self,
        standard: Any | None = None,
        private: Any | None = None,
        *,
        clock: Any = time.time,
    ) -> None:
        self._clock = clock
        self.stores: dict[Tier, ChatStore] = {
            Tier.EPHEMERAL: ChatStore(memory_connection(), Tier.EPHEMERAL, clock=clock)
        }
        if standard is not None:
            self.stores[Tier.STANDARD] = ChatStore(standard, Tier.STANDARD, clock=clock)
        if private is not None:
            self.stores[Tier.PRIVATE] = ChatStore(private, Tier.PRIVATE, clock=clock)
        self.recover_moves()

    def close(self) -> None:
        """Close every connection; Ephemeral chats vanish."""
        for store in self.stores.values():
            store.conn.close()
        self.stores.clear()

    def store(self, tier: Tier) -> ChatStore:
        try:
            return self.stores[tier]
        except KeyError:
            raise UsageError(
                f"{tier.value} chats are not available: unlock the vault first"
            ) from None

    def store_of(self, chat_id: str) -> ChatStore:
        """The store holding ``chat_id``; ChatNotFoundError if none does."""
        for store in self.stores.values():
            if store.has_chat(chat_id):
                return store
        raise ChatNotFoundError(f"no chat with id {chat_id}; `hushchat chats list` shows the ids")

    def chat(self, chat_id: str) -> Chat:
        return self.store_of(chat_id).chat(chat_id)

    def resolve_id(self, prefix: str) -> str:
        """Accept a unique prefix of a chat id, as people type the first few characters."""
        matches: set[str] = set()
        for store in self.stores.values():
            rows = store.conn.execute(
                "SELECT id FROM chats WHERE id LIKE ? || '%' AND move_state IS NULL LIMIT 3",
                (prefix.lower(),),
            ).fetchall()
            matches.update(r[0] for r in rows)
        if len(matches) == 1:
            return matches.pop()
        if not matches:
            raise ChatNotFoundError(
                f"no chat with id {prefix}; `hushchat chats list` shows the ids"
            )
        raise UsageError(f"'{prefix}' matches several chats; type more of the id")

    def list_chats(self) -> list[ChatSummary]:
        """Every chat, pinned first, then by recent activity."""
        chats: list[ChatSummary] = []
        for store in self.stores.values():
            chats.extend(store.list_chats())
        chats.sort(key=lambda c: (not c.pinned, -c.updated_at))
        return chats

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        hits: list[SearchHit] = []
        for store in self.stores.values():
            hits.extend(store.search(query, limit=limit))
        hits.sort(key=lambda hit: (hit.message_id is not None, hit.rank))
        return hits[:limit]

    # --- delete with undo --------------------------------------------------------------------

    def delete(self, chat_id: str) -> None:
        """Hide a chat; ``undo_delete`` restores it until ``purge_deleted`` runs."""
        self.store_of(chat_id).mark_deleted(chat_id)

    def undo_delete(self, chat_id: str) -> None:
        for store in self.stores.values():
            if chat_id in store.deleted_chats():
                store.undelete(chat_id)
                return
        raise ChatNotFoundError(f"no deleted chat with id {chat_id} to restore")

    def purge_deleted(self, *, older_than: float = UNDO_SECONDS) -> list[str]:
        """Remove for good the chats deleted more than ``older_than`` seconds ago."""
        cutoff = self._clock() - older_than
        purged = []
        for store in self.stores.values():
            rows = store.conn.execute(
                "SELECT id FROM chats WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,)
            ).fetchall()
            for (chat_id,) in rows:
                store.purge(chat_id)
                purged.append(chat_id)
        return purged

    # --- moving between tiers ----------------------------------------------------------------

    def move(self, chat_id: str, to_tier: Tier) -> Chat:
        """Move a chat (with every message version) to another tier, crash-safely."""
        source = self.store_of(chat_id)
        if source.tier == to_tier:
            return source.chat(chat_id)
        if to_tier == Tier.EPHEMERAL:
            raise UsageError("a saved chat cannot become Ephemeral; start an Ephemeral chat")
        destination = self.store(to_tier)
        chat = source.chat(chat_id, include_deleted=True)
        messages = source.conn.execute(
            "SELECT * FROM messages WHERE chat_id = ? ORDER BY created_at, rowid", (chat_id,)
        )
        message_columns = [d[0] for d in messages.description]
        message_rows = messages.fetchall()
        chat_cursor = source.conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,))
        chat_columns = [d[0] for d in chat_cursor.description]
        chat_row = dict(zip(chat_columns, chat_cursor.fetchone(), strict=True))
        chat_row.update(tier=to_tier.value, move_state="incoming")
        chat_row.pop("rowid", None)

        with destination.transaction():
            destination.conn.execute("PRAGMA defer_foreign_keys = ON")
            _insert(destination.conn, "chats", chat_row.keys(), [tuple(chat_row.values())])
            _insert(destination.conn, "messages", message_columns, message_rows)
        with source.transaction():
            source.conn.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
            source.conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
        with destination.transaction():
            destination.conn.execute("UPDATE chats SET move_state = NULL WHERE id = ?", (chat_id,))
        source.compact()
        log.info("moved a chat from %s to %s", chat.tier.value, to_tier.value)
        return destination.chat(chat_id, include_deleted=True)

    def recover_moves(self) -> None:
        """Finish moves a crash interrupted: the incoming copy is complete, so keep it."""
        for destination in self.stores.values():
            rows = destination.conn.execute(
                "SELECT id FROM chats WHERE move_state = 'incoming'"
            ).fetchall()
            for (chat_id,) in rows:
                for source in self.stores.values():
                    if source is not destination and source.has_chat(chat_id):
                        with source.transaction():
                            source.conn.execute(
                                "DELETE FROM messages WHERE chat_id = ?", (chat_id,)
                            )
                            source.conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
                with destination.transaction():
                    destination.conn.execute(
                        "UPDATE chats SET move_state = NULL WHERE id = ?", (chat_id,)
                    )
                log.warning("finished a chat move that was interrupted")


def _insert(conn: Any, table: str, columns: Iterable[str], rows: list[Any]) -> None:
    names = list(columns)
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        rows,
    )

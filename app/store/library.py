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
from collections.abc import Sequence
from typing import Any

import sqlcipher3

from app.errors import UsageError
from app.store.chats import ChatNotFoundError, ChatStore
from app.store.models import Chat, ChatSummary, Message, SearchHit, Tier

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
        self._stores: dict[Tier, ChatStore] = {
            Tier.EPHEMERAL: ChatStore(memory_connection(), Tier.EPHEMERAL, clock=clock)
        }
        if standard is not None:
            self._stores[Tier.STANDARD] = ChatStore(standard, Tier.STANDARD, clock=clock)
        if private is not None:
            self._stores[Tier.PRIVATE] = ChatStore(private, Tier.PRIVATE, clock=clock)
        self.recover_moves()

    def close(self) -> None:
        """Close every connection; Ephemeral chats vanish."""
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    @property
    def tiers(self) -> list[Tier]:
        """The tiers open now (Ephemeral always; Standard and Private when unlocked)."""
        return list(self._stores)

    def store(self, tier: Tier) -> ChatStore:
        try:
            return self._stores[tier]
        except KeyError:
            if tier is Tier.PRIVATE and Tier.STANDARD in self._stores:
                raise UsageError(
                    "Private chats are not open: the keychain and Touch ID open Standard "
                    "chats only; unlock with your passphrase, a security key or the recovery "
                    "code to open them"
                ) from None
            raise UsageError(
                f"{tier.value} chats are not available: unlock the vault first"
            ) from None

    def store_of(self, chat_id: str) -> ChatStore:
        """The store holding ``chat_id``; ChatNotFoundError if none does."""
        for store in self._stores.values():
            if store.has_chat(chat_id):
                return store
        raise ChatNotFoundError(f"no chat with id {chat_id}; `hushchat chats list` shows the ids")

    def chat(self, chat_id: str) -> Chat:
        return self.store_of(chat_id).chat(chat_id)

    def summary(self, chat_id: str) -> ChatSummary | None:
        """What the sidebar shows of a chat; None when it is gone or deleted."""
        for store in self._stores.values():
            summary = store.summary(chat_id)
            if summary is not None:
                return summary
        return None

    def find_message(self, message_id: str) -> tuple[ChatStore, Message]:
        """The store holding a message, and the message; ChatNotFoundError if none does."""
        for store in self._stores.values():
            message = store.find_message(message_id)
            if message is not None:
                return store, message
        raise ChatNotFoundError(f"no message with id {message_id}")

    def resolve_id(self, prefix: str) -> str:
        """Accept a unique prefix of a chat id, as people type the first few characters."""
        matches: set[str] = set()
        for store in self._stores.values():
            matches.update(store.resolve_prefix(prefix))
        if len(matches) == 1:
            return matches.pop()
        if not matches:
            raise ChatNotFoundError(
                f"no chat with id {prefix}; `hushchat chats list` shows the ids"
            )
        raise UsageError(f"'{prefix}' matches several chats; type more of the id")

    def find_readable(self, reference: str) -> tuple[ChatStore, Message]:
        """The message ``reference`` names: a message id, or a chat id for the chat's last
        answer; a unique prefix of either, as people type the first few characters."""
        for store in self._stores.values():
            message = store.find_message(reference)
            if message is not None:
                return store, message
        messages: set[str] = set()
        chats: set[str] = set()
        for store in self._stores.values():
            messages.update(store.resolve_message_prefix(reference, limit=2))
            chats.update(store.resolve_prefix(reference, limit=2))
        if len(messages) + len(chats) > 1:
            raise UsageError(
                f"'{reference}' matches several messages or chats; type more of the id"
            )
        if messages:
            return self.find_message(messages.pop())
        if not chats:
            raise ChatNotFoundError(
                f"no message or chat with id {reference}; `hushchat chats list` shows chat ids"
            )
        chat_id = chats.pop()
        store = self.store_of(chat_id)
        answers = [m for m in store.full_thread(chat_id) if m.role == "assistant"]
        if not answers:
            raise UsageError(f"chat {chat_id[:12]} has no answer to read aloud yet")
        return store, answers[-1]

    def list_chats(self, *, limit: int | None = None) -> list[ChatSummary]:
        """Every chat (or the first ``limit``), pinned first, then by recent activity."""
        chats: list[ChatSummary] = []
        for store in self._stores.values():
            chats.extend(store.list_chats() if limit is None else store.list_chats(limit=limit))
        chats.sort(key=lambda c: (not c.pinned, -c.updated_at))
        return chats if limit is None else chats[:limit]

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        hits: list[SearchHit] = []
        for store in self._stores.values():
            hits.extend(store.search(query, limit=limit))
        hits.sort(key=lambda hit: (hit.message_id is not None, hit.rank))
        return hits[:limit]

    def ids_taken(self, chat_ids: Sequence[str], message_ids: Sequence[str]) -> bool:
        """Whether any of these ids exists in any tier (moves keep ids across tiers)."""
        return any(store.ids_taken(chat_ids, message_ids) for store in self._stores.values())

    # --- delete with undo --------------------------------------------------------------------

    def delete(self, chat_id: str) -> None:
        """Hide a chat; ``undo_delete`` restores it until ``purge_deleted`` runs."""
        self.store_of(chat_id).mark_deleted(chat_id)

    def undo_delete(self, chat_id: str) -> None:
        for store in self._stores.values():
            if chat_id in store.deleted_chats():
                store.undelete(chat_id)
                return
        raise ChatNotFoundError(f"no deleted chat with id {chat_id} to restore")

    def purge_deleted(self, *, older_than: float = UNDO_SECONDS) -> list[str]:
        """Remove for good the chats deleted more than ``older_than`` seconds ago."""
        cutoff = self._clock() - older_than
        purged = []
        for store in self._stores.values():
            for chat_id in store.deleted_chats(before=cutoff):
                store.purge(chat_id)
                purged.append(chat_id)
        return purged

    # --- moving between tiers ----------------------------------------------------------------

    def move(self, chat_id: str, to_tier: Tier) -> Chat:
        """Move a chat (with every message version and attachment) to another tier,
        crash-safely."""
        source = self.store_of(chat_id)
        if source.tier == to_tier:
            return source.chat(chat_id)
        if to_tier == Tier.EPHEMERAL:
            raise UsageError("a saved chat cannot become Ephemeral; start an Ephemeral chat")
        destination = self.store(to_tier)
        record = source.record(chat_id)
        destination.insert_records([record], incoming=True, attachments_from=source)
        source.remove_moved(chat_id)
        destination.finish_incoming(chat_id)
        log.info("moved a chat from %s to %s", source.tier.value, to_tier.value)
        return destination.chat(chat_id, include_deleted=True)

    def recover_moves(self) -> None:
        """Finish moves a crash interrupted: the incoming copy is complete, so keep it."""
        for destination in self._stores.values():
            for chat_id in destination.incoming():
                for source in self._stores.values():
                    if source is not destination and source.has_chat(chat_id):
                        source.remove_moved(chat_id)
                destination.finish_incoming(chat_id)
                log.warning("finished a chat move that was interrupted")

"""The sync outbox in each tier database: triggers mark changed records in the user's
own transaction; Ephemeral chats are never tracked; a move is not a delete."""

from __future__ import annotations

import pytest

from app.store.chats import ChatStore
from app.store.library import Library, memory_connection
from app.store.models import MessageStatus, Tier
from app.store.sync_state import PendingRecord, SyncState


def dirty(state: SyncState) -> dict[str, tuple[bool, bool]]:
    """record id -> (dirty, local_deleted)"""
    return {row.record_id: (row.dirty, row.local_deleted) for row in state.dirty_rows()}


@pytest.fixture
def store() -> ChatStore:
    return ChatStore(memory_connection(), Tier.STANDARD)


def test_a_new_chat_and_its_messages_are_marked_for_sync(store: ChatStore) -> None:
    chat = store.create_chat(title="t")
    message = store.add_message(chat.id, "user", "hi", parent_id=None)
    assert set(dirty(store.sync_state())) == {
        f"chatkey:{chat.id}",
        f"chat:{chat.id}",
        f"msg:{message.id}",
    }


def test_a_failed_write_marks_nothing(store: ChatStore) -> None:
    chat = store.create_chat()
    state = store.sync_state()
    with state.transaction():
        for row in state.dirty_rows():
            state.set_dirty(row.record_id, False)
    with pytest.raises(RuntimeError), store.transaction():
        store._conn.execute("UPDATE chats SET title = 'x' WHERE id = ?", (chat.id,))
        raise RuntimeError("crash before commit")
    assert dirty(state) == {}
    store.rename(chat.id, "committed")
    assert dirty(state) == {f"chat:{chat.id}": (True, False)}


def test_deleting_a_pushed_message_leaves_a_tombstone_and_an_unpushed_one_nothing(
    store: ChatStore,
) -> None:
    chat = store.create_chat()
    first = store.add_message(chat.id, "user", "one", parent_id=None)
    second = store.add_message(chat.id, "assistant", "two", parent_id=first.id)
    state = store.sync_state()
    with state.transaction():
        state.save_pending(
            PendingRecord(f"msg:{first.id}", "message", 1, None, False, "k", b"x"), None
        )
        state.mark_pushed(f"msg:{first.id}", 1, False)
    store.delete_message(first.id)
    store.delete_message(second.id)
    row = state.row(f"msg:{first.id}")
    assert row is not None and row.local_deleted and row.dirty
    assert row.state == {"parent_id": None}
    assert state.row(f"msg:{second.id}") is None  # never left the device: nothing to say


def test_purging_a_pushed_chat_asks_for_a_new_epoch(store: ChatStore) -> None:
    chat = store.create_chat()
    state = store.sync_state()
    with state.transaction():
        state.put_row(f"chatkey:{chat.id}", "chatkey", chat.id, server_revision=1)
        state.put_row(f"chat:{chat.id}", "chat", chat.id, server_revision=1)
    with state.transaction():
        state.set_state(f"chat:{chat.id}", {"values": {"title": ["secret title", "user"]}})
    store.purge(chat.id)
    assert state.setting("rotate_pending") == 1
    assert state.row(f"chat:{chat.id}").state == {}  # nothing of the chat is kept
    assert dirty(state) == {
        f"chatkey:{chat.id}": (True, True),
        f"chat:{chat.id}": (True, True),
    }


def test_purging_a_chat_never_pushed_needs_no_epoch_change(store: ChatStore) -> None:
    chat = store.create_chat()
    store.purge(chat.id)
    assert store.sync_state().setting("rotate_pending") is None
    assert dirty(store.sync_state()) == {}


def test_ephemeral_chats_are_never_tracked() -> None:
    library = Library(memory_connection(), memory_connection())
    ephemeral = library.store(Tier.EPHEMERAL)
    chat = ephemeral.create_chat()
    ephemeral.add_message(chat.id, "user", "secret", parent_id=None)
    assert dirty(ephemeral.sync_state()) == {}


def test_a_move_is_not_a_delete() -> None:
    library = Library(memory_connection(), memory_connection())
    standard = library.store(Tier.STANDARD)
    chat = standard.create_chat()
    message = standard.add_message(chat.id, "user", "hi", parent_id=None)
    state = standard.sync_state()
    with state.transaction():
        for row in state.dirty_rows():
            state.put_row(row.record_id, row.kind, row.chat_id, server_revision=1)
    library.move(chat.id, Tier.PRIVATE)
    assert not any(row.local_deleted for row in state.dirty_rows())
    assert state.row(f"chat:{chat.id}") is None
    private = library.store(Tier.PRIVATE).sync_state()
    assert set(dirty(private)) == {f"chatkey:{chat.id}", f"chat:{chat.id}", f"msg:{message.id}"}


def test_streaming_updates_mark_the_message_until_it_is_final(store: ChatStore) -> None:
    chat = store.create_chat()
    answer = store.add_message(
        chat.id, "assistant", "", parent_id=None, status=MessageStatus.PARTIAL
    )
    state = store.sync_state()
    with state.transaction():
        state.set_dirty(f"msg:{answer.id}", False)
    store.update_message(answer.id, content="done", status=MessageStatus.COMPLETE)
    assert dirty(state)[f"msg:{answer.id}"] == (True, False)


def test_remote_writes_are_not_local_changes(store: ChatStore) -> None:
    state = store.sync_state()
    with state.transaction(), state.applying():
        state.write_chat(
            {
                "id": "c1", "title": "From afar", "title_source": "user", "system_prompt": "",
                "memory": "", "provider": None, "model": None, "pinned": False,
                "active_leaf_id": None, "created_at": 1.0, "updated_at": 2.0,
            }
        )  # fmt: skip
    assert dirty(state) == {}
    assert store.chat("c1").title == "From afar"

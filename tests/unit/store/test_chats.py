"""ChatStore and Library: versions, paging, search, delete/undo/purge, tier moves, faults."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

from app.errors import UsageError
from app.store.chats import ChatNotFoundError, ChatStore, StorageError, fts_query
from app.store.library import Library, memory_connection
from app.store.models import DEFAULT_TITLE, MessageStatus, Tier, TitleSource
from tests.unit.store.support import Clock


def conversation(store: ChatStore, turns: int) -> str:
    chat = store.create_chat()
    parent = None
    for i in range(turns):
        parent = store.add_message(chat.id, "user", f"question {i}", parent_id=parent).id
        parent = store.add_message(chat.id, "assistant", f"answer {i}", parent_id=parent).id
    return chat.id


def test_new_chat_is_titled_new_chat(library: Library) -> None:
    chat = library.store(Tier.STANDARD).create_chat()
    assert chat.title == DEFAULT_TITLE and chat.title_source is TitleSource.DEFAULT
    assert chat.tier is Tier.STANDARD


def test_user_title_wins_over_auto_title(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat = store.create_chat()
    store.rename(chat.id, "  My   own  ")
    assert not store.set_auto_title(chat.id, "Generated")
    assert store.chat(chat.id).title == "My own"
    other = store.create_chat()
    assert store.set_auto_title(other.id, "Generated")
    assert store.chat(other.id).title_source is TitleSource.AUTO


def test_versions_and_switching(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat = store.create_chat()
    q = store.add_message(chat.id, "user", "q", parent_id=None)
    a1 = store.add_message(chat.id, "assistant", "a1", parent_id=q.id)
    follow = store.add_message(chat.id, "user", "follow-up", parent_id=a1.id)
    a2 = store.add_message(chat.id, "assistant", "a2", parent_id=q.id)  # regenerate
    thread = store.full_thread(chat.id)
    assert [m.content for m in thread] == ["q", "a2"]
    assert (thread[1].version, thread[1].versions) == (2, 2)
    # Going back to version 1 brings back the thread that followed it.
    store.select_version(a1.id)
    assert [m.content for m in store.full_thread(chat.id)] == ["q", "a1", "follow-up"]
    assert store.sibling(a1.id, +1).id == a2.id
    assert store.sibling(a1.id, -1).id == a2.id  # wraps
    assert store.chat(chat.id).active_leaf_id == follow.id


def test_paging_newest_first_without_loading_everything(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat_id = conversation(store, 150)
    page = store.thread(chat_id, limit=100)
    assert len(page.messages) == 100 and page.has_older
    assert page.messages[-1].content == "answer 149"
    older = store.thread(chat_id, limit=100, before=page.messages[0].id)
    assert len(older.messages) == 100 and older.has_older
    oldest = store.thread(chat_id, limit=100, before=older.messages[0].id)
    assert not oldest.has_older and oldest.messages[0].content == "question 0"
    assert len(store.full_thread(chat_id)) == 300
    assert store.thread_length(page.messages[-1].id) == 300


def test_delete_message_keeps_thread_whole(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat_id = conversation(store, 2)
    thread = store.full_thread(chat_id)
    store.delete_message(thread[1].id)
    assert [m.content for m in store.full_thread(chat_id)] == [
        "question 0", "question 1", "answer 1",
    ]  # fmt: skip
    store.delete_message(store.full_thread(chat_id)[-1].id)  # the leaf
    assert [m.content for m in store.full_thread(chat_id)] == ["question 0", "question 1"]


def test_reset_keeps_prompt_and_memory(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat_id = conversation(store, 3)
    store.update_chat(chat_id, system_prompt="be brief", memory="likes cats")
    store.reset(chat_id)
    chat = store.chat(chat_id)
    assert store.full_thread(chat_id) == []
    assert (chat.system_prompt, chat.memory) == ("be brief", "likes cats")
    assert store.count_messages(chat_id) == 0


def test_search_titles_and_messages_with_snippets(library: Library) -> None:
    standard = library.store(Tier.STANDARD)
    chat_id = conversation(standard, 1)
    standard.rename(chat_id, "Kubernetes notes")
    private = library.store(Tier.PRIVATE)
    other = private.create_chat()
    private.add_message(
        other.id, "user", "How do I drain a kubernetes node safely?", parent_id=None
    )
    hits = library.search("kubern")
    assert {(h.tier, h.message_id is None) for h in hits} == {
        (Tier.STANDARD, True), (Tier.PRIVATE, False),
    }  # fmt: skip
    message_hit = next(h for h in hits if h.message_id)
    assert "[kubernetes]" in message_hit.snippet.lower()
    # Operators and quotes are taken literally, never as FTS syntax.
    assert library.search('"unbalanced OR') == []
    assert library.search("   ") == []
    assert fts_query('a "b') == '"a" """b"*'  # a quote inside a word is doubled


def test_delete_undo_and_purge(library: Library, clock: Clock) -> None:
    store = library.store(Tier.STANDARD)
    chat_id = conversation(store, 1)
    library.delete(chat_id)
    assert library.list_chats() == []
    assert library.search("question") == []
    library.undo_delete(chat_id)
    assert [c.id for c in library.list_chats()] == [chat_id]
    library.delete(chat_id)
    assert library.purge_deleted(older_than=3600) == []  # still inside the undo window
    clock.now += 3600
    assert library.purge_deleted(older_than=3600) == [chat_id]
    with pytest.raises(ChatNotFoundError):
        library.undo_delete(chat_id)
    assert store.count_messages() == 0


def test_purge_leaves_no_content_in_the_file(tmp_path: Path) -> None:
    """With secure_delete, an FTS merge and a WAL checkpoint, purged text is not on disk.

    This runs on an unencrypted file so the bytes can be searched; the vault's
    databases use the same pragmas under SQLCipher.
    """
    path = tmp_path / "plain.db"
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA secure_delete = ON")
    store = ChatStore(conn, Tier.STANDARD)
    keep = store.create_chat()
    store.add_message(keep.id, "user", "harmless text", parent_id=None)
    doomed = store.create_chat(title="zanzibarsentinel title")
    for _ in range(50):
        store.add_message(doomed.id, "user", "zanzibarsentinel secret " * 20, parent_id=None)
    store.purge(doomed.id)
    conn.close()
    for file in tmp_path.iterdir():
        assert b"zanzibarsentinel" not in file.read_bytes(), file.name
    assert b"harmless" in path.read_bytes()


def test_move_between_tiers_keeps_versions(library: Library) -> None:
    standard = library.store(Tier.STANDARD)
    chat_id = conversation(standard, 2)
    first_answer = standard.full_thread(chat_id)[1]
    standard.add_message(chat_id, "assistant", "alt", parent_id=first_answer.parent_id)
    before = [(m.id, m.content, m.versions) for m in standard.all_messages(chat_id)]
    moved = library.move(chat_id, Tier.PRIVATE)
    assert moved.tier is Tier.PRIVATE
    assert not standard.has_chat(chat_id)
    private = library.store(Tier.PRIVATE)
    assert [(m.id, m.content, m.versions) for m in private.all_messages(chat_id)] == before
    assert library.store_of(chat_id) is private
    assert standard.search("question") == []
    with pytest.raises(UsageError, match="cannot become Ephemeral"):
        library.move(chat_id, Tier.EPHEMERAL)


def test_keep_an_ephemeral_chat(library: Library) -> None:
    ephemeral = library.store(Tier.EPHEMERAL)
    chat_id = conversation(ephemeral, 1)
    library.move(chat_id, Tier.STANDARD)
    assert library.chat(chat_id).tier is Tier.STANDARD
    assert ephemeral.count_messages() == 0


def test_interrupted_move_is_finished_at_open(clock: Clock) -> None:
    standard, private = memory_connection(), memory_connection()
    library = Library(standard, private, clock=clock)
    chat_id = conversation(library.store(Tier.STANDARD), 1)
    # Simulate a crash after the copy committed but before the source was deleted.
    record = library.store(Tier.STANDARD).record(chat_id)
    library.store(Tier.PRIVATE).insert_records([record], incoming=True)
    assert [c.id for c in library.list_chats()] == [chat_id]  # the hidden copy is not shown
    reopened = Library(standard, private, clock=clock)
    assert reopened.store_of(chat_id).tier is Tier.PRIVATE
    assert len(reopened.store(Tier.PRIVATE).full_thread(chat_id)) == 2
    assert not reopened.store(Tier.STANDARD).has_chat(chat_id)


def test_resolve_id_prefix(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat = store.create_chat(chat_id="abcdef0123456789abcdef0123456789")
    store.create_chat(chat_id="abcdff0123456789abcdef0123456789")
    assert library.resolve_id("abcde") == chat.id
    with pytest.raises(UsageError, match="matches several chats"):
        library.resolve_id("abcd")
    with pytest.raises(ChatNotFoundError, match="hushchat chats list"):
        library.resolve_id("zzz")
    for wildcard in ("%", "abc_"):  # characters, not LIKE patterns
        with pytest.raises(ChatNotFoundError):
            library.resolve_id(wildcard)


def test_what_to_read_aloud_by_message_or_chat_id_or_their_prefixes(library: Library) -> None:
    """``hushchat speak ID``: a message id, a chat id (its last answer on the shown thread),
    or a unique prefix of either; across both tiers; wildcards are plain characters."""
    standard, private = library.store(Tier.STANDARD), library.store(Tier.PRIVATE)
    chat = standard.create_chat(chat_id="c0ffee00000000000000000000000001")
    question = standard.add_message(
        chat.id, "user", "q", parent_id=None, message_id="aa" + "0" * 30
    )
    first = standard.add_message(
        chat.id, "assistant", "one", parent_id=question.id, message_id="ab" + "0" * 30
    )
    second = standard.add_message(chat.id, "user", "q2", parent_id=first.id)
    last = standard.add_message(
        chat.id, "assistant", "two", parent_id=second.id, message_id="ac" + "1" * 30
    )
    secret = private.create_chat(chat_id="d00d0000000000000000000000000001")
    private.add_message(secret.id, "user", "q", parent_id=None, message_id="f1" + "0" * 30)

    assert library.find_readable(first.id)[1].content == "one"  # a whole message id
    assert library.find_readable("ab")[1].id == first.id  # a unique prefix
    assert library.find_readable(chat.id)[1].id == last.id  # a chat: its last answer
    assert library.find_readable("c0ffee")[1].id == last.id
    store, message = library.find_readable("f1")
    assert store is private and message.content == "q"
    with pytest.raises(UsageError, match="no answer to read aloud yet"):
        library.find_readable("d00d")
    with pytest.raises(UsageError, match="matches several messages or chats"):
        library.find_readable("a")  # aa…, ab…, ac…
    for nothing in ("zz", "a_", "a%", "%"):
        with pytest.raises(ChatNotFoundError, match="no message or chat with id"):
            library.find_readable(nothing)


def test_locked_tiers_are_reported(clock: Clock) -> None:
    library = Library(clock=clock)
    with pytest.raises(UsageError, match="unlock the vault first"):
        library.store(Tier.STANDARD)


class FullDisk:
    """A connection whose writes fail like a full disk after ``budget`` statements."""

    def __init__(self, conn: Any, budget: int) -> None:
        self._conn = conn
        self._counter = itertools.count()
        self.budget = budget

    def execute(self, sql: str, *args: Any) -> Any:
        is_write = sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        if is_write and next(self._counter) >= self.budget:
            raise sqlcipher3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_disk_full_is_a_clear_error_and_loses_nothing() -> None:
    raw = memory_connection()
    disk = FullDisk(raw, budget=10**9)
    store = ChatStore(disk, Tier.STANDARD)
    chat_id = conversation(store, 2)
    disk.budget = 0  # from now on every write fails
    with pytest.raises(StorageError, match="the disk is full"):
        store.add_message(chat_id, "user", "one more", parent_id=None)
    disk.budget = 10**9
    assert [m.content for m in store.full_thread(chat_id)][-1] == "answer 1"
    assert store.count_messages(chat_id) == 4
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_big_message_round_trips(library: Library) -> None:
    store = library.store(Tier.STANDARD)
    chat = store.create_chat()
    big = "x" * 1_000_000 + " tail"
    message = store.add_message(chat.id, "user", big, parent_id=None)
    assert store.message(message.id).content == big
    assert store.message(message.id).status is MessageStatus.COMPLETE


def test_a_standard_only_library_says_how_to_open_private(clock: Clock) -> None:
    library = Library(memory_connection(), None, clock=clock)
    with pytest.raises(UsageError, match="unlock with your passphrase"):
        library.store(Tier.PRIVATE)

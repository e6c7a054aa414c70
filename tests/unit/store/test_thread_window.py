"""ChatStore.thread_window and thread(after=): the window of the active thread a search
hit opens at (N before it, M after it) and the newer pages below it, on a thread that is
a tree (edits and regenerations add versions; only the active path counts)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from app.store.chats import ChatStore
from app.store.library import Library, memory_connection
from app.store.models import Tier
from tests.benchmarks._records import thread_chat


@pytest.fixture
def store() -> Iterator[ChatStore]:
    library = Library(memory_connection(), memory_connection())
    yield library.store(Tier.STANDARD)
    library.close()


@pytest.fixture(params=["one version", "with versions"])
def versions(request: pytest.FixtureRequest) -> bool:
    """Each window test runs on a chain without versions (read around the message) and
    on one where an early answer has a second version not shown (walked from the leaf)."""
    return bool(request.param == "with versions")


@pytest.fixture
def chain(store: ChatStore, versions: bool) -> Callable[[ChatStore, int], tuple[str, list[str]]]:
    def make(store: ChatStore, count: int) -> tuple[str, list[str]]:
        chat = store.create_chat()
        ids: list[str] = []
        parent = None
        for i in range(count):
            role = "user" if i % 2 == 0 else "assistant"
            parent = store.add_message(chat.id, role, f"message {i}", parent_id=parent).id
            ids.append(parent)
        if versions and count > 1:
            store.add_message(chat.id, "assistant", "v2", parent_id=ids[0], make_active=False)
        return chat.id, ids

    return make


Chain = Callable[[ChatStore, int], tuple[str, list[str]]]


def ids_of(page: object) -> list[str]:
    return [m.id for m in page.messages]  # type: ignore[attr-defined]


def test_a_window_holds_n_before_and_m_after_the_message(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 300)
    page = store.thread_window(chat_id, ids[100], older=10, newer=20)
    assert ids_of(page) == ids[90:121]
    assert page.has_older and page.has_newer


def test_a_window_at_the_first_message_has_no_older(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 300)
    page = store.thread_window(chat_id, ids[0], older=10, newer=5)
    assert ids_of(page) == ids[:6]
    assert not page.has_older and page.has_newer


def test_a_window_at_the_newest_message_has_no_newer(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 300)
    page = store.thread_window(chat_id, ids[-1], older=10, newer=5)
    assert ids_of(page) == ids[-11:]
    assert page.has_older and not page.has_newer


def test_edges_exactly_reached_are_not_more(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 21)
    page = store.thread_window(chat_id, ids[10], older=10, newer=10)
    assert ids_of(page) == ids
    assert not page.has_older and not page.has_newer
    page = store.thread_window(chat_id, ids[10], older=9, newer=9)
    assert ids_of(page) == ids[1:20]
    assert page.has_older and page.has_newer


def test_a_tiny_chat_is_all_there(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 1)
    page = store.thread_window(chat_id, ids[0], older=50, newer=50)
    assert ids_of(page) == ids
    assert not page.has_older and not page.has_newer
    empty = store.create_chat()
    assert ids_of(store.thread_window(empty.id, ids[0])) == []


def test_a_message_of_another_version_gives_an_empty_window(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 40)
    # A second version of message 20 becomes the active thread: 20.. are not on it.
    branch = store.add_message(chat_id, "user", "edited", parent_id=ids[19]).id
    store.add_message(chat_id, "assistant", "other answer", parent_id=branch)
    page = store.thread_window(chat_id, ids[30])
    assert page.messages == [] and not page.has_older and not page.has_newer


def test_a_window_follows_the_active_versions(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 40)
    branch = store.add_message(chat_id, "user", "edited", parent_id=ids[19]).id
    leaf = store.add_message(chat_id, "assistant", "other answer", parent_id=branch).id
    page = store.thread_window(chat_id, ids[15], older=2, newer=10)
    assert ids_of(page) == [*ids[13:20], branch, leaf]
    assert not page.has_newer
    assert page.messages[-2].version == 2 and page.messages[-2].versions == 2
    # The first version shown again: the window walks it, not the edit.
    store.select_version(ids[20])
    page = store.thread_window(chat_id, ids[15], older=2, newer=10)
    assert ids_of(page) == ids[13:26]
    assert page.has_newer
    assert page.messages[7].id == ids[20] and page.messages[7].version == 1


def test_newer_pages_walk_down_to_the_newest_without_gaps(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 250)
    page = store.thread_window(chat_id, ids[30], older=5, newer=5)
    seen = ids_of(page)
    while page.has_newer:
        page = store.thread(chat_id, limit=40, after=seen[-1])
        assert page.has_older and 0 < len(page.messages) <= 40
        seen += ids_of(page)
    assert seen == ids[25:]


def test_newer_after_the_newest_or_another_version_is_empty(store: ChatStore, chain: Chain) -> None:
    chat_id, ids = chain(store, 30)
    page = store.thread(chat_id, limit=10, after=ids[-1])
    assert page.messages == [] and not page.has_newer
    store.add_message(chat_id, "user", "edited", parent_id=ids[9])
    page = store.thread(chat_id, limit=10, after=ids[20])
    assert page.messages == [] and not page.has_newer and not page.has_older


def test_a_window_deep_in_a_10000_message_chat_is_one_quick_read(store: ChatStore) -> None:
    chat_id = thread_chat(store, [f"m{n}" for n in range(10_000)])
    ids = [m.id for m in store.full_thread(chat_id)]
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    started = time.perf_counter()
    page = store.thread_window(chat_id, ids[10], older=50, newer=50)
    elapsed = time.perf_counter() - started
    store._conn.set_trace_callback(None)
    assert ids_of(page) == ids[:61]
    assert not page.has_older and page.has_newer
    walks = [s for s in statements if "WITH RECURSIVE" in s]
    assert len(walks) == 1, "one walk of the thread, not one per page"
    assert elapsed < 2.0  # generous (a loaded machine); about 40 ms here


def test_a_message_of_another_chat_gives_an_empty_window(store: ChatStore, chain: Chain) -> None:
    chat_id, _ids = chain(store, 10)
    _other, other_ids = chain(store, 10)
    assert store.thread_window(chat_id, other_ids[5]).messages == []
    assert store.thread(chat_id, limit=5, after=other_ids[5]).messages == []


def test_messages_after_the_active_leaf_are_not_in_the_window(
    store: ChatStore, chain: Chain
) -> None:
    chat_id, ids = chain(store, 30)
    # Written below the leaf without being shown (a sync of another device's draft).
    store.add_message(chat_id, "user", "not shown", parent_id=ids[-1], make_active=False)
    page = store.thread_window(chat_id, ids[-5], older=2, newer=10)
    assert ids_of(page) == ids[-7:]
    assert not page.has_newer
    assert store.thread(chat_id, limit=10, after=ids[-1]).messages == []

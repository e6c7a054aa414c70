"""ChatStore.thread with ``through``: the page a search hit opens at (the hit, what led
to it, and everything after it up to the newest or to ``before``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.store.chats import ChatStore
from app.store.library import Library, memory_connection
from app.store.models import Tier


@pytest.fixture
def store() -> Iterator[ChatStore]:
    library = Library(memory_connection(), memory_connection())
    yield library.store(Tier.STANDARD)
    library.close()


def chain(store: ChatStore, count: int) -> tuple[str, list[str]]:
    chat = store.create_chat()
    ids: list[str] = []
    parent = None
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        parent = store.add_message(chat.id, role, f"message {i}", parent_id=parent).id
        ids.append(parent)
    return chat.id, ids


def test_through_reaches_back_to_the_message_and_limit_more(store: ChatStore) -> None:
    chat_id, ids = chain(store, 500)
    page = store.thread(chat_id, limit=10, through=ids[100])
    assert [m.id for m in page.messages] == ids[90:]
    assert page.has_older


def test_through_near_the_start_has_no_older(store: ChatStore) -> None:
    chat_id, ids = chain(store, 50)
    page = store.thread(chat_id, limit=10, through=ids[3])
    assert [m.id for m in page.messages] == ids
    assert not page.has_older


def test_through_with_before_stops_at_before(store: ChatStore) -> None:
    chat_id, ids = chain(store, 300)
    page = store.thread(chat_id, limit=5, before=ids[200], through=ids[50])
    assert [m.id for m in page.messages] == ids[45:200]
    assert page.has_older


def test_through_a_message_of_another_branch_is_a_plain_page(store: ChatStore) -> None:
    chat_id, ids = chain(store, 40)
    # A second version of message 20 (and its answer) becomes the active thread.
    branch = store.add_message(chat_id, "user", "edited", parent_id=ids[19]).id
    leaf = store.add_message(chat_id, "assistant", "other answer", parent_id=branch).id
    page = store.thread(chat_id, limit=10, through=ids[30])
    assert [m.id for m in page.messages] == [*ids[12:20], branch, leaf]
    assert page.has_older


def test_through_a_newer_message_than_before_is_a_plain_page(store: ChatStore) -> None:
    chat_id, ids = chain(store, 100)
    page = store.thread(chat_id, limit=10, before=ids[50], through=ids[80])
    assert [m.id for m in page.messages] == ids[40:50]

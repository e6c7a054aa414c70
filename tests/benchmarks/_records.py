"""Whole chats built in memory and written with one ``ChatStore.insert_records`` call:
the fast set-up of large benchmark corpora (never measured)."""

from __future__ import annotations

import time
import uuid

from app.store.chats import ChatStore
from app.store.models import Chat, ChatRecord, Message, MessageStatus, TitleSource


def thread_chat(store: ChatStore, contents: list[str], *, title: str = "Long chat") -> str:
    """A chat whose thread is ``contents``, questions and answers alternating; its id."""
    chat_id = uuid.uuid4().hex
    start = time.time() - len(contents)
    messages: list[Message] = []
    parent: str | None = None
    for n, content in enumerate(contents):
        message_id = uuid.uuid4().hex
        messages.append(
            Message(
                id=message_id, chat_id=chat_id, parent_id=parent,
                role="user" if n % 2 == 0 else "assistant", content=content,
                status=MessageStatus.COMPLETE, created_at=start + n, selected_at=start + n,
            )
        )  # fmt: skip
        parent = message_id
    chat = _chat(chat_id, store, title, start, active_leaf_id=parent)
    store.insert_records([ChatRecord(chat, messages)])
    return chat_id


def titled_chats(store: ChatStore, count: int) -> None:
    """``count`` chats with titles and no messages (every 50th pinned), one a minute apart."""
    now = time.time()
    records = [
        ChatRecord(
            _chat(
                uuid.uuid4().hex, store, f"Chat number {n} about topic {n % 97}",
                now - n * 60, pinned=n % 50 == 0,
            ),
            [],
        )
        for n in range(count)
    ]  # fmt: skip
    store.insert_records(records)


def _chat(
    chat_id: str,
    store: ChatStore,
    title: str,
    when: float,
    *,
    active_leaf_id: str | None = None,
    pinned: bool = False,
) -> Chat:
    return Chat(
        id=chat_id, title=title, title_source=TitleSource.USER, tier=store.tier,
        system_prompt="", memory="", provider=None, model=None, pinned=pinned,
        active_leaf_id=active_leaf_id, created_at=when, updated_at=when,
    )  # fmt: skip

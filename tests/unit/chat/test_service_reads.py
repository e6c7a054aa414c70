"""ChatService as the one door for reads: pages, summaries, versions, search, export,
import, purge, and the provider a new chat of each tier gets (one decision for the
window and the command line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.events import ChatCreated, ChatDeleted, ChatPurged, ChatRestored, MessagesChanged
from app.chat.service import ChatService, default_provider, sending_blocked_reason
from app.config import LoadedConfig, parse_config
from app.errors import PolicyRefusedError
from app.store.chats import ChatNotFoundError
from app.store.library import Library, memory_connection
from app.store.models import Tier
from tests.unit.chat.test_service import Harness


@pytest.fixture
def h() -> Harness:
    return Harness()


async def _conversation(h: Harness, turns: int) -> str:
    chat = await h.service.create_chat(Tier.STANDARD)
    for number in range(turns):
        await h.run(h.service.send(chat.id, f"question {number}"))
    return chat.id


async def test_open_chat_reads_chat_page_and_length_together(h: Harness) -> None:
    chat_id = await _conversation(h, 3)
    chat, page, length = await h.service.open_chat(chat_id, limit=2, with_length=True)
    assert chat.id == chat_id
    assert [m.role for m in page.messages] == ["user", "assistant"]
    assert page.has_older and length == 6
    _chat, _page, no_length = await h.service.open_chat(chat_id, limit=2)
    assert no_length is None
    older = await h.service.older_messages(chat_id, page.messages[0].id, limit=10)
    assert [m.content for m in older.messages if m.role == "user"] == [
        "question 0",
        "question 1",
    ]
    assert not older.has_older


async def test_summary_follows_delete_restore_and_purge(h: Harness) -> None:
    chat_id = await _conversation(h, 1)
    summary = await h.service.summary(chat_id)
    assert summary is not None and summary.tier is Tier.STANDARD
    await h.service.delete_chat(chat_id)
    assert await h.service.summary(chat_id) is None
    assert chat_id not in [c.id for c in await h.service.list_chats()]
    await h.service.undo_delete(chat_id)
    assert await h.service.summary(chat_id) is not None
    await h.service.purge(chat_id)
    assert await h.service.summary(chat_id) is None
    with pytest.raises(ChatNotFoundError):
        await h.service.chat(chat_id)
    kinds = [type(c) for c in h.changes if c.chat_id == chat_id]
    assert kinds[-3:] == [ChatDeleted, ChatRestored, ChatPurged]


async def test_list_chats_limit_keeps_the_order(h: Harness) -> None:
    ids = [(await h.service.create_chat(Tier.STANDARD)).id for _ in range(4)]
    await h.service.update(ids[0], pinned=True)
    everything = await h.service.list_chats()
    assert everything[0].id == ids[0]  # pinned first
    assert [c.id for c in await h.service.list_chats(limit=2)] == [c.id for c in everything[:2]]


async def test_switch_version_selects_the_sibling(h: Harness) -> None:
    chat_id = await _conversation(h, 1)
    await h.run(h.service.regenerate(chat_id))
    _chat, page, _ = await h.service.open_chat(chat_id, limit=10)
    second = page.messages[-1]
    assert (second.version, second.versions) == (2, 2)
    first = await h.service.switch_version(second.id, -1)
    assert (first.version, first.versions) == (1, 2)
    _chat, page, _ = await h.service.open_chat(chat_id, limit=10)
    assert page.messages[-1].id == first.id
    assert isinstance(h.changes[-1], MessagesChanged)
    with pytest.raises(ChatNotFoundError, match="no message"):
        await h.service.switch_version("missing", 1)


async def test_search_export_and_import_round_trip(h: Harness, tmp_path: Path) -> None:
    chat_id = await _conversation(h, 1)
    await h.service.rename(chat_id, "Pelican facts")
    hits = await h.service.search("pelican")
    assert [hit.chat_id for hit in hits] == [chat_id]
    target = tmp_path / "out.json"
    await h.service.export_to_file([chat_id], "json", target)
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert exported["chats"][0]["title"] == "Pelican facts"
    markdown = await h.service.export([chat_id], "md")
    assert markdown.startswith("# Pelican facts") and "question 0" in markdown

    other = Harness(Library(memory_connection(), memory_connection()))
    imported = await other.service.import_file(target, fmt=None, tier=Tier.PRIVATE)
    assert imported == [chat_id]  # our own export keeps its ids when they are free
    assert [type(c) for c in other.changes] == [ChatCreated]
    assert (await other.service.chat(chat_id)).tier is Tier.PRIVATE
    assert len(await other.service.full_thread(chat_id)) == 2
    assert await other.service.count_messages(chat_id) == 2


CLOUD_DEFAULT = """
default_llm: cloud
llms:
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud}
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:1/v1', model_name: m}
"""
CLOUD_ONLY = """
llms:
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud}
"""


def _config(text: str) -> LoadedConfig:
    return LoadedConfig(parse_config(text, "test", {}, lambda: ["openai"]), None, {})


async def test_a_new_chat_gets_the_provider_its_tier_allows() -> None:
    config = _config(CLOUD_DEFAULT)
    service = ChatService(Library(memory_connection(), memory_connection()), config)
    standard = await service.create_chat(Tier.STANDARD)
    private = await service.create_chat(Tier.PRIVATE)
    assert (standard.provider, private.provider) == ("cloud", "local")
    entry = default_provider(config.config, Tier.PRIVATE)
    assert entry is not None and entry.provider_name == "local"
    assert sending_blocked_reason(config.config, None, Tier.PRIVATE) == ""
    # A provider named outright is checked, never replaced.
    with pytest.raises(PolicyRefusedError, match="on-prem"):
        await service.create_chat(Tier.PRIVATE, provider="cloud")


async def test_no_allowed_provider_is_refused_with_the_reason() -> None:
    config = _config(CLOUD_ONLY)
    service = ChatService(Library(memory_connection(), memory_connection()), config)
    assert service.default_provider(Tier.PRIVATE) is None
    with pytest.raises(PolicyRefusedError, match="cloud is paid cloud"):
        await service.create_chat(Tier.PRIVATE)
    assert "paid cloud" in sending_blocked_reason(config.config, None, Tier.PRIVATE)
    assert await service.list_chats() == []

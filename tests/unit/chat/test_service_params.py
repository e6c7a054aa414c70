"""Per-chat model parameters reach the provider; titles and imports respect the tier."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.chat.events import TurnEvent, TurnFinished
from app.chat.service import ChatService, clean_title, effective_params, heuristic_title
from app.chat.titles import plain_text
from app.config import LoadedConfig, parse_config
from app.store.library import Library, memory_connection
from app.store.models import ChatParams, Tier, TitleSource
from providers import ChatRequest, FinishEvent, ProviderSpec, TextDelta
from tests.peers.scripted_provider import Script, ScriptedProvider

CONFIG = """
default_llm: local
title_llm: cloud
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:1/v1', model_name: m,
     context_size: 4096, temperature: 0.6, max_tokens: 300, stop: ['###']}
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud, api_key: '${KEY}'}
  - {provider_name: ollama, type: ollama, base_url: 'http://127.0.0.1:3', model_name: o,
     context_size: 2048}
"""
TYPES = lambda: ["openai", "ollama"]  # noqa: E731 - the provider types the config may name

CLOUD_ONLY = """
llms:
  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',
     model_name: big, locality: paid_cloud, api_key: '${KEY}'}
"""


def text_only(*pieces: str) -> Script:
    """An answer without usage: the service counts the chunks."""

    async def script(_request: ChatRequest) -> AsyncIterator[Any]:
        for piece in pieces:
            yield TextDelta(piece)
        yield FinishEvent("stop")

    return script


class Harness:
    def __init__(self, config_text: str = CONFIG) -> None:
        self.library = Library(memory_connection(), memory_connection())
        config = parse_config(config_text, "test", {"KEY": "sk-test-key-123"}, TYPES)
        self.requests: list[tuple[ProviderSpec, ChatRequest]] = []
        self.script: Script = text_only("Hello", " there", " friend")
        self.title_script: Script = text_only("Greeting", " chat")
        self.service = ChatService(
            self.library,
            LoadedConfig(config, None, {}),
            provider_factory=self._factory,
            checkpoint_seconds=0.0,
        )

    def _factory(self, spec: ProviderSpec) -> Any:
        def choose(request: ChatRequest) -> AsyncIterator[Any]:
            self.requests.append((spec, request))
            is_title = "title of at most" in request.messages[-1].content
            return (self.title_script if is_title else self.script)(request)

        return ScriptedProvider(spec, choose)

    def turns(self) -> list[tuple[ProviderSpec, ChatRequest]]:
        return [r for r in self.requests if "title of at most" not in r[1].messages[-1].content]

    def titles(self) -> list[tuple[ProviderSpec, ChatRequest]]:
        return [r for r in self.requests if "title of at most" in r[1].messages[-1].content]

    async def run(self, turn: AsyncIterator[TurnEvent]) -> list[TurnEvent]:
        events = []
        async with contextlib.aclosing(turn):
            async for event in turn:
                events.append(event)
        return events


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_provider_defaults_are_sent_when_the_chat_has_none(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "Hi!"))
    (_spec, request), *_ = h.turns()
    assert (request.temperature, request.top_p, request.max_tokens, request.stop) == (
        0.6,
        None,
        300,
        ["###"],
    )


async def test_the_chats_own_parameters_win_over_the_provider_defaults(h: Harness) -> None:
    chat = await h.service.create_chat()
    params = ChatParams(temperature=0.1, top_p=0.5, max_tokens=7, stop=())
    updated = await h.service.update(chat.id, params=params)
    assert updated.params == params
    await h.run(h.service.send(chat.id, "Hi!"))
    (_spec, request), *_ = h.turns()
    # An empty stop list is the chat's choice of "no stop sequences", not "the default".
    assert (request.temperature, request.top_p, request.max_tokens, request.stop) == (
        0.1,
        0.5,
        7,
        [],
    )


async def test_an_explicit_max_tokens_of_the_turn_wins(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.service.update(chat.id, params=ChatParams(max_tokens=7))
    await h.run(h.service.send(chat.id, "Hi!", max_tokens=3))
    assert h.turns()[0][1].max_tokens == 3


async def test_the_chats_context_length_is_used_and_sent_to_ollama(h: Harness) -> None:
    chat = await h.service.create_chat(provider="ollama")
    await h.service.update(chat.id, params=ChatParams(context_size=8192))
    assert (await h.service.context_window(await h.service.chat(chat.id))).size == 8192
    await h.run(h.service.send(chat.id, "Hi!"))
    spec, _request = h.turns()[0]
    assert spec.context_size == 8192  # Ollama's num_ctx


def test_effective_params_fall_back_field_by_field() -> None:
    config = parse_config(CONFIG, "test", {"KEY": "k"}, TYPES)
    entry = config.llm("local")
    assert effective_params(entry, ChatParams()) == ChatParams(
        temperature=0.6, max_tokens=300, context_size=4096, stop=("###",)
    )
    assert effective_params(entry, ChatParams(top_p=0.9, context_size=1024)) == ChatParams(
        temperature=0.6, top_p=0.9, max_tokens=300, context_size=1024, stop=("###",)
    )
    # Reading answers aloud is the window's: it is never part of what a model is sent.
    assert effective_params(entry, ChatParams(read_aloud=True)).read_aloud is None


async def test_without_reported_usage_the_answer_counts_its_chunks(h: Harness) -> None:
    chat = await h.service.create_chat()
    events = await h.run(h.service.send(chat.id, "Hi!"))
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.message.completion_tokens == 3
    assert finished.message.first_token_at is not None
    assert finished.message.finished_at is not None


# --- titles ------------------------------------------------------------------------------------


def test_titles_lose_their_markdown() -> None:
    assert clean_title("Here is a **summary** of `asyncio` _tasks_") == (
        "Here is a summary of asyncio"
    )
    assert clean_title("## **Trip** to [Lisbon](https://example.com)") == "Trip to Lisbon"
    assert heuristic_title("**Summarise** this *article* for me please, thanks") == (
        "Summarise this article for me please"
    )
    assert heuristic_title("```python\nprint('hi')\n```") == "Print('hi')"
    assert heuristic_title("> quoted *question* here\nsecond line") == "Quoted question here"
    assert plain_text("![a cat](cat.png) sleeping") == "a cat sleeping"


async def test_a_markdown_title_from_the_model_is_saved_as_plain_text(h: Harness) -> None:
    h.service.config.config.title_llm = None
    h.title_script = text_only("**Greeting**", " chat")
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "Hi!"))
    await h.service.wait_for_titles(5)
    titled = await h.service.chat(chat.id)
    assert (titled.title, titled.title_source) == ("Greeting chat", TitleSource.AUTO)


async def test_a_private_chat_is_titled_by_its_own_local_model(h: Harness) -> None:
    # title_llm is the cloud entry, which Private chats may not use.
    chat = await h.service.create_chat(Tier.PRIVATE)
    assert chat.provider == "local"
    await h.run(h.service.send(chat.id, "How do magnets work in motors?"))
    await h.service.wait_for_titles(5)
    titled = await h.service.chat(chat.id)
    assert (titled.title, titled.title_source) == ("Greeting chat", TitleSource.AUTO)
    assert [spec.name for spec, _request in h.titles()] == ["local"]


async def test_a_standard_chat_still_uses_the_configured_title_model(h: Harness) -> None:
    chat = await h.service.create_chat()
    await h.run(h.service.send(chat.id, "Hi!"))
    await h.service.wait_for_titles(5)
    assert [spec.name for spec, _request in h.titles()] == ["cloud"]


# --- imports -----------------------------------------------------------------------------------


def export_with(provider: str | None, model: str | None) -> dict[str, Any]:
    return {
        "format": "hushchat-export",
        "version": 1,
        "chats": [
            {
                "id": "c" * 32,
                "title": "From elsewhere",
                "provider": provider,
                "model": model,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
                "messages": [],
            }
        ],
    }


@pytest.mark.parametrize(
    ("provider", "model"), [("cloud", "big"), ("gone", "x"), (None, None)], ids=str
)
async def test_an_import_into_private_is_bound_to_an_allowed_provider(
    h: Harness, tmp_path: Path, provider: str | None, model: str | None
) -> None:
    if provider is None:  # a chat following the default: make the default a cloud one
        h.service.config.config.default_llm = "cloud"
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_with(provider, model)), encoding="utf-8")
    (chat_id,) = await h.service.import_file(path, fmt=None, tier=Tier.PRIVATE)
    chat = await h.service.chat(chat_id)
    assert (chat.provider, chat.model) == ("local", "m")


async def test_an_import_keeps_an_allowed_provider(h: Harness, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_with("ollama", "o2")), encoding="utf-8")
    (chat_id,) = await h.service.import_file(path, fmt=None, tier=Tier.PRIVATE)
    chat = await h.service.chat(chat_id)
    assert (chat.provider, chat.model) == ("ollama", "o2")
    path.write_text(json.dumps(export_with("cloud", "big")), encoding="utf-8")
    (chat_id,) = await h.service.import_file(path, fmt=None, tier=Tier.STANDARD)
    assert (await h.service.chat(chat_id)).provider == "cloud"


async def test_an_import_into_private_without_an_allowed_provider_has_none(
    tmp_path: Path,
) -> None:
    h = Harness(CLOUD_ONLY)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_with("cloud", "big")), encoding="utf-8")
    (chat_id,) = await h.service.import_file(path, fmt=None, tier=Tier.PRIVATE)
    chat = await h.service.chat(chat_id)
    assert (chat.provider, chat.model) == (None, None)

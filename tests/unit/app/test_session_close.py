"""``Session.aclose``, how every command closes its session: the work that runs on the
event loop (a chat's title still being written, sync) stops on the loop's own thread,
and only the blocking rest (the database thread, joining threads) moves off it.

Asyncio's tasks are not thread-safe: cancelling a title task from the worker thread
that closes the library once left qasync's timer in a broken state, and ``hushchat chat
--speak`` interrupted with Ctrl-C ended with an AssertionError instead of exit 130. In
debug mode asyncio refuses such a call outright, which is what these tests run under.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.config import LoadedConfig, parse_config
from app.session import Session
from app.vault import FLOOR_PARAMS
from providers import ChatRequest, FinishEvent
from tests.peers.scripted_provider import ScriptedModel
from tests.peers.vault_fixtures import PASSPHRASE
from tests.unit.vault.fake_store import FakeStore

CONFIG = """
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:9/v1', model_name: m}
"""


async def _session(tmp_path: Path, model: ScriptedModel) -> Session:
    session = Session(
        LoadedConfig(parse_config(CONFIG, "test", {}, lambda: ["openai"]), None, {}),
        tmp_path / "profile",
        secret_store=FakeStore(),
        kdf=FLOOR_PARAMS,
        provider_factory=model,
    )
    await session.create_vault(PASSPHRASE)
    return session


def _others() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_aclose_stops_a_title_still_being_written_on_the_loops_thread(
    tmp_path: Path,
) -> None:
    asyncio.get_running_loop().set_debug(True)  # a call from another thread raises
    model = ScriptedModel()
    asked = asyncio.Event()

    async def never(_request: ChatRequest) -> AsyncIterator[Any]:
        asked.set()
        await asyncio.Event().wait()
        yield FinishEvent("stop")

    model.title_script = never
    session = await _session(tmp_path, model)
    chat = await session.service.create_chat()
    async for _event in session.service.send(chat.id, "Hi!"):
        pass
    await asyncio.wait_for(asked.wait(), 10)
    titles = _others()
    assert titles, "the title task was expected to be pending"

    await session.aclose()

    assert all(task.cancelled() for task in titles)
    assert not session.is_unlocked


async def test_aclose_after_the_titles_are_written_closes_at_once(tmp_path: Path) -> None:
    asyncio.get_running_loop().set_debug(True)
    session = await _session(tmp_path, ScriptedModel())
    chat = await session.service.create_chat()
    async for _event in session.service.send(chat.id, "Hi!"):
        pass
    await session.service.wait_for_titles(10)
    assert not _others()

    await session.aclose()

    assert not session.is_unlocked

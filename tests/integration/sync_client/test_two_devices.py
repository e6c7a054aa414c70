"""Two profiles, one account: the whole client (session, vault, engine, client, sign-in)
against the real sync server and the real oidc-provider peer on loopback.

Device A has Standard and Private chats with sentinels; device B (a fresh profile with its
own vault) signs in with the browser flow and joins with the account's passphrase: it sees
both, the server's database holds no sentinel, and with both engines running in the
background a rename and an answer on one device reach the other within a few seconds
(the long poll; the design budget is 2 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config import LoadedConfig, parse_config
from app.session import Session
from app.sync.engine import SyncStatus
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from tests.integration.sync_client.peers import (
    close_sessions,
    provider,
    server,
    server_dir,
    sign_in_alice,
)
from tests.integration.sync_client.support import LiveServer
from tests.peers.scripted_provider import ScriptedModel, answer
from tests.unit.vault.fake_store import FakeStore

__all__ = ["provider", "server", "server_dir"]  # the fixtures

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

PASSPHRASE = "correct horse battery staple orbit"
SENTINEL_STANDARD = "sentinel-standard-7f3a9c"
SENTINEL_PRIVATE = "sentinel-private-2b8e41"
# An on-prem model (a scripted one: no server is reached) that Private chats may use.
CONFIG = """
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:9/v1', model_name: m}
"""


async def _device(tmp_path: Path, name: str) -> Session:
    model = ScriptedModel()
    model.script = answer(f"answer from {name}")
    session = Session(
        LoadedConfig(parse_config(CONFIG, "test", {}, lambda: ["openai"]), None, {}),
        tmp_path / name,
        secret_store=FakeStore(),
        kdf=FLOOR_PARAMS,
        provider_factory=model,
    )
    await session.create_vault(PASSPHRASE)
    return session


@pytest.fixture
async def devices(tmp_path: Path) -> AsyncIterator[tuple[Session, Session]]:
    a, b = await _device(tmp_path, "a"), await _device(tmp_path, "b")
    try:
        yield a, b
    finally:
        await close_sessions((a, b))


async def _sign_in(session: Session, server: LiveServer, name: str) -> None:
    await session.sync.sign_in(await sign_in_alice(server, name))


async def _titles(session: Session) -> dict[str, str]:
    return {chat.title: chat.tier.value for chat in await session.service.list_chats()}


async def _eventually(check: object, seconds: float = 10.0) -> float:
    """Seconds until ``check()`` (an async predicate) holds; fails after ``seconds``."""
    assert callable(check)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def _server_bytes(server_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(server_dir.rglob("*")) if p.is_file())


async def test_a_second_device_joins_and_changes_flow_both_ways(
    server: LiveServer, server_dir: Path, devices: tuple[Session, Session]
) -> None:
    a, b = devices
    standard = await a.service.create_chat(Tier.STANDARD)
    await a.service.rename(standard.id, f"Standard {SENTINEL_STANDARD}")
    private = await a.service.create_chat(Tier.PRIVATE)
    await a.service.rename(private.id, f"Private {SENTINEL_PRIVATE}")

    await _sign_in(a, server, "A")
    await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
    report = await a.sync.sync_now()
    assert report.tampered == 0

    await _sign_in(b, server, "B")
    joined = await b.sync.join(passphrase=PASSPHRASE)
    assert joined.tampered == 0
    assert await _titles(b) == {
        f"Standard {SENTINEL_STANDARD}": "standard",
        f"Private {SENTINEL_PRIVATE}": "private",
    }
    # The server holds the records, never their text (its database and data directory).
    stored = _server_bytes(server_dir)
    assert stored, "the server wrote its database under its data directory"
    for sentinel in (SENTINEL_STANDARD, SENTINEL_PRIVATE, PASSPHRASE):
        assert sentinel.encode() not in stored

    # Both in the background: a change on one device reaches the other by long poll.
    assert await a.sync.start() and await b.sync.start()
    await a.service.rename(standard.id, "Renamed on A")

    async def b_sees_rename() -> bool:
        return "Renamed on A" in await _titles(b)

    seconds = await _eventually(b_sees_rename)
    print(f"\nA -> B propagation: {seconds:.2f} s")

    assert (await b.service.chat(private.id)).tier is Tier.PRIVATE
    await b.service.rename(private.id, "Renamed on B")
    async for _event in b.service.send(private.id, "question from B"):
        pass

    async def a_sees_rename_and_answer() -> bool:
        if "Renamed on B" not in await _titles(a):
            return False
        thread = await a.service.full_thread(private.id)
        return [m.content for m in thread] == ["question from B", "answer from b"]

    await _eventually(a_sees_rename_and_answer)
    assert a.sync.status.state in (SyncStatus.IDLE, SyncStatus.SYNCING)

    # Deleting on B: gone on A.
    await b.service.delete_chat(standard.id)
    await b.service.purge_deleted(older_than=-1)

    async def a_lost_it() -> bool:
        return "Renamed on A" not in await _titles(a)

    await _eventually(a_lost_it)

"""Linking a device with a pairing code against the real sync server and the real
oidc-provider peer on loopback: the whole client (session, vault, engine, client).

Device A (set up) has Standard and Private chats with sentinels; device D is a fresh
profile with a vault of its own passphrase, signed in to the same account. A shows a
code, D types it: D sees both tiers' chats, and the server's files hold neither the
code, nor a sync key, nor a sentinel; every relay record is deleted. A wrong code fails
on both sides and D holds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.session import Session
from app.sync.engine import SyncReport
from app.sync.pairing import (
    LinkResult,
    PairingCode,
    WrongPairingCodeError,
    join_with_code,
    start_link,
)
from app.sync.pairing_words import WORDS
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from tests.integration.sync_client.peers import close_sessions, provider, server, server_dir
from tests.integration.sync_client.support import LiveServer
from tests.integration.sync_client.test_two_devices import (
    PASSPHRASE,
    SENTINEL_PRIVATE,
    SENTINEL_STANDARD,
    _device,
    _server_bytes,
    _sign_in,
    _titles,
)

__all__ = ["provider", "server", "server_dir"]  # the fixtures

pytestmark = [pytest.mark.oidc, pytest.mark.slow]


@pytest.fixture
async def devices(tmp_path: Path, server: LiveServer) -> AsyncIterator[tuple[Session, Session]]:
    """A: set up with a Standard and a Private chat; D: signed in, nothing synced."""
    a, d = await _device(tmp_path, "a"), await _device(tmp_path, "d")
    try:
        standard = await a.service.create_chat(Tier.STANDARD)
        await a.service.rename(standard.id, f"Standard {SENTINEL_STANDARD}")
        private = await a.service.create_chat(Tier.PRIVATE)
        await a.service.rename(private.id, f"Private {SENTINEL_PRIVATE}")
        await _sign_in(a, server, "A")
        await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
        await a.sync.sync_now()
        await _sign_in(d, server, "D")
        yield a, d
    finally:
        await close_sessions((a, d))


async def _held_keys(session: Session) -> list[bytes]:
    def read() -> list[bytes]:
        keys: list[bytes] = []
        for tier in (Tier.STANDARD, Tier.PRIVATE):
            state = session.library.store(tier).sync_state()
            keys += [secret for _id, _tier, _epoch, secret, _state in state.sync_keys()]
        return keys

    engine = await session.sync.engine()
    return await engine.runner.db(read)


async def test_a_new_device_links_with_a_code_and_sees_both_tiers(
    server_dir: Path, devices: tuple[Session, Session]
) -> None:
    a, d = devices
    offer = await start_link(a.sync)
    result, report = await asyncio.wait_for(
        asyncio.gather(offer.wait(), join_with_code(d.sync, str(offer.code))), timeout=60
    )
    assert isinstance(result, LinkResult) and isinstance(report, SyncReport)
    assert report.tampered == 0
    assert await _titles(d) == {
        f"Standard {SENTINEL_STANDARD}": "standard",
        f"Private {SENTINEL_PRIVATE}": "private",
    }
    me = await d.sync.client().me()
    assert result.device_id == me.device_id
    keys = await _held_keys(d)
    assert len(keys) == 2 and sorted(keys) == sorted(await _held_keys(a))

    # The relay records are tombstones now; D's next sync and A's skip them.
    assert (await a.sync.sync_now()).tampered == 0
    assert (await d.sync.sync_now()).tampered == 0
    stored = _server_bytes(server_dir)
    assert stored
    code = str(offer.code)
    for secret in (code.encode(), "-".join(offer.code.words).encode(), *keys):
        assert secret not in stored
    for sentinel in (SENTINEL_STANDARD, SENTINEL_PRIVATE, PASSPHRASE):
        assert sentinel.encode() not in stored


async def test_a_wrong_code_fails_on_both_devices(devices: tuple[Session, Session]) -> None:
    a, d = devices
    offer = await start_link(a.sync)
    words = offer.code.words
    wrong = PairingCode(
        offer.code.session, (*words[:-1], WORDS[(WORDS.index(words[-1]) + 7) % len(WORDS)])
    )
    result, report = await asyncio.wait_for(
        asyncio.gather(offer.wait(), join_with_code(d.sync, wrong), return_exceptions=True),
        timeout=60,
    )
    assert isinstance(result, WrongPairingCodeError), result
    assert isinstance(report, WrongPairingCodeError), report
    assert not await d.sync.is_set_up()
    assert await _held_keys(d) == []
    assert await _titles(d) == {}

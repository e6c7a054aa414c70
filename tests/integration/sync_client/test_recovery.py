"""Escrow recovery end to end: the whole client against the real sync server and the
real oidc-provider peer on loopback, with the server's escrow step run as the operator
would (``escrow process --once``, the only code holding the escrow private key).

Device A syncs Standard and Private chats with sentinels; its Standard sync key is
escrowed. Device C, a fresh profile that lost everything, signs in, starts a recovery,
and after the delay and the escrow step gets the Standard key: a new vault with the
Standard chats, never the Private ones. A sees the pending recovery in its changes;
cancelling it from A makes C's completion fail; approving it from A ends the delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config import LoadedConfig, parse_config
from app.session import Session
from app.sync.client import RecoveryWaitError, SyncClient, SyncRefusedError
from app.sync.dpop import DeviceKey
from app.sync.recovery import PendingRecovery, complete_recovery, start_recovery
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from sync_server.app import create_app
from tests.integration.sync_client.peers import (
    close_sessions,
    escrow_step,
    oidc_settings,
    provider,
    serving,
    sign_in_alice,
)
from tests.integration.sync_client.support import LiveServer
from tests.peers.oidc_provider import OidcProvider
from tests.unit.vault.fake_store import FakeStore

__all__ = ["provider"]  # the fixture

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

PASSPHRASE = "correct horse battery staple orbit"
NEW_PASSPHRASE = "a completely new passphrase for the recovered vault"
SENTINEL_STANDARD = "sentinel-standard-5d1e77"
SENTINEL_PRIVATE = "sentinel-private-93ac0f"
CONFIG = """
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:9/v1', model_name: m}
"""


def _session(path: Path) -> Session:
    return Session(
        LoadedConfig(parse_config(CONFIG, "test", {}, lambda: ["openai"]), None, {}),
        path,
        secret_store=FakeStore(),
        kdf=FLOOR_PARAMS,
    )


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[list[Session]]:
    made: list[Session] = []
    yield made
    await close_sessions(made)


async def _device_a(server: LiveServer, tmp_path: Path, sessions: list[Session]) -> Session:
    """A: Standard and Private chats with sentinels, sync set up, Standard key escrowed."""
    a = _session(tmp_path / "a")
    sessions.append(a)
    await a.create_vault(PASSPHRASE)
    standard = await a.service.create_chat(Tier.STANDARD)
    await a.service.rename(standard.id, f"Standard {SENTINEL_STANDARD}")
    private = await a.service.create_chat(Tier.PRIVATE)
    await a.service.rename(private.id, f"Private {SENTINEL_PRIVATE}")
    account = await sign_in_alice(server, "A")
    await a.sync.sign_in(account)
    await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
    await a.sync.sync_now()  # the escrow goes with the first round after set-up
    engine = await a.sync.engine()
    off, waiting, done = await engine.escrow_state()
    assert (off, waiting) == (False, None) and done is not None
    escrow = await a.sync.client().escrow_status()
    assert escrow.escrowed and escrow.key_id == done
    return a


async def _pending_on(a: Session) -> list[str]:
    await a.sync.sync_now()
    return [r.id for r in a.sync.status.recoveries]


async def test_a_lost_vault_gets_its_standard_chats_back_and_never_the_private_ones(
    provider: OidcProvider, tmp_path: Path, sessions: list[Session]
) -> None:
    settings = oidc_settings(provider, tmp_path / "server", recovery_delay_seconds=2)
    with LiveServer(create_app(serving(settings))) as server:
        a = await _device_a(server, tmp_path, sessions)

        c_dir = tmp_path / "c"
        key = DeviceKey.generate()
        account = await sign_in_alice(server, "C", key)
        async with SyncClient(account) as client:
            pending = await start_recovery(client, c_dir, device_key_pem=key.to_pem())
            stored = PendingRecovery.path(c_dir)
            assert stored.stat().st_mode & 0o777 == 0o600
            assert PendingRecovery.load(c_dir) is not None
            assert await _pending_on(a) == [pending.recovery_id]

            with pytest.raises(RecoveryWaitError) as early:
                await complete_recovery(client, pending, c_dir, wait=False)
            assert early.value.slug in ("recovery-delay", "recovery-waiting")
            assert early.value.retry_after > 0
            await asyncio.sleep(2.5)  # the delay (shortened for the test)
            with pytest.raises(RecoveryWaitError) as waiting:
                await complete_recovery(client, pending, c_dir, wait=False)
            assert waiting.value.slug == "recovery-waiting"
            assert await escrow_step(settings) == [pending.recovery_id]
            recovered = await complete_recovery(client, pending, c_dir)
        assert recovered.tier is Tier.STANDARD

        c = _session(c_dir)
        sessions.append(c)
        await c.create_vault(NEW_PASSPHRASE)
        await c.sync.sign_in(account)
        engine = await c.sync.engine()
        report = await engine.join_with_standard_key(recovered)
        PendingRecovery.delete(c_dir)
        assert report.tampered == 0
        titles = {chat.title: chat.tier for chat in await c.service.list_chats()}
        assert titles == {f"Standard {SENTINEL_STANDARD}": Tier.STANDARD}
        assert await engine.is_standard_only()
        # The new device keeps syncing Standard chats both ways.
        mine = await c.service.create_chat(Tier.STANDARD)
        await c.service.rename(mine.id, "written on C")
        await c.sync.sync_now()
        await a.sync.sync_now()
        assert "written on C" in {chat.title for chat in await a.service.list_chats()}
        assert await _pending_on(a) == []  # completed: no longer announced


async def test_another_device_cancels_or_approves_a_recovery(
    provider: OidcProvider, tmp_path: Path, sessions: list[Session]
) -> None:
    settings = oidc_settings(provider, tmp_path / "server", recovery_delay_seconds=3600)
    with LiveServer(create_app(serving(settings))) as server:
        a = await _device_a(server, tmp_path, sessions)

        # Cancelled from A: C's completion fails for good.
        key = DeviceKey.generate()
        account = await sign_in_alice(server, "C", key)
        async with SyncClient(account) as client:
            first = await start_recovery(client, tmp_path / "c1", device_key_pem=key.to_pem())
            assert await _pending_on(a) == [first.recovery_id]
            cancelled = await a.sync.client().cancel_recovery(first.recovery_id)
            assert cancelled.status == "cancelled"
            assert await escrow_step(settings) == []
            with pytest.raises(SyncRefusedError) as refused:
                await complete_recovery(client, first, tmp_path / "c1", wait=False)
            assert refused.value.slug == "not-pending"
            assert not isinstance(refused.value, RecoveryWaitError)
            assert await _pending_on(a) == []

        # Approved from A: no delay left; the escrow step answers, C completes at once.
        key = DeviceKey.generate()
        account = await sign_in_alice(server, "D", key)
        async with SyncClient(account) as client:
            second = await start_recovery(client, tmp_path / "c2", device_key_pem=key.to_pem())
            with pytest.raises(RecoveryWaitError) as early:
                await complete_recovery(client, second, tmp_path / "c2", wait=False)
            assert early.value.slug == "recovery-delay" and early.value.retry_after > 60
            with pytest.raises(SyncRefusedError) as same:  # not from the device itself
                await client.approve_recovery(second.recovery_id)
            assert same.value.status == 403
            approved = await a.sync.client().approve_recovery(second.recovery_id)
            assert approved.id == second.recovery_id
            assert await escrow_step(settings) == [second.recovery_id]
            recovered = await complete_recovery(client, second, tmp_path / "c2", wait=False)
        engine = await a.sync.engine()
        standard_id = (await engine.escrow_state())[2]
        assert recovered.key_id == standard_id

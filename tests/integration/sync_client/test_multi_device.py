"""Issue 11's multi-device scenarios through the whole client (sessions, vaults, engines,
the HTTP client, sign-in with the browser flow) against the real sync server and the real
oidc-provider peer on loopback:

* two devices edit the same chat while offline (rename, a question and its answer on
  each) → once both sync, the same chat on both, every message of both branches kept,
  the later rename winning;
* a chat deleted on one device is gone on the other within 2 s (long poll), and a copy of
  the server's database taken before the delete opens with no key either device holds
  afterwards (crypto-shredding);
* a device revoked by another fails its next call, says it is signed out, and its key
  cannot register again.

Fixtures and helpers are those of ``test_two_devices``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from app.session import Session
from app.sync.crypto import RecordHeader, RecordTamperedError, open_record
from app.sync.engine import SyncStatus
from app.sync.errors import SyncAuthError
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from tests.integration.sync_client.peers import provider, server, server_dir, sign_in_alice
from tests.integration.sync_client.support import LiveServer
from tests.integration.sync_client.test_two_devices import (
    PASSPHRASE,
    _eventually,
    _sign_in,
    _titles,
    devices,
)

__all__ = ["devices", "provider", "server", "server_dir"]  # fixtures, re-used

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

PROPAGATION_BUDGET = 2.0  # seconds (DESIGN §8)


async def _joined(server: LiveServer, a: Session, b: Session) -> None:
    await _sign_in(a, server, "A")
    await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
    await a.sync.sync_now()
    await _sign_in(b, server, "B")
    await b.sync.join(passphrase=PASSPHRASE)


def _messages(session: Session, tier: Tier, chat_id: str) -> set[tuple[str, str, str | None]]:
    """Every message of the chat, every branch: (id, text, parent id)."""
    store = session.library.store(tier)
    return {(m.id, m.content, m.parent_id) for m in store.all_messages(chat_id)}


async def test_offline_edits_on_both_devices_converge_and_lose_nothing(
    server: LiveServer, devices: tuple[Session, Session]
) -> None:
    a, b = devices
    chat = await a.service.create_chat(Tier.STANDARD)
    async for _event in a.service.send(chat.id, "first question"):
        pass
    await _joined(server, a, b)
    assert await _titles(b) == await _titles(a)

    # Offline on both (no sync between these edits): each renames and asks.
    await a.service.rename(chat.id, "Renamed on A")
    async for _event in a.service.send(chat.id, "question from A"):
        pass
    await asyncio.sleep(0.01)  # B's rename is the later one by the clock
    await b.service.rename(chat.id, "Renamed on B")
    async for _event in b.service.send(chat.id, "question from B"):
        pass

    for session in (a, b, a):  # reconnect: A pushes, B pushes and pulls, A pulls
        report = await session.sync.sync_now()
        assert report.tampered == 0
    on_a, on_b = _messages(a, Tier.STANDARD, chat.id), _messages(b, Tier.STANDARD, chat.id)
    assert on_a == on_b
    texts = sorted(text for _id, text, _parent in on_a)
    assert texts == sorted(
        [
            "first question", "answer from a",
            "question from A", "answer from a",
            "question from B", "answer from b",
        ]
    )  # fmt: skip
    assert len(on_a) == 6  # both branches kept, nothing doubled
    assert (await a.service.chat(chat.id)).title == "Renamed on B"
    assert (await b.service.chat(chat.id)).title == "Renamed on B"


def _server_records(database: Path) -> list[tuple[str, str, str, int, bool, str, bytes]]:
    with sqlite3.connect(database) as connection:
        return [
            (account, record_id, kind, revision, bool(deleted), key_id, bytes(payload))
            for account, record_id, kind, revision, deleted, key_id, payload in connection.execute(
                "SELECT account_id, record_id, kind, revision, deleted, key_id, payload "
                "FROM records"
            )
        ]


def _backup(server_dir: Path) -> Path:
    """A consistent copy of the server's SQLite database (what an operator's backup is)."""
    (database,) = server_dir.rglob("*.sqlite3")
    copy = server_dir.parent / "backup.db"
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def _held_keys(session: Session) -> list[bytes]:
    """Every key secret the device holds: sync keys of every epoch kept, chat keys."""
    keys: list[bytes] = []
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        state = session.library.store(tier).sync_state()
        keys += [secret for _id, _tier, _epoch, secret, _state in state.sync_keys()]
        keys += [secret for _chat, _id, secret, _hlc in state.chat_keys()]
    return keys


def _opens(key: bytes, header: RecordHeader, payload: bytes) -> bool:
    try:
        open_record(key, header, payload)
    except RecordTamperedError:
        return False
    return True


async def test_a_delete_reaches_the_other_device_in_time_and_shreds_old_backups(
    server: LiveServer, server_dir: Path, devices: tuple[Session, Session]
) -> None:
    a, b = devices
    doomed = await a.service.create_chat(Tier.PRIVATE)
    await a.service.rename(doomed.id, "Doomed plans")
    async for _event in a.service.send(doomed.id, "shred-me"):
        pass
    kept = await a.service.create_chat(Tier.PRIVATE)
    await a.service.rename(kept.id, "Kept plans")
    await _joined(server, a, b)
    assert "Doomed plans" in await _titles(b)

    backup = _backup(server_dir)
    before = _server_records(backup)
    doomed_ids = {record_id for _a, record_id, *_rest in before if doomed.id in record_id}
    doomed_ids |= {f"msg:{message_id}" for message_id, *_ in _messages(a, Tier.PRIVATE, doomed.id)}
    assert {f"chat:{doomed.id}", f"chatkey:{doomed.id}"} <= doomed_ids

    assert await a.sync.start() and await b.sync.start()
    await b.service.delete_chat(doomed.id)
    await b.service.purge_deleted(older_than=-1)

    async def a_lost_it() -> bool:
        return "Doomed plans" not in await _titles(a)

    seconds = await _eventually(a_lost_it)
    print(f"\ndelete B -> A: {seconds:.2f} s")
    assert seconds <= PROPAGATION_BUDGET

    async def both_rotated() -> bool:  # the old epoch key is destroyed as each device syncs
        held = _held_keys(a) + _held_keys(b)
        return not any(
            _opens(key, RecordHeader(acc, rid, kind, rev, deleted, kid), payload)
            for key in held
            for acc, rid, kind, rev, deleted, kid, payload in before
            if rid in doomed_ids
        )

    await _eventually(both_rotated)
    held = _held_keys(a) + _held_keys(b)
    for account, record_id, kind, revision, deleted, key_id, payload in before:
        header = RecordHeader(account, record_id, kind, revision, deleted, key_id)
        if record_id in doomed_ids:
            assert not any(_opens(key, header, payload) for key in held), record_id
        elif kind in ("chat", "message") and kept.id in record_id:
            assert any(_opens(key, header, payload) for key in held), record_id
    assert "Kept plans" in await _titles(a) and "Kept plans" in await _titles(b)


async def test_a_revoked_device_is_signed_out_and_its_key_cannot_come_back(
    server: LiveServer, devices: tuple[Session, Session]
) -> None:
    a, b = devices
    await _joined(server, a, b)
    b_account = await b.sync.account()
    assert b_account is not None
    await a.sync.client().revoke(b_account.device_id)

    with pytest.raises(SyncAuthError, match="revoked"):
        await b.sync.sync_now()
    await b.sync.start()  # background sync stops at its first call and says why

    async def b_signed_out() -> bool:
        return b.sync.status.state is SyncStatus.SIGNED_OUT and not b.sync.running

    await _eventually(b_signed_out)
    assert "revoked" in (b.sync.status.reason or "")

    # Signing in again with the same device key: the server refuses that key for good.
    with pytest.raises(SyncAuthError, match="revoked"):
        again = await sign_in_alice(server, "B again", b_account.device_key)
        await b.sync.sign_in(again)
        await b.sync.sync_now()
    devices_seen = {d.id: d for d in await a.sync.client().devices()}
    assert devices_seen[b_account.device_id].revoked_at is not None

"""Escrow of the Standard sync key: the client's sealed box against the server's test
vector and implementation, the escrowed key's format, and the engine's bookkeeping
(set-up, retry after a failure, a changed escrow key, new epochs, off/on, a device that
holds the Standard key only, recovery notices in the status)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from app.store.models import Tier, TitleSource
from app.sync import escrow
from app.sync.crypto import SyncKey
from app.sync.engine import STANDARD_ONLY_SETTING, EngineStatus, SyncKeysExistError
from app.sync.errors import SyncOfflineError
from app.sync.protocol import RecoveryOut
from sync_server import sealing as server_sealing
from tests.unit.sync.devices import ACCOUNT, PASSPHRASE, Device
from tests.unit.sync.fake_server import EscrowFakeTransport, FakeEscrow, FakeServer
from tests.unit.sync_server.test_sealing import VECTOR as SERVER_VECTOR

# The vector pinned in tests/unit/sync_server/test_sealing.py, repeated here so that a
# change on either side fails a test.
VECTOR = (
    "0107a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c000102030405060708090a"
    "0bcc34e74b8a4f1bc59ed497c925efac9912975121e77b8a1911a1f2551b000fa1d8122aae74b525465bc9ea"
    "827e08a82f"
)


def _raw(key: X25519PrivateKey) -> bytes:
    return escrow.raw_public(key.public_key())


def test_the_client_reproduces_the_servers_sealed_box_vector() -> None:
    assert VECTOR == SERVER_VECTOR
    ephemeral = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    recipient = X25519PrivateKey.from_private_bytes(bytes(range(101, 133)))
    aad = escrow.escrow_aad("acct", "key-1")
    assert aad == server_sealing.escrow_aad("acct", "key-1")
    sealed = escrow.seal_deterministic(
        ephemeral, bytes(range(12)), _raw(recipient), bytes(range(200, 232)), aad
    )
    assert sealed.hex() == VECTOR
    assert escrow.open_sealed(recipient, bytes.fromhex(VECTOR), aad) == bytes(range(200, 232))


def test_client_and_server_open_each_others_boxes_and_bind_the_context() -> None:
    recipient = X25519PrivateKey.generate()
    aad = escrow.recovery_aad("acct", "rec-1")
    assert aad == server_sealing.recovery_aad("acct", "rec-1")
    from_client = escrow.seal(_raw(recipient), b"k" * 32, aad)
    assert server_sealing.open_sealed(recipient, from_client, aad) == b"k" * 32
    from_server = server_sealing.seal(recipient.public_key(), b"s" * 40, aad)
    assert escrow.open_sealed(recipient, from_server, aad) == b"s" * 40
    with pytest.raises(escrow.SealingError):
        escrow.open_sealed(recipient, from_client, escrow.recovery_aad("acct", "rec-2"))
    with pytest.raises(escrow.SealingError):
        escrow.open_sealed(X25519PrivateKey.generate(), from_client, aad)
    tampered = bytearray(from_client)
    tampered[50] ^= 1
    with pytest.raises(escrow.SealingError):
        escrow.open_sealed(recipient, bytes(tampered), aad)
    for blob in (b"", b"\x02" + bytes(80), b"\x01" + bytes(20)):
        with pytest.raises(escrow.SealingError):
            escrow.open_sealed(recipient, blob, aad)
    with pytest.raises(escrow.SealingError):
        escrow.seal(bytes(32), b"x", aad)  # a low-order point
    with pytest.raises(escrow.SealingError):
        escrow.seal(b"short", b"x", aad)


@pytest.mark.parametrize(
    ("client_name", "server_name"),
    [
        ("EscrowPut", "EscrowPut"),
        ("RecoveryStart", "RecoveryStart"),
        ("RecoveryOut", "RecoveryOut"),
        ("RecoveryResult", "RecoveryResult"),
        ("RecoveryAction", "RecoveryApprove"),
        ("RecoveryAction", "RecoveryCancel"),
        ("RecoveryAction", "RecoveryComplete"),
        ("ChangesResponse", "ChangesResponse"),
    ],
)
def test_the_escrow_and_recovery_wire_models_agree_with_the_server(
    client_name: str, server_name: str
) -> None:
    from app.sync import protocol as client
    from sync_server import protocol as server
    from tests.unit.sync.test_protocol import _shape

    assert _shape(getattr(client, client_name)) == _shape(getattr(server, server_name))


def test_the_client_reads_the_fields_it_needs_of_the_escrow_status() -> None:
    from app.sync import protocol as client
    from sync_server import protocol as server
    from tests.unit.sync.test_protocol import _shape

    ours, theirs = _shape(client.EscrowStatus), _shape(server.EscrowStatus)
    assert {name: kinds for name, (kinds, _) in ours.items()} == {
        name: theirs[name][0] for name in ours
    }


def test_the_escrowed_key_format() -> None:
    key = SyncKey.generate(Tier.STANDARD, epoch=7)
    plaintext = escrow.encode_escrowed_key(key)
    assert len(plaintext) <= 64  # what an older server accepted; the contract allows 256
    sealed = escrow.seal(_raw(X25519PrivateKey.generate()), plaintext, b"")
    assert sealed[0] == 1 and 77 <= len(sealed) <= 317  # the server's shape check
    back = escrow.decode_escrowed_key(plaintext, key.key_id)
    assert (back.tier, back.epoch, back.key_id, back.secret) == (
        Tier.STANDARD, 7, key.key_id, key.secret,
    )  # fmt: skip
    with pytest.raises(escrow.SealingError, match="not the one"):
        escrow.decode_escrowed_key(plaintext, "another-key-id")
    for damaged in (plaintext[:-1], b"\x02" + plaintext[1:], plaintext[:5]):
        with pytest.raises(escrow.SealingError):
            escrow.decode_escrowed_key(damaged, key.key_id)
    with pytest.raises(ValueError, match="Standard"):
        escrow.encode_escrowed_key(SyncKey.generate(Tier.PRIVATE))


# --- the engine's bookkeeping ------------------------------------------------------------------


@pytest.fixture
def vault() -> FakeEscrow:
    return FakeEscrow()


def _escrowing(server: FakeServer, name: str, vault: FakeEscrow) -> Device:
    device = Device(server, name)
    device.transport = EscrowFakeTransport(server, f"device-{name}", vault)
    device.open(private=True)
    return device


@pytest.fixture
async def a(vault: FakeEscrow) -> AsyncIterator[Device]:
    device = _escrowing(FakeServer(), "a", vault)
    yield device
    device.runner.shutdown()


def _current(device: Device, tier: Tier) -> SyncKey:
    (row,) = [k for k in device.library.store(tier).sync_state().sync_keys() if k[4] == "current"]
    key_id, tier_name, epoch, secret, _ = row
    return SyncKey(Tier(tier_name), epoch, key_id, secret)


def _escrowed(vault: FakeEscrow) -> SyncKey:
    assert vault.stored is not None
    return escrow.decode_escrowed_key(vault.open(ACCOUNT), vault.stored[0])


async def test_set_up_escrows_the_standard_key_and_never_the_private_one(
    a: Device, vault: FakeEscrow
) -> None:
    await a.setup()
    assert vault.puts == 0  # escrow follows the keys record, on the next round
    await a.engine.sync_once()
    standard, private = _current(a, Tier.STANDARD), _current(a, Tier.PRIVATE)
    held = _escrowed(vault)
    assert (held.key_id, held.secret, held.epoch) == (standard.key_id, standard.secret, 1)
    assert private.secret not in vault.open(ACCOUNT)
    assert await a.engine.escrow_state() == (False, None, standard.key_id)
    await a.engine.sync_once()
    assert vault.puts == 1  # done: not sent again


async def test_a_failed_upload_is_retried_on_the_next_round(a: Device, vault: FakeEscrow) -> None:
    await a.setup()
    assert isinstance(a.transport, EscrowFakeTransport)
    a.transport.escrow_offline = True
    with pytest.raises(SyncOfflineError):
        await a.engine.sync_once()
    standard = _current(a, Tier.STANDARD)
    assert await a.engine.escrow_state() == (False, standard.key_id, None)
    # A restart (a new engine over the same databases) still knows it is owed.
    a.transport.escrow_offline = False
    a.open(private=True)
    await a.engine.sync_once()
    assert _escrowed(vault).key_id == standard.key_id
    assert await a.engine.escrow_state() == (False, None, standard.key_id)


async def test_a_changed_escrow_key_is_fetched_again_and_the_key_sealed_to_it(
    a: Device, vault: FakeEscrow
) -> None:
    await a.setup()
    vault.change_key_after_meta = True  # the key in the first /v1/meta is stale at PUT
    await a.engine.sync_once()
    assert vault.stored is not None and vault.stored[1] == vault.key_id
    assert _escrowed(vault).key_id == _current(a, Tier.STANDARD).key_id


def _delete_a_standard_chat(device: Device) -> None:
    store = device.library.store(Tier.STANDARD)
    chat = store.create_chat(title="doomed", title_source=TitleSource.USER)
    store.purge(chat.id)


async def _rounds(device: Device, count: int = 3) -> None:
    for _ in range(count):
        await device.engine.sync_once()


async def test_a_new_standard_epoch_replaces_the_escrowed_key(a: Device, vault: FakeEscrow) -> None:
    await a.setup()
    await a.engine.sync_once()
    first = _current(a, Tier.STANDARD)
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat(title="doomed", title_source=TitleSource.USER)
    await a.engine.sync_once()
    store.purge(chat.id)
    await _rounds(a)
    second = _current(a, Tier.STANDARD)
    assert second.epoch == first.epoch + 1
    assert _escrowed(vault).key_id == second.key_id


async def test_escrow_off_deletes_it_and_later_epochs_stay_unescrowed_until_on(
    a: Device, vault: FakeEscrow
) -> None:
    await a.setup()
    await a.engine.sync_once()
    await a.engine.set_escrow(False)
    assert vault.stored is None
    assert (await a.engine.escrow_state())[0] is True
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat(title="doomed", title_source=TitleSource.USER)
    await a.engine.sync_once()
    store.purge(chat.id)
    await _rounds(a)
    assert _current(a, Tier.STANDARD).epoch == 2
    assert vault.stored is None and vault.puts == 1
    await a.engine.set_escrow(True)
    assert _escrowed(vault).key_id == _current(a, Tier.STANDARD).key_id


async def test_another_device_with_escrow_off_on_the_server_does_not_escrow_its_new_epoch(
    a: Device, vault: FakeEscrow
) -> None:
    """``off`` on one device holds for the account: a new epoch made on another device
    only replaces an escrow the server holds, it never creates one."""
    await a.setup()
    await a.engine.sync_once()
    b = _escrowing(a.server, "b", vault)
    try:
        await b.engine.join_with_passphrase(PASSPHRASE)
        await a.engine.set_escrow(False)
        store = b.library.store(Tier.STANDARD)
        chat = store.create_chat(title="doomed", title_source=TitleSource.USER)
        await b.engine.sync_once()
        store.purge(chat.id)
        await _rounds(b)
        assert _current(b, Tier.STANDARD).epoch == 2
        assert vault.stored is None
        assert (await b.engine.escrow_state())[1] is None  # nothing left owed
    finally:
        b.runner.shutdown()


async def test_a_device_with_the_standard_key_only_gets_standard_chats(
    a: Device, vault: FakeEscrow
) -> None:
    standard = a.library.store(Tier.STANDARD).create_chat(title="std-sentinel")
    private = a.library.store(Tier.PRIVATE).create_chat(title="prv-sentinel")
    await a.setup()
    await a.engine.sync_once()
    # A later epoch than the escrowed one: the recovered device follows the rotation.
    store = a.library.store(Tier.STANDARD)
    doomed = store.create_chat(title="doomed", title_source=TitleSource.USER)
    await a.engine.sync_once()
    assert isinstance(a.transport, EscrowFakeTransport)
    a.transport.escrow_offline = True  # the new epoch is not escrowed (yet)
    store.purge(doomed.id)
    for _ in range(3):
        with contextlib.suppress(SyncOfflineError):
            await a.engine.sync_once()
    assert _current(a, Tier.STANDARD).epoch == 2
    recovered = _escrowed(vault)
    assert recovered.epoch == 1

    c = _escrowing(a.server, "c", vault)
    try:
        report = await c.engine.join_with_standard_key(recovered)
        assert report.tampered == 0
        chats = c.dump()
        assert {chat["title"] for chat in chats.values()} == {"std-sentinel"}
        assert standard.id in chats and private.id not in chats
        assert _current(c, Tier.STANDARD).key_id == _current(a, Tier.STANDARD).key_id
        assert await c.engine.is_set_up() and await c.engine.is_standard_only()
        # Records it cannot open (the keys record, Private ones) wait; nothing crashes.
        assert report.deferred > 0
        await c.engine.sync_once()
        # Its own Standard chats reach A.
        c.library.store(Tier.STANDARD).create_chat(title="from-c", title_source=TitleSource.USER)
        await c.engine.sync_once()
        a.transport.escrow_offline = False
        await a.engine.sync_once()
        assert _escrowed(vault).epoch == 2  # the owed escrow of the new epoch went out
        assert "from-c" in {chat["title"] for chat in a.dump().values()}
        with pytest.raises(SyncKeysExistError):
            await a.runner.db(a.engine._install_standard_key, recovered)
        with pytest.raises(SyncKeysExistError):  # its recovered key is never replaced
            await c.setup()
        assert _current(c, Tier.STANDARD).key_id == _current(a, Tier.STANDARD).key_id
        flag = c.library.store(Tier.STANDARD).sync_state().setting(STANDARD_ONLY_SETTING)
        assert flag
        # The old passphrase found again: the keys record waiting in the inbox opens, and
        # the Private chats arrive.
        await c.engine.join_with_passphrase(PASSPHRASE)
        assert private.id in c.dump() and not await c.engine.is_standard_only()
    finally:
        c.runner.shutdown()


async def test_recoveries_in_changes_reach_the_status(a: Device, vault: FakeEscrow) -> None:
    await a.setup()
    await a.engine.sync_once()
    assert not a.engine.status.recoveries
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    notice = RecoveryOut(
        id="rec-1", status="pending", device_id="device-new", created_at=moment,
        not_before=moment + timedelta(hours=72), expires_at=moment + timedelta(hours=168),
    )  # fmt: skip
    done = notice.model_copy(update={"id": "rec-0", "status": "completed"})
    vault.recoveries = [notice, done]
    seen: list[EngineStatus] = []
    a.engine.add_status_listener(seen.append)
    await a.engine.sync_once()
    assert list(a.engine.status.recoveries) == [notice]
    assert seen and list(seen[-1].recoveries) == [notice]
    vault.recoveries = []
    await a.engine.sync_once()
    assert not a.engine.status.recoveries

"""Sync record encryption: headers bound into every record, chat keys under tier sync
keys, the keys record sealed to the key-record public key (its private key under the
passphrase and the recovery code), epoch rotation, crypto-shredding."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.sync.crypto import (
    AccountKeys,
    ChatKey,
    RecordHeader,
    RecordTamperedError,
    SyncKey,
    WrongKeySecretError,
    create_account_keys,
    keys_header,
    open_keys_with_passphrase,
    open_keys_with_recovery,
    open_record,
    read_keys_record,
    rewrap_passphrase,
    seal_key_entry,
    seal_keys_record,
    seal_record,
    unwrap_chat_key,
    unwrap_next_key,
    wrap_chat_key,
    wrap_next_key,
)
from app.tiers import Tier
from app.vault.kdf import FLOOR_PARAMS

HEADER = RecordHeader("acct-1", "rec-1", "msg", 3, False, "k1")
SECRET = bytes(range(32))


def test_a_record_round_trips() -> None:
    payload = seal_record(SECRET, HEADER, b"hello")
    assert b"hello" not in payload
    assert open_record(SECRET, HEADER, payload) == b"hello"


@pytest.mark.parametrize(
    "change",
    [
        {"account": "acct-2"},  # another account's record
        {"id": "rec-2"},  # swapped with another record
        {"kind": "chat"},
        {"revision": 2},  # an old revision replayed as the current one
        {"deleted": True},
        {"key_id": "k2"},
    ],
)
def test_every_header_field_is_bound(change: dict[str, object]) -> None:
    payload = seal_record(SECRET, HEADER, b"hello")
    with pytest.raises(RecordTamperedError, match="rec-"):
        open_record(SECRET, dataclasses.replace(HEADER, **change), payload)  # type: ignore[arg-type]


@given(st.binary(max_size=80))
def test_any_other_bytes_are_refused_cleanly(payload: bytes) -> None:
    with pytest.raises(RecordTamperedError):
        open_record(SECRET, HEADER, payload)


def test_a_flipped_bit_or_wrong_key_is_refused() -> None:
    payload = bytearray(seal_record(SECRET, HEADER, b"hello"))
    payload[-1] ^= 1
    with pytest.raises(RecordTamperedError):
        open_record(SECRET, HEADER, bytes(payload))
    with pytest.raises(RecordTamperedError):
        open_record(bytes(32), HEADER, seal_record(SECRET, HEADER, b"hello"))


def test_chat_keys_are_wrapped_by_the_tier_sync_key() -> None:
    sync_key = SyncKey.generate(Tier.PRIVATE)
    chat_key = ChatKey.generate("chat-1")
    header = RecordHeader("acct-1", "chat-1", "chatkey", 1, False, sync_key.key_id)
    payload = wrap_chat_key(sync_key, chat_key, header)
    assert unwrap_chat_key(sync_key, header, payload) == chat_key
    with pytest.raises(RecordTamperedError):
        unwrap_chat_key(sync_key.next_epoch(), header, payload)


def test_key_ids_and_reprs_reveal_nothing() -> None:
    standard, private = SyncKey.generate(Tier.STANDARD), SyncKey.generate(Tier.PRIVATE)
    assert len({standard.key_id, private.key_id}) == 2
    assert "standard" not in standard.key_id and "private" not in private.key_id
    assert standard.secret.hex() not in repr(standard)
    chat_key = ChatKey.generate("c")
    assert chat_key.secret.hex() not in repr(chat_key)
    with pytest.raises(ValueError, match="never synced"):
        SyncKey.generate(Tier.EPHEMERAL)


ACCOUNT = "acct-1"
PASSPHRASE = "correct horse battery"
RECOVERY = bytes(range(32, 64))


def _keys_record(revision: int = 1) -> tuple[dict[Tier, SyncKey], AccountKeys, RecordHeader, bytes]:
    sync_keys = {tier: SyncKey.generate(tier) for tier in (Tier.STANDARD, Tier.PRIVATE)}
    account = create_account_keys(
        ACCOUNT, passphrase=PASSPHRASE, kdf=FLOOR_PARAMS, recovery_secret=RECOVERY
    )
    header = keys_header(ACCOUNT, revision, account)
    entries = [seal_key_entry(ACCOUNT, account, key) for key in sync_keys.values()]
    return sync_keys, account, header, seal_keys_record(header, account, entries)


def test_keys_record_opens_with_passphrase_or_recovery_code_only() -> None:
    sync_keys, account, header, payload = _keys_record()
    text = payload.decode()
    for key in sync_keys.values():
        assert key.secret.hex() not in text and key.to_json()["secret"] not in text
    assert (
        account.signing_key.hex() not in text
        and base64.b64encode(account.signing_key).decode() not in text
    )
    opened = open_keys_with_passphrase(header, payload, PASSPHRASE)
    assert opened.sync_keys == sync_keys
    assert opened.account_keys.signing_key == account.signing_key
    assert open_keys_with_recovery(header, payload, RECOVERY).sync_keys == sync_keys
    with pytest.raises(WrongKeySecretError, match="passphrase does not open"):
        open_keys_with_passphrase(header, payload, "wrong horse")
    with pytest.raises(WrongKeySecretError, match="recovery code does not open"):
        open_keys_with_recovery(header, payload, bytes(32))


def test_a_device_reseals_without_the_passphrase_and_holds_nothing_that_opens_it() -> None:
    """At an epoch change any device seals the new keys to the public key; what a device
    keeps (AccountKeys) has no private key-record key in it."""
    sync_keys, account, _header, _payload = _keys_record()
    stored = json.dumps(account.to_json())
    newer = sync_keys[Tier.STANDARD].next_epoch()
    header = keys_header(ACCOUNT, 2, account)
    entries = [seal_key_entry(ACCOUNT, account, k) for k in (newer, sync_keys[Tier.PRIVATE])]
    payload = seal_keys_record(header, account, entries)
    assert open_keys_with_passphrase(header, payload, PASSPHRASE).sync_keys[Tier.STANDARD] == newer
    # Only the public key, the verify/signing keys and the wrapped slots are stored.
    assert set(account.to_json()) == {"public_key", "verify_key", "signing_key", "slots"}
    assert PASSPHRASE not in stored


def test_keys_record_binds_its_header_signature_and_kdf_parameters() -> None:
    _keys, account, header, payload = _keys_record()
    with pytest.raises(RecordTamperedError, match="signature"):
        open_keys_with_recovery(dataclasses.replace(header, revision=2), payload, RECOVERY)
    body = json.loads(payload)
    body["slots"]["slots"][0]["iterations"] += 1  # a cheaper (or different) KDF claimed
    with pytest.raises(RecordTamperedError, match="signature"):
        open_keys_with_passphrase(header, json.dumps(body).encode(), PASSPHRASE)
    # Signed again by someone else (the server knows the public key, not the signing key).
    forged_keys = create_account_keys(
        ACCOUNT, passphrase="attacker", kdf=FLOOR_PARAMS, recovery_secret=None
    )
    forged = seal_keys_record(
        header,
        AccountKeys(account.public_key, account.verify_key, forged_keys.signing_key, account.slots),
        [seal_key_entry(ACCOUNT, account, SyncKey.generate(Tier.STANDARD))],
    )
    with pytest.raises(RecordTamperedError, match="signature"):
        read_keys_record(header, forged, account.verify_key)
    with pytest.raises(RecordTamperedError, match="signature"):
        open_keys_with_passphrase(header, forged, PASSPHRASE)


def test_changing_the_passphrase_rewraps_the_slot() -> None:
    sync_keys, account, header, _payload = _keys_record()
    with pytest.raises(WrongKeySecretError):
        rewrap_passphrase(
            ACCOUNT, account, current_passphrase="nope", new_passphrase="x", kdf=FLOOR_PARAMS
        )
    changed = rewrap_passphrase(
        ACCOUNT, account, current_passphrase=PASSPHRASE, new_passphrase="new one", kdf=FLOOR_PARAMS
    )
    entries = [seal_key_entry(ACCOUNT, changed, k) for k in sync_keys.values()]
    payload = seal_keys_record(header, changed, entries)
    assert open_keys_with_passphrase(header, payload, "new one").sync_keys == sync_keys
    assert open_keys_with_recovery(header, payload, RECOVERY).sync_keys == sync_keys
    with pytest.raises(WrongKeySecretError):
        open_keys_with_passphrase(header, payload, PASSPHRASE)


def test_a_rotation_record_leads_forward_only() -> None:
    old = SyncKey.generate(Tier.PRIVATE)
    new = old.next_epoch()
    header = RecordHeader(ACCOUNT, f"rotate:{old.key_id}", "rotation", 1, False, old.key_id)
    payload = wrap_next_key(old, new, header)
    assert unwrap_next_key(old, header, payload) == new
    with pytest.raises(RecordTamperedError):
        unwrap_next_key(new, header, payload)
    with pytest.raises(ValueError, match="next epoch"):
        wrap_next_key(old, SyncKey.generate(Tier.PRIVATE, 5), header)


def test_crypto_shredding_a_deleted_chat() -> None:
    """After a delete the tier moves to a new epoch: the remaining chat keys are rewrapped,
    and the deleted chat's key record only opens with the destroyed old key."""
    old = SyncKey.generate(Tier.STANDARD)
    kept, deleted = ChatKey.generate("kept"), ChatKey.generate("deleted")
    backup = {
        chat.chat_id: wrap_chat_key(
            old, chat, RecordHeader("a", chat.chat_id, "chatkey", 1, False, old.key_id)
        )
        for chat in (kept, deleted)
    }
    new = old.next_epoch()
    assert new.epoch == 2 and new.secret != old.secret
    rewrapped = wrap_chat_key(new, kept, RecordHeader("a", "kept", "chatkey", 2, False, new.key_id))
    assert (
        unwrap_chat_key(new, RecordHeader("a", "kept", "chatkey", 2, False, new.key_id), rewrapped)
        == kept
    )
    # Holding only the new key, the backup's copy of the deleted chat's key is unreadable.
    with pytest.raises(RecordTamperedError):
        unwrap_chat_key(
            new, RecordHeader("a", "deleted", "chatkey", 1, False, old.key_id), backup["deleted"]
        )

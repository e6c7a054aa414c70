"""Sync record encryption: headers bound into every record, chat keys under tier sync
keys, the keys record under the passphrase and the recovery code, crypto-shredding."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.sync.crypto import (
    ChatKey,
    KeyRecord,
    RecordHeader,
    RecordTamperedError,
    SyncKey,
    WrongKeySecretError,
    open_record,
    seal_record,
    unwrap_chat_key,
    wrap_chat_key,
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


KEYS_HEADER = RecordHeader("acct-1", "keys", "keys", 1, False, "passphrase")


def _key_record() -> tuple[KeyRecord, bytes, bytes]:
    record = KeyRecord({tier: SyncKey.generate(tier) for tier in (Tier.STANDARD, Tier.PRIVATE)})
    recovery = bytes(range(32, 64))
    payload = record.seal(
        KEYS_HEADER, passphrase="correct horse battery", kdf=FLOOR_PARAMS, recovery_secret=recovery
    )
    return record, payload, recovery


def test_keys_record_opens_with_passphrase_or_recovery_code_only() -> None:
    record, payload, recovery = _key_record()
    text = payload.decode()
    for key in record.keys.values():
        assert key.secret.hex() not in text and key.to_json()["secret"] not in text
    assert KeyRecord.open_with_passphrase(KEYS_HEADER, payload, "correct horse battery") == record
    assert KeyRecord.open_with_recovery(KEYS_HEADER, payload, recovery) == record
    with pytest.raises(WrongKeySecretError, match="passphrase does not open"):
        KeyRecord.open_with_passphrase(KEYS_HEADER, payload, "wrong horse")
    with pytest.raises(WrongKeySecretError, match="recovery code does not open"):
        KeyRecord.open_with_recovery(KEYS_HEADER, payload, bytes(32))


def test_keys_record_binds_its_header_and_kdf_parameters() -> None:
    _record, payload, recovery = _key_record()
    with pytest.raises((WrongKeySecretError, RecordTamperedError)):
        KeyRecord.open_with_recovery(
            dataclasses.replace(KEYS_HEADER, revision=2), payload, recovery
        )
    body = json.loads(payload)
    body["slots"][0]["iterations"] += 1  # a cheaper (or different) KDF claimed by the server
    with pytest.raises(WrongKeySecretError):
        KeyRecord.open_with_passphrase(
            KEYS_HEADER, json.dumps(body).encode(), "correct horse battery"
        )


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

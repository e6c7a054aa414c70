"""The slot file: known answers, tampering with every field, damage detection."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from app.vault.errors import DamagedSlotFileError, KdfBelowFloorError, WrongSecretError
from app.vault.kdf import FLOOR_PARAMS
from app.vault.slots import (
    DatabaseKey,
    Slot,
    SlotFile,
    WrappedKey,
    canonical_json,
    new_slot,
    open_slot,
    unwrap_database_key,
    wrap_database_key,
)

VAULT_ID = bytes(range(100, 116))
VAULT_KEY = b"\x33" * 32
SLOT_SECRET = b"\x11" * 32


def _kat_slot() -> Slot:
    return Slot(
        id="0123abcd",
        kind="passphrase",
        label="Passphrase",
        created="2026-01-01T00:00:00+00:00",
        salt=bytes(range(16)),
        params=FLOOR_PARAMS.to_json(),
        wrapped=WrappedKey(
            b"\x22" * 12,
            bytes.fromhex(
                "a6196e80edf82089f70651d6d23f4d282474e7bbc155d85ecea311f28fdacebec91af3f306c4b8ae"
                "67d8ded6d006b0f5"
            ),
        ),
    )


def test_slot_associated_data_known_answer() -> None:
    assert _kat_slot().associated_data(VAULT_ID) == (
        b'hushchat-vault/v1/slot\x00{"slot":{"created":"2026-01-01T00:00:00+00:00",'
        b'"id":"0123abcd","label":"Passphrase","params":{"algorithm":"argon2id",'
        b'"iterations":3,"memory_kib":65536,"parallelism":4,"version":19},'
        b'"salt":"AAECAwQFBgcICQoLDA0ODw==","type":"passphrase"},'
        b'"vault_id":"ZGVmZ2hpamtsbW5vcHFycw=="}'
    )


def test_slot_unwrap_known_answer() -> None:
    assert open_slot(_kat_slot(), SLOT_SECRET, VAULT_ID) == b"\x33" * 32


def test_database_key_known_answer() -> None:
    record = DatabaseKey(
        "standard",
        "standard.db",
        1,
        WrappedKey(
            b"\x44" * 12,
            bytes.fromhex(
                "a9bfaa52636a685a9222f83b67631903a7dd4f3a958cd78e27995676376685cbf10c9248b2e2a8e7"
                "b82e69a025b47efc"
            ),
        ),
    )
    assert unwrap_database_key(record, VAULT_KEY, VAULT_ID) == b"\x55" * 32


def test_slot_json_shape() -> None:
    assert _kat_slot().to_json() == {
        "id": "0123abcd",
        "type": "passphrase",
        "label": "Passphrase",
        "created": "2026-01-01T00:00:00+00:00",
        "salt": "AAECAwQFBgcICQoLDA0ODw==",
        "params": {
            "algorithm": "argon2id",
            "version": 19,
            "memory_kib": 65536,
            "iterations": 3,
            "parallelism": 4,
        },
        "wrapped_key": {
            "nonce": base64.b64encode(b"\x22" * 12).decode(),
            "ciphertext": base64.b64encode(_kat_slot().wrapped.ciphertext).decode(),
        },
    }


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


TAMPERS: dict[str, Any] = {
    "id": lambda s: dataclasses.replace(s, id="ffffffff"),
    "kind": lambda s: dataclasses.replace(s, kind="recovery"),
    "label": lambda s: dataclasses.replace(s, label="Passphrase "),
    "created": lambda s: dataclasses.replace(s, created="2026-01-01T00:00:01+00:00"),
    "salt": lambda s: dataclasses.replace(s, salt=_flip(s.salt)),
    "params.memory_kib": lambda s: dataclasses.replace(
        s, params={**s.params, "memory_kib": 131072}
    ),
    "params.iterations": lambda s: dataclasses.replace(s, params={**s.params, "iterations": 4}),
    "params.parallelism": lambda s: dataclasses.replace(s, params={**s.params, "parallelism": 8}),
    "params.extra": lambda s: dataclasses.replace(s, params={**s.params, "x": 1}),
    "nonce": lambda s: dataclasses.replace(
        s, wrapped=WrappedKey(_flip(s.wrapped.nonce), s.wrapped.ciphertext)
    ),
    "ciphertext[0]": lambda s: dataclasses.replace(
        s, wrapped=WrappedKey(s.wrapped.nonce, _flip(s.wrapped.ciphertext))
    ),
    "tag[-1]": lambda s: dataclasses.replace(
        s, wrapped=WrappedKey(s.wrapped.nonce, _flip(s.wrapped.ciphertext, -1))
    ),
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_tampering_any_slot_field_makes_unwrap_fail(field: str) -> None:
    slot = _kat_slot()
    with pytest.raises(WrongSecretError):
        open_slot(TAMPERS[field](slot), SLOT_SECRET, VAULT_ID)


def test_other_vault_id_makes_unwrap_fail() -> None:
    with pytest.raises(WrongSecretError):
        open_slot(_kat_slot(), SLOT_SECRET, bytes(16))


@pytest.mark.parametrize("kind", ["passphrase", "recovery", "security-key", "keychain", "touch-id"])
def test_secret_is_bound_to_the_slot_kind(kind: str) -> None:
    slot = new_slot(
        kind=kind,  # type: ignore[arg-type]
        label="x",
        salt=b"\0" * 16,
        params={},
        slot_secret=SLOT_SECRET,
        vault_key=VAULT_KEY,
        vault_id=VAULT_ID,
    )
    assert open_slot(slot, SLOT_SECRET, VAULT_ID) == VAULT_KEY
    other = "recovery" if kind != "recovery" else "keychain"
    with pytest.raises(WrongSecretError):
        open_slot(dataclasses.replace(slot, kind=other), SLOT_SECRET, VAULT_ID)  # type: ignore[arg-type]


def test_every_partial_secret_fails() -> None:
    slot = new_slot(
        kind="recovery",
        label="x",
        salt=b"\0" * 16,
        params={},
        slot_secret=SLOT_SECRET,
        vault_key=VAULT_KEY,
        vault_id=VAULT_ID,
    )
    for length in range(len(SLOT_SECRET)):
        with pytest.raises(WrongSecretError):
            open_slot(slot, SLOT_SECRET[:length], VAULT_ID)
    for index in range(len(SLOT_SECRET)):
        with pytest.raises(WrongSecretError):
            open_slot(slot, _flip(SLOT_SECRET, index), VAULT_ID)


@pytest.mark.parametrize("field", ["tier", "file", "generation", "vault_id"])
def test_tampering_database_key_record_fails(field: str) -> None:
    record = wrap_database_key(
        tier="standard",
        file="standard.db",
        generation=1,
        raw_key=b"\x55" * 32,
        vault_key=VAULT_KEY,
        vault_id=VAULT_ID,
    )
    vault_id = VAULT_ID
    if field == "tier":
        record = dataclasses.replace(record, tier="private")
    elif field == "file":
        record = dataclasses.replace(record, file="private.db")
    elif field == "generation":
        record = dataclasses.replace(record, generation=2)
    else:
        vault_id = bytes(16)
    with pytest.raises(DamagedSlotFileError):
        unwrap_database_key(record, VAULT_KEY, vault_id)


# ----------------------------------------------------------------- whole file


def _slot_file() -> SlotFile:
    databases = {
        tier: wrap_database_key(
            tier=tier,
            file=f"{tier}.db",
            generation=1,
            raw_key=bytes(32),
            vault_key=VAULT_KEY,
            vault_id=VAULT_ID,
        )
        for tier in ("standard", "private")
    }
    slot = new_slot(
        kind="passphrase",
        label="Passphrase",
        salt=bytes(16),
        params=FLOOR_PARAMS.to_json(),
        slot_secret=SLOT_SECRET,
        vault_key=VAULT_KEY,
        vault_id=VAULT_ID,
    )
    return SlotFile(VAULT_ID, "2026-01-01T00:00:00+00:00", databases, (slot,)).sealed(VAULT_KEY)  # type: ignore[arg-type]


def _rewrite(data: bytes, edit: Any) -> bytes:
    """Apply ``edit`` to the JSON and fix the unkeyed checksum, like a deliberate attacker."""
    document = json.loads(data)
    edit(document)
    document.pop("checksum")
    document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
    return json.dumps(document).encode()


def test_round_trip_and_mac() -> None:
    original = _slot_file()
    parsed = SlotFile.from_bytes(original.to_bytes())
    assert parsed == original
    parsed.verify_mac(VAULT_KEY)


def test_every_truncation_is_detected() -> None:
    data = _slot_file().to_bytes()
    for length in range(0, len(data) - 1, 7):
        with pytest.raises(DamagedSlotFileError):
            SlotFile.from_bytes(data[:length])


def test_every_byte_edit_is_detected() -> None:
    data = _slot_file().to_bytes()
    for index in range(0, len(data), 3):
        edited = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
        if edited == data:
            continue
        with pytest.raises(DamagedSlotFileError):
            SlotFile.from_bytes(edited)


def test_kdf_below_floor_is_refused_when_reading() -> None:
    def weaken(document: dict[str, Any]) -> None:
        document["slots"][0]["params"]["memory_kib"] = 1024

    data = _rewrite(_slot_file().to_bytes(), weaken)
    with pytest.raises(KdfBelowFloorError, match="below the floor"):
        SlotFile.from_bytes(data)


def test_removed_slot_with_fixed_checksum_fails_the_mac() -> None:
    original = _slot_file()
    extra = new_slot(
        kind="recovery",
        label="Recovery code",
        salt=bytes(16),
        params={},
        slot_secret=b"\x99" * 32,
        vault_key=VAULT_KEY,
        vault_id=VAULT_ID,
    )
    two = dataclasses.replace(original, slots=(*original.slots, extra)).sealed(VAULT_KEY)
    data = _rewrite(two.to_bytes(), lambda document: document["slots"].pop())
    parsed = SlotFile.from_bytes(data)
    with pytest.raises(DamagedSlotFileError, match="modified outside Hushchat"):
        parsed.verify_mac(VAULT_KEY)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=3), "format version 3"),
        (lambda d: d.update(format="other"), "not a Hushchat vault"),
        (lambda d: d.update(extra=1), "unknown fields extra"),
        (lambda d: d.pop("mac"), "lacks mac"),
        (lambda d: d.update(slots=[]), "no key slots"),
        (lambda d: d["slots"][0].update(type="magic"), "unknown type"),
        (lambda d: d["slots"][0].update(id="XYZ"), "8 hex digits"),
        (lambda d: d["slots"].append(dict(d["slots"][0])), "share an id"),
        (lambda d: d["databases"]["standard"].update(file="../x.db"), "wrong tier or file"),
        (lambda d: d["databases"]["standard"].update(generation=0), "positive integer"),
        (lambda d: d["slots"][0]["wrapped_key"].update(nonce="!!"), "not base64"),
        (lambda d: d["slots"][0]["params"].update(iterations="3"), "not an integer"),
    ],
)
def test_structural_edits_are_reported(edit: Any, message: str) -> None:
    data = _rewrite(_slot_file().to_bytes(), edit)
    with pytest.raises(DamagedSlotFileError, match=message):
        SlotFile.from_bytes(data)


def test_not_json_and_not_ascii(tmp_path: Path) -> None:
    for data in (b"", b"\xff\xfe", b"[1, 2]", b"null"):
        with pytest.raises(DamagedSlotFileError):
            SlotFile.from_bytes(data)

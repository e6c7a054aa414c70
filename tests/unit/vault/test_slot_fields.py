"""Reading ``vault.json`` field by field: each kind of slot, and what each bad field is called.

An edited file whose unkeyed checksum was fixed up (as a deliberate attacker would) must
still be refused while parsing, naming the field, before any secret is tried.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from app.vault.errors import DamagedSlotFileError
from app.vault.kdf import FLOOR_PARAMS
from app.vault.slots import TIERS, SlotFile, canonical_json, new_slot, wrap_database_key

VAULT_ID = bytes(range(16))
VAULT_KEY = b"\x42" * 32

Edit = Callable[[dict[str, Any]], object]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def slot_file() -> SlotFile:
    """A vault with one slot of every kind."""
    databases = {
        tier: wrap_database_key(
            tier=tier,
            file=f"{tier}.db",
            generation=1,
            raw_key=bytes(32),
            vault_key=VAULT_KEY,
            vault_id=VAULT_ID,
        )
        for tier in TIERS
    }
    kinds: list[tuple[Any, dict[str, Any]]] = [
        ("passphrase", FLOOR_PARAMS.to_json()),
        (
            "security-key",
            {"credential_id": b64(b"cred-1"), "rp_id": "hushchat.local", "user_verification": True},
        ),
        ("keychain", {"service": "hushchat", "account": "vault"}),
        ("touch-id", {"service": "hushchat", "account": "touch-id"}),
        ("recovery", {}),
    ]
    slots = tuple(
        new_slot(
            kind=kind,
            label=kind,
            salt=bytes([n]) * 16,
            params=params,
            slot_secret=bytes([n]) * 32,
            vault_key=VAULT_KEY,
            vault_id=VAULT_ID,
        )
        for n, (kind, params) in enumerate(kinds, start=1)
    )
    created = "2026-01-01T00:00:00+00:00"
    return SlotFile(VAULT_ID, created, databases, slots).sealed(VAULT_KEY)


def edited(edit: Edit) -> bytes:
    """The file with ``edit`` applied to its JSON and the checksum recomputed."""
    document = json.loads(slot_file().to_bytes())
    edit(document)
    document.pop("checksum")
    document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
    return json.dumps(document).encode()


def slot(document: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in document["slots"] if s["type"] == kind)
    return found


def test_every_kind_of_slot_reads_back_as_written() -> None:
    original = slot_file()
    parsed = SlotFile.from_bytes(original.to_bytes())
    assert parsed == original
    parsed.verify_mac(VAULT_KEY)
    by_kind = {s.kind: s for s in parsed.slots}
    assert by_kind["security-key"].credential_id == b"cred-1"
    assert by_kind["passphrase"].kdf_params == FLOOR_PARAMS


@pytest.mark.parametrize("kind", ["security-key", "keychain", "touch-id", "recovery"])
def test_only_a_passphrase_slot_has_kdf_parameters(kind: str) -> None:
    parsed = SlotFile.from_bytes(slot_file().to_bytes())
    other = next(s for s in parsed.slots if s.kind == kind)
    with pytest.raises(TypeError, match=f"a {kind} slot has no KDF parameters"):
        _ = other.kdf_params


def test_only_a_security_key_slot_has_a_credential() -> None:
    parsed = SlotFile.from_bytes(slot_file().to_bytes())
    with pytest.raises(TypeError, match="a passphrase slot has no credential"):
        _ = parsed.slots[0].credential_id


def set_in(kind: str, **values: Any) -> Edit:
    return lambda d: slot(d, kind).update(values)


def set_param(kind: str, **values: Any) -> Edit:
    return lambda d: slot(d, kind)["params"].update(values)


def replace_slot(d: dict[str, Any]) -> None:
    d["slots"][0] = "a string"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (replace_slot, "slot 1 is not an object"),
        (set_in("keychain", label=7), r"slot 3\.label is not a string"),
        (set_in("recovery", salt=b64(bytes(8))), r"slot 5\.salt is shorter than 16 bytes"),
        (set_in("recovery", created=None), r"slot 5\.created is not a string"),
        (
            lambda d: slot(d, "keychain")["wrapped_key"].update(nonce=b64(bytes(5))),
            r"slot 3\.wrapped_key\.nonce has the wrong length",
        ),
        (set_param("passphrase", algorithm="scrypt"), "names an unsupported KDF"),
        (set_param("passphrase", parallelism=True), r"params\.parallelism is not an integer"),
        (set_param("security-key", credential_id="%%%"), r"credential_id is not base64"),
        (set_param("security-key", rp_id=["x"]), r"params\.rp_id is not a string"),
        (set_param("security-key", user_verification="yes"), "user_verification is not a boolean"),
        (lambda d: slot(d, "security-key")["params"].pop("rp_id"), r"params lacks rp_id"),
        (set_param("touch-id", account=1), r"slot 4\.params\.account is not a string"),
        (set_param("keychain", extra="x"), r"slot 3\.params has unknown fields extra"),
        (set_param("recovery", anything=1), r"slot 5\.params has unknown fields anything"),
    ],
)
def test_a_bad_field_is_named(edit: Edit, message: str) -> None:
    with pytest.raises(DamagedSlotFileError, match=message):
        SlotFile.from_bytes(edited(edit))

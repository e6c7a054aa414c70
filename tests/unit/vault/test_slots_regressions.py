"""Slot files the fuzzer (tests/fuzz/test_vault_file.py) found to crash or slip through.

Each must be refused with ``DamagedSlotFileError``: never another exception, and
nothing the parser accepts is normalised away when the file is written back.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from app.vault.errors import DamagedSlotFileError
from app.vault.kdf import FLOOR_PARAMS
from app.vault.slots import TIERS, DatabaseKey, Slot, SlotFile, WrappedKey, canonical_json

_WRAP = WrappedKey(b"\x01" * 12, b"\x02" * 48)
VALID_BYTES = SlotFile(
    vault_id=bytes(range(16)),
    created="2026-01-01T00:00:00+00:00",
    databases={tier: DatabaseKey(tier, f"{tier}.db", 1, _WRAP) for tier in TIERS},
    slots=(
        Slot(
            "0123abcd",
            "passphrase",
            "Passphrase",
            "2026-01-01T00:00:00+00:00",
            bytes(16),
            FLOOR_PARAMS.to_json(),
            _WRAP,
        ),
    ),
    mac=b"\x44" * 32,
).to_bytes()


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VALID_BYTES)
    return document


def _sealed(document: dict[str, Any]) -> bytes:
    """The file bytes, with the (unkeyed) checksum recomputed as damage or an editor might."""
    rest = {key: value for key, value in document.items() if key != "checksum"}
    rest["checksum"] = "sha256:" + hashlib.sha256(canonical_json(rest)).hexdigest()
    return json.dumps(rest).encode("ascii")


def test_the_seed_file_parses() -> None:
    assert SlotFile.from_bytes(_sealed(_document())).to_bytes() == VALID_BYTES


def test_deep_nesting_is_damage_not_a_recursion_error() -> None:
    with pytest.raises(DamagedSlotFileError, match="not valid JSON"):
        SlotFile.from_bytes(b"[" * 100_000)


def test_a_non_ascii_checksum_is_damage_not_a_type_error() -> None:
    # hmac.compare_digest raises TypeError for str arguments that are not ASCII.
    document = {**_document(), "checksum": "sha256:\u00e9"}
    with pytest.raises(DamagedSlotFileError, match="checksum does not match"):
        SlotFile.from_bytes(json.dumps(document).encode("ascii"))


@pytest.mark.parametrize("value", ["\u00e9" * 44, "\u0660" * 44], ids=["latin", "arabic-digits"])
def test_non_ascii_base64_is_damage_not_a_value_error(value: str) -> None:
    # base64.b64decode raises a plain ValueError (not binascii.Error) for such strings.
    with pytest.raises(DamagedSlotFileError, match="mac is not base64"):
        SlotFile.from_bytes(_sealed({**_document(), "mac": value}))


@pytest.mark.parametrize("version", [True, 1.0])
def test_a_version_that_only_equals_one_is_damage(version: Any) -> None:
    with pytest.raises(DamagedSlotFileError, match="format version"):
        SlotFile.from_bytes(_sealed({**_document(), "version": version}))


def test_a_kdf_version_that_only_equals_19_is_damage() -> None:
    document = _document()
    passphrase = next(slot for slot in document["slots"] if slot["type"] == "passphrase")
    passphrase["params"]["version"] = 19.0
    with pytest.raises(DamagedSlotFileError, match="unsupported KDF"):
        SlotFile.from_bytes(_sealed(document))


def test_base64_with_stray_padding_bits_is_damage() -> None:
    # "AAA=" and "AAB=" decode to the same bytes, and the MAC covers the decoded bytes:
    # two different files would carry the same MAC.
    document = _document()
    salt = document["slots"][0]["salt"]
    assert salt.endswith("==")
    document["slots"][0]["salt"] = salt[:-3] + "B=="
    with pytest.raises(DamagedSlotFileError, match="not base64 as Hushchat writes it"):
        SlotFile.from_bytes(_sealed(document))

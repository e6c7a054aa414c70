"""Fuzzing the ``vault.json`` parser (``app.vault.slots.SlotFile.from_bytes``).

Whatever the bytes, the parser returns a ``SlotFile`` or raises ``DamagedSlotFileError``
(``KdfBelowFloorError`` is one); never another exception. A file it accepts is written
back as it was read, and every valid file survives writing and reading unchanged.

Mutated documents get a correct checksum half of the time: the checksum is not keyed,
so damage (or an attacker) can produce one, and without it every mutation would stop at
the first check. The parser does not decrypt, so the wraps here are random bytes of the
right length.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.vault.errors import DamagedSlotFileError
from app.vault.kdf import FLOOR_PARAMS, SlotKind
from app.vault.slots import (
    SLOT_KINDS,
    TIERS,
    DatabaseKey,
    Slot,
    SlotFile,
    WrappedKey,
    canonical_json,
)
from tests.fuzz._profiles import FUZZ
from tests.fuzz._stats import tried
from tests.fuzz._strategies import field_names, mutated, mutated_bytes

pytestmark = pytest.mark.fuzz


def _params(kind: str, account: str) -> dict[str, Any]:
    if kind == "passphrase":
        return FLOOR_PARAMS.to_json()
    if kind == "security-key":
        return {"credential_id": "Y3JlZGVudGlhbA==", "rp_id": "hushchat", "user_verification": True}
    if kind in ("keychain", "touch-id"):
        return {"service": "hushchat", "account": account}
    return {}


def _wrap(seed: int) -> WrappedKey:
    return WrappedKey(bytes([seed]) * 12, bytes([seed + 1]) * 48)


def _database(tier: Any, generation: int, seed: int) -> DatabaseKey:
    return DatabaseKey(tier, f"{tier}.db", generation, _wrap(seed))


#: One file with a slot of every kind and a rekey in flight: the seed of the mutations.
VALID = SlotFile(
    vault_id=bytes(range(16)),
    created="2026-01-01T00:00:00+00:00",
    databases={tier: _database(tier, 1, 10 + index) for index, tier in enumerate(TIERS)},
    slots=tuple(
        Slot(
            f"{index:08x}",
            kind,
            kind.title(),
            "2026-01-01T00:00:00+00:00",
            bytes([index]) * 16,
            _params(kind, "me"),
            _wrap(index * 2),
        )
        for index, kind in enumerate(cast(tuple[SlotKind, ...], SLOT_KINDS))
    ),
    pending_rekey={TIERS[0]: _database(TIERS[0], 2, 20)},
    mac=b"\x44" * 32,
)
VALID_BYTES = VALID.to_bytes()
VALID_DOCUMENT: dict[str, Any] = json.loads(VALID_BYTES)
KEYS = sorted(field_names(VALID_DOCUMENT) | {"hushchat-vault", *TIERS, *SLOT_KINDS})


def _with_checksum(document: Any) -> Any:
    """``document`` with the checksum the parser expects (when it is an object)."""
    if not isinstance(document, dict):
        return document
    rest = {key: value for key, value in document.items() if key != "checksum"}
    return {**rest, "checksum": "sha256:" + hashlib.sha256(canonical_json(rest)).hexdigest()}


def _check(data: bytes) -> None:
    """Parsed or damaged; a parsed file is written back exactly as it was read."""
    try:
        parsed = SlotFile.from_bytes(data)
    except DamagedSlotFileError:
        return
    written = parsed.to_bytes()
    assert SlotFile.from_bytes(written) == parsed
    assert SlotFile.from_bytes(written).to_bytes() == written
    # Strict: nothing the parser accepted is normalised away (1.0 for 1, true for 1, ...).
    assert canonical_json(json.loads(written)) == canonical_json(json.loads(data))


@FUZZ
@given(st.one_of(st.binary(), st.integers(1, 100_000).map(lambda depth: b"[" * depth)))
def test_any_bytes_parse_or_are_damaged(data: bytes) -> None:
    tried("vault.json: any bytes")
    _check(data)


@FUZZ
@given(mutated(VALID_DOCUMENT, KEYS), st.booleans())
def test_mutated_documents_parse_or_are_damaged(document: Any, fix_checksum: bool) -> None:
    tried("vault.json: mutated document")
    if fix_checksum:
        document = _with_checksum(document)
    _check(json.dumps(document).encode("ascii"))


@FUZZ
@given(mutated_bytes(VALID_BYTES))
def test_mutated_bytes_parse_or_are_damaged(data: bytes) -> None:
    tried("vault.json: mutated bytes")
    _check(data)


@st.composite
def slot_files(draw: st.DrawFn) -> SlotFile:
    """Valid slot files: any number of slots of any kind, labels, dates and generations."""
    kinds: list[SlotKind] = draw(st.lists(st.sampled_from(SLOT_KINDS), min_size=1, max_size=5))
    ids = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=8, max_size=8),
            unique=True,
            min_size=len(kinds),
            max_size=len(kinds),
        )
    )
    text = st.text(max_size=20)
    slots = tuple(
        Slot(
            slot_id,
            kind,
            draw(text),
            draw(text),
            draw(st.binary(min_size=16, max_size=64)),
            _params(kind, draw(text)),
            _wrap(draw(st.integers(0, 254))),
        )
        for slot_id, kind in zip(ids, kinds, strict=True)
    )
    generations = st.integers(1, 2**63)
    pending = draw(st.lists(st.sampled_from(TIERS), unique=True))
    return SlotFile(
        vault_id=draw(st.binary(min_size=16, max_size=16)),
        created=draw(text),
        databases={tier: _database(tier, draw(generations), 1) for tier in TIERS},
        slots=slots,
        pending_rekey={tier: _database(tier, draw(generations), 2) for tier in pending},
        mac=draw(st.binary(min_size=32, max_size=32)),
    )


@FUZZ
@given(slot_files())
def test_valid_files_round_trip(slot_file: SlotFile) -> None:
    tried("vault.json: valid round trip")
    data = slot_file.to_bytes()
    assert SlotFile.from_bytes(data) == slot_file
    assert SlotFile.from_bytes(data).to_bytes() == data

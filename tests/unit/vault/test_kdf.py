"""Argon2id (RFC 9106 vectors), the floor, calibration, and HKDF labels."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.vault.errors import KdfBelowFloorError
from app.vault.kdf import (
    DEFAULT_PARAMS,
    FLOOR_PARAMS,
    HKDF_LABELS,
    KdfParams,
    argon2id,
    calibrate,
    derive_passphrase_secret,
    hkdf_slot_key,
    normalize_passphrase,
)


def test_argon2id_rfc9106_section_5_3_vector() -> None:
    tag = argon2id(
        b"\x01" * 32,
        b"\x02" * 16,
        memory_kib=32,
        iterations=3,
        parallelism=4,
        secret=b"\x03" * 8,
        associated_data=b"\x04" * 12,
    )
    assert tag.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def test_argon2id_without_secret_matches_argon2_cffi_high_level() -> None:
    from argon2.low_level import Type, hash_secret_raw

    ours = argon2id(b"password", b"somesalt" * 2, memory_kib=64, iterations=2, parallelism=1)
    theirs = hash_secret_raw(b"password", b"somesalt" * 2, 2, 64, 1, 32, Type.ID)
    assert ours == theirs


@pytest.mark.parametrize(
    ("memory_kib", "iterations", "parallelism"),
    [(65535, 3, 4), (65536, 2, 4), (65536, 3, 3), (19 * 1024, 2, 1)],
)
def test_params_below_floor_are_refused(memory_kib: int, iterations: int, parallelism: int) -> None:
    with pytest.raises(KdfBelowFloorError, match="below the floor"):
        KdfParams(memory_kib, iterations, parallelism)


def test_floor_and_default_values() -> None:
    assert KdfParams(64 * 1024, 3, 4) == FLOOR_PARAMS
    assert KdfParams(256 * 1024, 3, 4) == DEFAULT_PARAMS
    assert FLOOR_PARAMS.describe() == "64 MiB / t=3 / p=4"


def test_absurd_params_are_refused() -> None:
    with pytest.raises(KdfBelowFloorError, match="beyond"):
        KdfParams(64 * 1024 * 1024, 3, 4)


def _fake_machine(seconds_per_mib_pass: float) -> tuple[list[KdfParams], object]:
    calls: list[KdfParams] = []

    def measure(params: KdfParams) -> float:
        calls.append(params)
        return seconds_per_mib_pass * params.memory_kib / 1024 * params.iterations

    return calls, measure


def test_calibration_typical_machine_gets_default() -> None:
    # 0.25 s for 256 MiB x 3: t rises until about 0.75 s.
    calls, measure = _fake_machine(0.25 / (256 * 3))
    params = calibrate(measure)  # type: ignore[arg-type]
    assert params.memory_kib == 256 * 1024
    assert 0.5 <= 0.25 / 3 * params.iterations <= 1.0
    assert calls[0] == FLOOR_PARAMS


def test_calibration_slow_machine_lowers_memory_not_below_floor() -> None:
    _, measure = _fake_machine(2.0 / (64 * 3))  # the floor alone takes 2 s
    assert calibrate(measure) == FLOOR_PARAMS  # type: ignore[arg-type]


def test_calibration_medium_machine_halves_memory() -> None:
    _, measure = _fake_machine(1.6 / (256 * 3))  # 256 MiB takes 1.6 s
    params = calibrate(measure)  # type: ignore[arg-type]
    assert params == KdfParams(128 * 1024, 3, 4)


def test_calibration_fast_machine_raises_cost() -> None:
    _, measure = _fake_machine(0.15 / (256 * 3))
    params = calibrate(measure)  # type: ignore[arg-type]
    seconds = 0.15 / (256 * 3) * params.memory_kib / 1024 * params.iterations
    assert 0.5 <= seconds <= 1.0
    assert params.iterations > 3


def test_calibration_very_fast_machine_stops_at_the_caps() -> None:
    _, measure = _fake_machine(0.001 / (256 * 3))
    assert calibrate(measure) == KdfParams(1024 * 1024, 12, 4)  # type: ignore[arg-type]


def test_calibration_steps_down_when_confirmation_is_slow() -> None:
    answers = iter([0.05, 1.4, 0.8])  # floor; first choice too slow; one pass fewer fits

    def measure(params: KdfParams) -> float:
        return next(answers)

    assert calibrate(measure) == KdfParams(256 * 1024, 10, 4)


def _rfc5869(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.digest(b"\0" * 32, ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


HKDF_KAT = {
    "passphrase": "451e7b84e7f9cf16a83a6c37db979c408ceafcc1620a7295ecd00a3d40bd97d3",
    "security-key": "109b95dd42224d7087d78d85c4eee81b5452fb186bbe38d3c46cdb1edb7c211b",
    "keychain": "d5f1b9390a81a750d21b2b05e8b5ff60fd67c078c32345b53a66abd07c9a05dd",
    "touch-id": "27fdd9431ab995c1676c736e7a1f43e386e57360b434475062c87287babb3237",
    "recovery": "fd68d771869aeae8b77235f217c517061ff29efe9609b16c284efece95774e13",
    "database-wrap": "ed9780d4c7630d245811709a3a2b877e59c662369ad0c299a38f12bd09b706dc",
    "file-mac": "b70fad01aeeaad49880faa568f3ca1490ca0c9b1d4d919b9c2d68845af7b3aba",
}


@pytest.mark.parametrize("label", sorted(HKDF_KAT))
def test_hkdf_labels_known_answers(label: str) -> None:
    ikm = bytes(range(32))
    derived = hkdf_slot_key(ikm, label)
    assert derived.hex() == HKDF_KAT[label]
    assert derived == _rfc5869(ikm, HKDF_LABELS[label])


def test_hkdf_labels_are_distinct_and_versioned() -> None:
    assert set(HKDF_LABELS) == set(HKDF_KAT)
    assert len(set(HKDF_LABELS.values())) == len(HKDF_LABELS)
    assert all(label.startswith(b"hushchat/vault/v1/") for label in HKDF_LABELS.values())


def test_passphrase_is_nfc_normalized() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert normalize_passphrase(composed) == normalize_passphrase(decomposed)
    salt = hashlib.sha256(b"salt").digest()[:16]
    assert derive_passphrase_secret(composed, salt, FLOOR_PARAMS) == derive_passphrase_secret(
        decomposed, salt, FLOOR_PARAMS
    )

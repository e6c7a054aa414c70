"""Passphrase key derivation: Argon2id with a hard floor, calibration, and HKDF labels.

The floor is RFC 9106's second recommended option (64 MiB, t=3, p=4). Parameters are
calibrated once at vault creation so that a derivation takes about 0.5-1 s on the
machine; the chosen parameters are stored in the passphrase slot and checked against
the floor whenever the slot file is read.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from argon2 import low_level
from argon2.low_level import ARGON2_VERSION, Type, core, error_to_str, ffi
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.vault.errors import KdfBelowFloorError

# argon2-cffi re-exports the CFFI library object without listing it in __all__.
lib: Any = low_level.lib  # type: ignore[attr-defined]

__all__ = [
    "CALIBRATION_TARGET_SECONDS",
    "DEFAULT_PARAMS",
    "FLOOR_PARAMS",
    "HKDF_LABELS",
    "KdfParams",
    "SlotKind",
    "argon2id",
    "calibrate",
    "derive_passphrase_secret",
    "hkdf_slot_key",
    "normalize_passphrase",
]

SlotKind = Literal["passphrase", "security-key", "keychain", "touch-id", "recovery"]

#: HKDF-SHA256 ``info`` labels, one per use; pinned by known-answer tests.
HKDF_LABELS: Final[dict[str, bytes]] = {
    "passphrase": b"hushchat/vault/v1/slot-key/passphrase",
    "security-key": b"hushchat/vault/v1/slot-key/security-key",
    "keychain": b"hushchat/vault/v1/slot-key/keychain",
    "touch-id": b"hushchat/vault/v1/slot-key/touch-id",
    "recovery": b"hushchat/vault/v1/slot-key/recovery",
    "database-wrap": b"hushchat/vault/v1/database-key-wrap",
    "file-mac": b"hushchat/vault/v1/slot-file-mac",
}

CALIBRATION_TARGET_SECONDS: Final = (0.5, 1.0)
# A measured derivation must stay under this, leaving headroom below the 1 s unlock
# budget for timing noise and for the rest of the unlock.
_CALIBRATION_CEILING_SECONDS: Final = 0.85
_MAX_MEMORY_KIB: Final = 1024 * 1024  # 1 GiB: beyond that desktop machines start to swap
_MAX_ITERATIONS: Final = 12
# RFC 9106, section 4, second recommended option.
_FLOOR_MEMORY_KIB: Final = 64 * 1024
_FLOOR_ITERATIONS: Final = 3
_FLOOR_PARALLELISM: Final = 4


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters; construction refuses anything below the floor."""

    memory_kib: int
    iterations: int
    parallelism: int

    def __post_init__(self) -> None:
        if (
            self.memory_kib < _FLOOR_MEMORY_KIB
            or self.iterations < _FLOOR_ITERATIONS
            or self.parallelism < _FLOOR_PARALLELISM
        ):
            raise KdfBelowFloorError(
                f"Argon2id parameters {self.describe()} are below the floor "
                f"{_FLOOR_MEMORY_KIB // 1024} MiB / t={_FLOOR_ITERATIONS} / "
                f"p={_FLOOR_PARALLELISM}; a vault with them would be too cheap to attack. "
                "Use at least the floor."
            )
        if self.memory_kib > 4 * _MAX_MEMORY_KIB or self.iterations > 64 or self.parallelism > 64:
            raise KdfBelowFloorError(
                f"Argon2id parameters {self.describe()} are beyond what Hushchat accepts "
                "(at most 4 GiB, t=64, p=64); the slot file is probably damaged."
            )

    def describe(self) -> str:
        """Return the parameters in the usual notation, e.g. ``64 MiB / t=3 / p=4``."""
        return f"{self.memory_kib // 1024} MiB / t={self.iterations} / p={self.parallelism}"

    def to_json(self) -> dict[str, Any]:
        """Return the slot-file representation."""
        return {
            "algorithm": "argon2id",
            "version": ARGON2_VERSION,
            "memory_kib": self.memory_kib,
            "iterations": self.iterations,
            "parallelism": self.parallelism,
        }


FLOOR_PARAMS: Final = KdfParams(_FLOOR_MEMORY_KIB, _FLOOR_ITERATIONS, _FLOOR_PARALLELISM)
DEFAULT_PARAMS: Final = KdfParams(memory_kib=256 * 1024, iterations=3, parallelism=4)


def argon2id(
    password: bytes,
    salt: bytes,
    *,
    memory_kib: int,
    iterations: int,
    parallelism: int,
    length: int = 32,
    secret: bytes = b"",
    associated_data: bytes = b"",
) -> bytes:
    """Compute raw Argon2id (version 0x13) with optional secret and associated data.

    This is the bare primitive (no floor), so RFC 9106's test vectors can be checked
    against exactly the code the vault runs; callers use :func:`derive_passphrase_secret`.
    """
    out = ffi.new("uint8_t[]", length)
    keep_alive = [
        ffi.new("uint8_t[]", password or b"\0"),
        ffi.new("uint8_t[]", salt),
        ffi.new("uint8_t[]", secret or b"\0"),
        ffi.new("uint8_t[]", associated_data or b"\0"),
    ]
    context = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": length,
            "pwd": keep_alive[0],
            "pwdlen": len(password),
            "salt": keep_alive[1],
            "saltlen": len(salt),
            "secret": keep_alive[2] if secret else ffi.NULL,
            "secretlen": len(secret),
            "ad": keep_alive[3] if associated_data else ffi.NULL,
            "adlen": len(associated_data),
            "t_cost": iterations,
            "m_cost": memory_kib,
            "lanes": parallelism,
            "threads": parallelism,
            "allocate_cbk": ffi.NULL,
            "free_cbk": ffi.NULL,
            "flags": lib.ARGON2_DEFAULT_FLAGS,
            "version": ARGON2_VERSION,
        },
    )
    status = core(context, Type.ID.value)
    if status != lib.ARGON2_OK:
        raise MemoryError(f"Argon2id failed: {error_to_str(status)}")
    return bytes(ffi.buffer(out, length))


def normalize_passphrase(passphrase: str) -> bytes:
    """Encode a passphrase as NFC UTF-8, so the same text typed on any OS derives the same key."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_passphrase_secret(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    """Derive the 32-byte Argon2id output for a passphrase slot."""
    return argon2id(
        normalize_passphrase(passphrase),
        salt,
        memory_kib=params.memory_kib,
        iterations=params.iterations,
        parallelism=params.parallelism,
    )


def hkdf_slot_key(input_key: bytes, label: str) -> bytes:
    """Expand a slot secret (or the vault key) into a 256-bit key for one labelled use."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_LABELS[label]).derive(
        input_key
    )


def _time_one(params: KdfParams) -> float:
    start = time.perf_counter()
    derive_passphrase_secret("calibration", b"\0" * 16, params)
    return time.perf_counter() - start


def calibrate(measure: Callable[[KdfParams], float] = _time_one) -> KdfParams:
    """Pick Argon2id parameters that take about 0.5-1 s here, never below the floor.

    Start from the default (256 MiB, t=3, p=4) when the machine allows it, scale the
    iteration count up on fast machines (then memory, capped at 1 GiB / t=12, so a very
    fast machine may stay under 0.5 s), memory down (never below 64 MiB) on slow ones,
    and confirm the choice with one more measurement. ``measure`` is injectable for tests.
    """
    low, high = CALIBRATION_TARGET_SECONDS
    target = (low + high) / 2
    ceiling = _CALIBRATION_CEILING_SECONDS
    floor_seconds = max(measure(FLOOR_PARAMS), 1e-6)
    per_unit = floor_seconds / (FLOOR_PARAMS.memory_kib * FLOOR_PARAMS.iterations)

    memory = DEFAULT_PARAMS.memory_kib
    while (
        memory > FLOOR_PARAMS.memory_kib and per_unit * memory * FLOOR_PARAMS.iterations > ceiling
    ):
        memory //= 2
    iterations = FLOOR_PARAMS.iterations
    while iterations < _MAX_ITERATIONS and per_unit * memory * (iterations + 1) <= target:
        iterations += 1
    while (
        iterations == _MAX_ITERATIONS
        and memory * 2 <= _MAX_MEMORY_KIB
        and per_unit * memory * 2 * iterations <= target
    ):
        memory *= 2
    params = KdfParams(memory, iterations, FLOOR_PARAMS.parallelism)

    for _ in range(6):
        seconds = measure(params)
        if seconds <= ceiling:
            break
        if params.iterations > FLOOR_PARAMS.iterations:
            params = KdfParams(params.memory_kib, params.iterations - 1, params.parallelism)
        elif params.memory_kib > FLOOR_PARAMS.memory_kib:
            params = KdfParams(params.memory_kib // 2, params.iterations, params.parallelism)
        else:
            break  # a slow machine: the floor is the floor, even above one second
    return params

"""The vault: encrypted profile, key slots, unlock methods, lock and auto-lock.

The public surface is listed in ``__all__`` (checked by a test); everything else in
the package is an implementation detail. See ``docs/security.md`` for the design.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.vault.database import ConnectionFactory
from app.vault.errors import (
    DamagedSlotFileError,
    DatabaseDamagedError,
    KdfBelowFloorError,
    LastSlotError,
    NoSecretAvailableError,
    ProfileInUseError,
    RecoveryCodeTypoError,
    SlotNotFoundError,
    SqlcipherMissingError,
    UnlockMethodUnavailableError,
    VaultError,
    VaultExistsError,
    VaultLockedError,
    VaultNotFoundError,
    WrongSecretError,
)
from app.vault.idle import Clock, ManualClock, MonotonicClock
from app.vault.kdf import DEFAULT_PARAMS, FLOOR_PARAMS, KdfParams, calibrate
from app.vault.keychain import KeyringStore, SecretStore
from app.vault.profile import resolve_profile_dir
from app.vault.recovery_code import RecoveryCode
from app.vault.slots import TIERS, Tier
from app.vault.strength import PassphraseStrength, assess_passphrase
from app.vault.vault import DatabaseInfo, SlotInfo, Vault, VaultStatus

if TYPE_CHECKING:
    from app.vault.security_key import KeyPrompts, SecurityKey


def __getattr__(name: str) -> Any:
    """Import the FIDO2 part (and the ``fido2`` package) only when it is used."""
    if name in ("KeyPrompts", "SecurityKey"):
        from app.vault import security_key

        return getattr(security_key, name)
    raise AttributeError(f"module 'app.vault' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PARAMS",
    "FLOOR_PARAMS",
    "TIERS",
    "Clock",
    "ConnectionFactory",
    "DamagedSlotFileError",
    "DatabaseDamagedError",
    "DatabaseInfo",
    "KdfBelowFloorError",
    "KdfParams",
    "KeyPrompts",
    "KeyringStore",
    "LastSlotError",
    "ManualClock",
    "MonotonicClock",
    "NoSecretAvailableError",
    "PassphraseStrength",
    "ProfileInUseError",
    "RecoveryCode",
    "RecoveryCodeTypoError",
    "SecretStore",
    "SecurityKey",
    "SlotInfo",
    "SlotNotFoundError",
    "SqlcipherMissingError",
    "Tier",
    "UnlockMethodUnavailableError",
    "Vault",
    "VaultError",
    "VaultExistsError",
    "VaultLockedError",
    "VaultNotFoundError",
    "VaultStatus",
    "WrongSecretError",
    "assess_passphrase",
    "calibrate",
    "resolve_profile_dir",
]

"""The vault: encrypted profile, key slots, unlock methods, lock and auto-lock.

The public surface is listed in ``__all__`` (checked by a test); everything else in
the package is an implementation detail. See ``docs/security.md`` for the design.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        WeakPassphraseError,
        WrongSecretError,
    )
    from app.vault.idle import Clock, ManualClock, MonotonicClock
    from app.vault.kdf import DEFAULT_PARAMS, FLOOR_PARAMS, KdfParams, calibrate
    from app.vault.keychain import KeyringStore, SecretStore
    from app.vault.profile import resolve_profile_dir
    from app.vault.recovery_code import RecoveryCode
    from app.vault.security_key import KeyPrompts, SecurityKey
    from app.vault.slots import TIERS, Tier
    from app.vault.strength import PassphraseStrength, assess_passphrase
    from app.vault.vault import DatabaseInfo, Rotation, SlotInfo, TouchedKey, Vault, VaultStatus

# Where each public name lives. Importing ``app.vault.errors`` (say) must not load the
# whole package (SQLCipher, cryptography, keyring): names load on first use.
_HOMES: dict[str, str] = {
    "Clock": "app.vault.idle",
    "ConnectionFactory": "app.vault.database",
    "DEFAULT_PARAMS": "app.vault.kdf",
    "DamagedSlotFileError": "app.vault.errors",
    "DatabaseDamagedError": "app.vault.errors",
    "DatabaseInfo": "app.vault.vault",
    "FLOOR_PARAMS": "app.vault.kdf",
    "KdfBelowFloorError": "app.vault.errors",
    "KdfParams": "app.vault.kdf",
    "KeyPrompts": "app.vault.security_key",
    "KeyringStore": "app.vault.keychain",
    "LastSlotError": "app.vault.errors",
    "ManualClock": "app.vault.idle",
    "MonotonicClock": "app.vault.idle",
    "NoSecretAvailableError": "app.vault.errors",
    "PassphraseStrength": "app.vault.strength",
    "ProfileInUseError": "app.vault.errors",
    "RecoveryCode": "app.vault.recovery_code",
    "RecoveryCodeTypoError": "app.vault.errors",
    "Rotation": "app.vault.vault",
    "SecretStore": "app.vault.keychain",
    "SecurityKey": "app.vault.security_key",
    "SlotInfo": "app.vault.vault",
    "SlotNotFoundError": "app.vault.errors",
    "SqlcipherMissingError": "app.vault.errors",
    "TIERS": "app.vault.slots",
    "Tier": "app.vault.slots",
    "TouchedKey": "app.vault.vault",
    "UnlockMethodUnavailableError": "app.vault.errors",
    "Vault": "app.vault.vault",
    "VaultError": "app.vault.errors",
    "VaultExistsError": "app.vault.errors",
    "VaultLockedError": "app.vault.errors",
    "VaultNotFoundError": "app.vault.errors",
    "VaultStatus": "app.vault.vault",
    "WeakPassphraseError": "app.vault.errors",
    "WrongSecretError": "app.vault.errors",
    "assess_passphrase": "app.vault.strength",
    "calibrate": "app.vault.kdf",
    "resolve_profile_dir": "app.vault.profile",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'app.vault' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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
    "Rotation",
    "SecretStore",
    "SecurityKey",
    "SlotInfo",
    "SlotNotFoundError",
    "SqlcipherMissingError",
    "Tier",
    "TouchedKey",
    "UnlockMethodUnavailableError",
    "Vault",
    "VaultError",
    "VaultExistsError",
    "VaultLockedError",
    "VaultNotFoundError",
    "VaultStatus",
    "WeakPassphraseError",
    "WrongSecretError",
    "assess_passphrase",
    "calibrate",
    "resolve_profile_dir",
]

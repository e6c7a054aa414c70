"""The vault's exceptions, each a subclass of the app-wide tree in ``app.errors``.

Every message says what happened and what to do; none ever contains a secret::

    VaultError (app.errors)                    exit 4
    ├── VaultLockedError (app.errors)          the operation needs the vault unlocked
    ├── WrongSecretError (app.errors)          passphrase / code / key does not open it
    │   ├── RecoveryCodeTypoError              a group of the code fails its checksum
    │   └── NoSecretAvailableError             no key plugged in, no keychain entry
    ├── WeakPassphraseError                    a new passphrase scores below 3 of 4
    ├── VaultNotFoundError                     no vault in the profile directory
    ├── VaultExistsError                       ``init`` on a profile that has one
    ├── DamagedSlotFileError                   key-slot file truncated, edited, unknown
    │   └── KdfBelowFloorError                 passphrase KDF weaker than the floor
    ├── DatabaseDamagedError                   a SQLCipher file fails its checks
    ├── SqlcipherMissingError                  the SQLite build has no encryption
    ├── ProfileInUseError                      another process has the profile open
    ├── SlotNotFoundError                      ``remove-slot`` with an unknown id
    ├── LastSlotError                          refusing to remove the only key slot
    └── UnlockMethodUnavailableError           method not supported on this machine
"""

from __future__ import annotations

from app.errors import VaultError, VaultLockedError, WrongSecretError

__all__ = [
    "DamagedSlotFileError",
    "DatabaseDamagedError",
    "KdfBelowFloorError",
    "LastSlotError",
    "NoSecretAvailableError",
    "ProfileInUseError",
    "RecoveryCodeTypoError",
    "SlotNotFoundError",
    "SqlcipherMissingError",
    "UnlockMethodUnavailableError",
    "VaultError",
    "VaultExistsError",
    "VaultLockedError",
    "VaultNotFoundError",
    "WeakPassphraseError",
    "WrongSecretError",
]


class RecoveryCodeTypoError(WrongSecretError):
    """A group of the recovery code fails its checksum: most likely a typing slip."""


class NoSecretAvailableError(WrongSecretError):
    """The unlock method has nothing to offer (no security key, no keychain entry)."""


class WeakPassphraseError(VaultError):
    """A new passphrase is too easy to guess (zxcvbn score below 3) and was not allowed."""


class VaultNotFoundError(VaultError):
    """The profile directory holds no vault."""


class VaultExistsError(VaultError):
    """``init`` was asked to create a vault where one (or its files) already exists."""


class DamagedSlotFileError(VaultError):
    """The key-slot file is truncated, edited or of an unknown version."""


class KdfBelowFloorError(DamagedSlotFileError):
    """A passphrase slot names Argon2id parameters below the floor."""


class DatabaseDamagedError(VaultError):
    """A SQLCipher database fails to decrypt or fails its integrity check."""


class SqlcipherMissingError(VaultError):
    """The sqlite3 library in use has no SQLCipher encryption."""


class ProfileInUseError(VaultError):
    """Another process has the profile open."""


class SlotNotFoundError(VaultError):
    """No key slot has the requested id."""


class LastSlotError(VaultError):
    """Removing the slot would leave the vault with no way to unlock it."""


class UnlockMethodUnavailableError(VaultError):
    """The unlock method cannot be used on this machine or build."""

"""The OS keychain: Hushchat's one secret store, for key slots and provider API keys.

As an unlock method ("remember on this device", off by default) a keychain slot's
secret is 32 random bytes kept by the OS credential store through ``keyring`` (Secret
Service on Linux, Keychain on macOS, Credential Manager on Windows). Anyone who can
read the user's unlocked keychain can open the vault, which is why this is opt-in; it
never replaces the passphrase. Provider API keys live under the same service
(``app.api_keys``). Every entry is under ``KEYCHAIN_SERVICE``; a slot records the
service it used, so slots made by earlier versions keep working.

A keychain slot opens the Standard tier only (it wraps the Standard database key, not
the vault key): Private chats stay behind the passphrase, a security key or the
recovery code. On Windows, entries use local-machine persistence: keyring's default,
"enterprise", roams the credential to every machine the user signs in to in a domain.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, Protocol

from app.vault.errors import NoSecretAvailableError, UnlockMethodUnavailableError

__all__ = ["KEYCHAIN_SERVICE", "KeyringStore", "SecretStore"]

KEYCHAIN_SERVICE: Final = "Hushchat"


class SecretStore(Protocol):
    """A place that keeps small secrets by (service, account)."""

    def store(self, service: str, account: str, secret: bytes) -> None:
        """Keep ``secret`` under (service, account), replacing any previous one."""

    def load(self, service: str, account: str) -> bytes:
        """Return the secret or raise :class:`NoSecretAvailableError`."""

    def delete(self, service: str, account: str) -> None:
        """Forget the secret; no error when it is already gone."""


def _unavailable(error: Exception) -> UnlockMethodUnavailableError:
    return UnlockMethodUnavailableError(
        f"The OS keychain is not available ({type(error).__name__}); on Linux, start a "
        "Secret Service such as gnome-keyring, or unlock with your passphrase."
    )


def _prefer_local_persistence(backend: Any) -> None:
    """Keep Windows Credential Manager entries on this machine (not roaming).

    keyring's ``WinVaultKeyring`` writes with ``CRED_PERSIST_ENTERPRISE`` unless told
    otherwise; ``"local machine"`` is ``CRED_PERSIST_LOCAL_MACHINE``. A chainer backend
    (several backends at once) is searched for it too.
    """
    try:
        from keyring.backends.Windows import WinVaultKeyring
    except ImportError:  # pragma: no cover - keyring always ships the module
        return
    for candidate in (backend, *getattr(backend, "backends", ())):
        if isinstance(candidate, WinVaultKeyring):
            candidate.persist = "local machine"


class KeyringStore:
    """:class:`SecretStore` on the ``keyring`` package's default backend.

    ``keyring`` is imported on first use: it loads its backends at import time, which
    costs start-up time for every user, most of whom never enable this slot.
    """

    def store(self, service: str, account: str, secret: bytes) -> None:
        """Keep the secret in the OS keychain (base64, as keyring stores text)."""
        import keyring
        import keyring.errors

        try:
            _prefer_local_persistence(keyring.get_keyring())
            keyring.set_password(service, account, base64.b64encode(secret).decode("ascii"))
        except keyring.errors.KeyringError as error:
            raise _unavailable(error) from None

    def load(self, service: str, account: str) -> bytes:
        """Read the secret back from the OS keychain."""
        import keyring
        import keyring.errors

        try:
            value = keyring.get_password(service, account)
        except keyring.errors.KeyringError as error:
            raise _unavailable(error) from None
        if value is None:
            raise NoSecretAvailableError(
                "This device's keychain has no entry for the vault; unlock with your "
                "passphrase (and run 'hushchat vault add-keychain' to remember it again)."
            )
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise NoSecretAvailableError(
                "The keychain entry for the vault is not in Hushchat's format; unlock with "
                "your passphrase and add the keychain again."
            ) from None

    def delete(self, service: str, account: str) -> None:
        """Remove the entry; an entry that is already gone is fine."""
        import keyring
        import keyring.errors

        try:
            keyring.delete_password(service, account)
        except keyring.errors.PasswordDeleteError:
            return
        except keyring.errors.KeyringError as error:
            raise _unavailable(error) from None

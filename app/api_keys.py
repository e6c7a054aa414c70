"""Provider API keys: from the config file's ``${VAR}`` references, the vault or the OS
keychain.

A key typed into the window is kept in one of two places, and the config file names
only the place, never the key:

* ``api_key: vault``: in the Standard database (``standard.db``, SQLCipher, so
  encrypted with the Standard tier's key), one row of its ``vault_meta`` table named
  ``provider-key/<provider_name>`` (:class:`VaultKeyStore`). It is there whenever
  Standard chats are open, on every computer without a keychain, and goes wherever
  the database goes (rekey, key rotation, backups);
* ``api_key: keychain``: in the OS keychain, through the one secret store that also
  serves the vault's keychain slots (:class:`app.vault.keychain.SecretStore`, service
  ``KEYCHAIN_SERVICE``, account ``provider/<provider_name>``).

By default (:data:`AUTOMATIC`) a key goes to the keychain when one answers and to the
vault when none does (Linux without a Secret Service, containers); either can be chosen
and a key moved between them (:meth:`ApiKeys.move`). Keychain and database calls block
(D-Bus, Keychain Services, SQLCipher), so :meth:`ApiKeys.resolve` runs them on the
runner's worker pool, never on the UI thread, and keeps a key in memory until
:meth:`ApiKeys.forget` (the session calls it on lock) so a turn does not ask again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final, Literal, Protocol

from app.config import LoadedConfig
from app.errors import ConfigError
from app.executor import BlockingRunner
from app.store.vault_keys import VaultKeyStore
from app.vault.errors import (
    NoSecretAvailableError,
    UnlockMethodUnavailableError,
    VaultError,
)
from app.vault.keychain import KEYCHAIN_SERVICE, KeyringStore, SecretStore
from providers import ProviderSpec

__all__ = [
    "AUTOMATIC",
    "KEY_PLACES",
    "ApiKeys",
    "KeyPlace",
    "KeyedEntry",
    "VaultKeyStore",
    "keychain_account",
    "provider_spec",
]

log = logging.getLogger(__name__)

KeyPlace = Literal["vault", "keychain"]
#: The places a typed key can be kept, as the config file names them (``api_key: …``).
KEY_PLACES: Final[tuple[KeyPlace, ...]] = ("vault", "keychain")
#: "The keychain if one answers, else the vault" (what :meth:`ApiKeys.save` does by default).
AUTOMATIC: Final = None

# Where Hushchat 0.1 kept a provider's key: this service, account = the provider's name,
# the key as plain text. Read once and moved to the current place (:meth:`_migrate`).
LEGACY_KEYCHAIN_SERVICE = "hushchat-provider"

_NO_KEYCHAIN: Final = (
    "This computer has no OS keychain to keep the API key in; keep it in the vault instead."
)
_NO_KEYCHAIN_NOR_VAULT: Final = (
    "This computer has no OS keychain to keep the API key in; put the key in an environment "
    "variable and write api_key: ${VAR} in the config file."
)


class KeyedEntry(Protocol):
    """What resolving a key needs of a config entry: an llms entry (``LLMEntry``) or a
    speech engine (``TTSEntry``, whose ``provider_name`` is ``tts/<name>``)."""

    @property
    def provider_name(self) -> str: ...

    @property
    def api_key(self) -> str | None: ...


def keychain_account(provider_name: str) -> str:
    """The keychain account that holds the API key of ``provider_name``."""
    return f"provider/{provider_name}"


class ApiKeys:
    """Resolves, saves, moves and deletes provider API keys; caches resolved keys.

    ``vault_connect`` gives a connection to the Standard database for one operation, as
    a context manager (the session passes its vault's ``connection``); without it (the
    command line's ``provider_spec``) keys kept in the vault cannot be read and the error
    says so.
    """

    def __init__(
        self,
        store: SecretStore | None = None,
        runner: BlockingRunner | None = None,
        *,
        vault_connect: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self._store: SecretStore = store or KeyringStore()
        self._vault = VaultKeyStore(vault_connect) if vault_connect is not None else None
        self._runner = runner
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    async def resolve(self, entry: KeyedEntry) -> str | None:
        """The key of ``entry``, reading the keychain or vault off the event loop's thread."""
        if entry.api_key not in KEY_PLACES:
            return self.resolve_now(entry)
        with self._lock:
            cached = self._cache.get(entry.provider_name)
        if cached is not None:
            return cached
        if self._runner is None:
            return self.resolve_now(entry)
        return await self._runner.blocking(self.resolve_now, entry)

    def resolve_now(self, entry: KeyedEntry) -> str | None:
        """The key of ``entry`` (blocking: the keychain or the vault may be asked)."""
        if not entry.api_key:
            return None
        if entry.api_key not in KEY_PLACES:
            return entry.api_key  # ${VAR} was substituted when the config was loaded
        name = entry.provider_name
        with self._lock:
            if name in self._cache:
                return self._cache[name]
        key = self._load(name, entry.api_key)
        with self._lock:
            self._cache[name] = key
        return key

    def _load(self, name: str, place: str) -> str:
        return self._load_from_vault(name) if place == "vault" else self._load_from_keychain(name)

    def _load_from_vault(self, name: str) -> str:
        if self._vault is None:
            raise ConfigError(
                f"{name}: its API key is kept in the vault, which this command does not open; "
                "use the window, or write api_key: ${VAR} for it in the config file"
            )
        try:
            key = self._vault.load(name)
        except VaultError as error:
            raise ConfigError(f"{name}: its API key is kept in the vault; {error}") from error
        if key is None:
            raise ConfigError(
                f"{name}: no API key for it in the vault; enter the key again in Settings, "
                "Providers"
            )
        return key

    def _load_from_keychain(self, name: str) -> str:
        try:
            return self._store.load(KEYCHAIN_SERVICE, keychain_account(name)).decode("utf-8")
        except UnlockMethodUnavailableError as error:
            raise ConfigError(
                f"{name}: the OS keychain is not available, so its API key cannot be read; "
                "enter the key again in Settings, Providers, to keep it in the vault, or write "
                "api_key: ${VAR} for this provider in the config file"
            ) from error
        except (NoSecretAvailableError, UnicodeDecodeError) as error:
            legacy = self._migrate(name)
            if legacy is not None:
                return legacy
            raise ConfigError(
                f"{name}: no API key for it in the OS keychain; enter the key again in "
                "Settings, Providers, or write api_key: ${VAR} in the config file"
            ) from error

    def _migrate(self, name: str) -> str | None:
        """The key Hushchat 0.1 saved for ``name``, moved to today's place; None if none.

        Only the OS keychain can hold such an entry (an injected store is not it)."""
        if not isinstance(self._store, KeyringStore):
            return None
        import keyring
        import keyring.errors

        try:
            key = keyring.get_password(LEGACY_KEYCHAIN_SERVICE, name)
        except keyring.errors.KeyringError:
            log.warning("could not look for %s's API key where Hushchat 0.1 kept it", name)
            return None
        if not key:
            return None
        self.save(name, key, "keychain")
        try:
            keyring.delete_password(LEGACY_KEYCHAIN_SERVICE, name)
        except keyring.errors.KeyringError:
            log.warning("moved %s's API key; its old keychain entry could not be removed", name)
        log.info("moved %s's API key to the keychain entry of this version", name)
        return key

    def save(self, provider_name: str, key: str, place: KeyPlace | None = AUTOMATIC) -> KeyPlace:
        """Keep ``key`` (blocking) and return where: ``place``, or by default the OS
        keychain when one answers, else the vault. ConfigError (one sentence saying
        what to do) when the chosen place cannot keep it."""
        if place is None:
            try:
                self._store_in_keychain(provider_name, key)
                place = "keychain"
            except UnlockMethodUnavailableError:
                if self._vault is None:
                    raise ConfigError(_NO_KEYCHAIN_NOR_VAULT) from None
                log.info(
                    "no OS keychain answered; keeping %s's API key in the vault", provider_name
                )
                self._store_in_vault(provider_name, key)
                place = "vault"
        elif place == "keychain":
            try:
                self._store_in_keychain(provider_name, key)
            except UnlockMethodUnavailableError:
                raise ConfigError(_NO_KEYCHAIN) from None
        else:
            self._store_in_vault(provider_name, key)
        with self._lock:
            self._cache[provider_name] = key
        return place

    def _store_in_keychain(self, provider_name: str, key: str) -> None:
        self._store.store(KEYCHAIN_SERVICE, keychain_account(provider_name), key.encode("utf-8"))

    def _store_in_vault(self, provider_name: str, key: str) -> None:
        if self._vault is None:
            raise ConfigError(
                "The vault is not open, so it cannot keep the API key; unlock it first."
            )
        try:
            self._vault.store(provider_name, key)
        except VaultError as error:
            raise ConfigError(f"The vault could not keep the API key: {error}") from error

    def move(self, old_name: str, old_place: KeyPlace, new_name: str, new_place: KeyPlace) -> None:
        """Move a kept key to another place and/or provider name (blocking); the old copy is
        removed only once the new one is kept."""
        if (old_name, old_place) == (new_name, new_place):
            return
        with self._lock:
            self._cache.pop(old_name, None)
        key = self._load(old_name, old_place)
        self.save(new_name, key, new_place)
        self._delete_from(old_name, old_place)
        if old_name != new_name:
            with self._lock:
                self._cache.pop(old_name, None)
        log.info("moved %s's API key to the %s", new_name, new_place)

    def delete(self, provider_name: str) -> None:
        """Remove the key of ``provider_name`` from the keychain and the vault (blocking);
        gone is fine, and so is a place that is not there."""
        with self._lock:
            self._cache.pop(provider_name, None)
        for place in KEY_PLACES:
            self._delete_from(provider_name, place)

    def _delete_from(self, provider_name: str, place: KeyPlace) -> None:
        if place == "keychain":
            try:
                self._store.delete(KEYCHAIN_SERVICE, keychain_account(provider_name))
            except UnlockMethodUnavailableError:
                log.info("no OS keychain to remove %s's API key from", provider_name)
        elif self._vault is not None:
            try:
                self._vault.delete(provider_name)
            except VaultError as error:
                log.warning(
                    "could not remove %s's API key from the vault: %s", provider_name, error
                )

    def forget(self) -> None:
        """Drop every cached key from memory (on lock)."""
        with self._lock:
            self._cache.clear()


def provider_spec(loaded: LoadedConfig, name: str | None = None) -> ProviderSpec:
    """The spec of a configured provider, its key resolved (blocking: for the CLI)."""
    entry = loaded.config.llm(name)
    return entry.to_spec(ApiKeys().resolve_now(entry))

"""Provider API keys: from the config file's ``${VAR}`` references or the OS keychain.

One secret store serves the vault's keychain slots and provider keys
(:class:`app.vault.keychain.SecretStore`, service ``KEYCHAIN_SERVICE``); a provider's
key is kept under the account ``provider/<provider_name>`` and the config file says
only ``api_key: keychain``. Keychain calls block (D-Bus on Linux, Keychain Services
on macOS), so :meth:`ApiKeys.resolve` runs them on the runner's worker pool, never on
the UI thread, and keeps a key in memory until :meth:`forget` (the session calls it
on lock) so a turn does not ask the keychain again.
"""

from __future__ import annotations

import logging
import threading

from app.config import LLMEntry, LoadedConfig
from app.errors import ConfigError
from app.executor import BlockingRunner
from app.vault.errors import NoSecretAvailableError, UnlockMethodUnavailableError
from app.vault.keychain import KEYCHAIN_SERVICE, KeyringStore, SecretStore
from providers import ProviderSpec

__all__ = ["ApiKeys", "keychain_account", "provider_spec"]

log = logging.getLogger(__name__)


# Where Hushchat 0.1 kept a provider's key: this service, account = the provider's name,
# the key as plain text. Read once and moved to the current place (:meth:`_migrate`).
LEGACY_KEYCHAIN_SERVICE = "hushchat-provider"


def keychain_account(provider_name: str) -> str:
    """The keychain account that holds the API key of ``provider_name``."""
    return f"provider/{provider_name}"


class ApiKeys:
    """Resolves, saves and deletes provider API keys; caches resolved keys in memory."""

    def __init__(self, store: SecretStore | None = None, runner: BlockingRunner | None = None):
        self._store: SecretStore = store or KeyringStore()
        self._runner = runner
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    async def resolve(self, entry: LLMEntry) -> str | None:
        """The key of ``entry``, reading the keychain off the event loop's thread."""
        if entry.api_key != "keychain":
            return self.resolve_now(entry)
        with self._lock:
            cached = self._cache.get(entry.provider_name)
        if cached is not None:
            return cached
        if self._runner is None:
            return self.resolve_now(entry)
        return await self._runner.blocking(self.resolve_now, entry)

    def resolve_now(self, entry: LLMEntry) -> str | None:
        """The key of ``entry`` (blocking: the keychain may be asked)."""
        if not entry.api_key:
            return None
        if entry.api_key != "keychain":
            return entry.api_key  # ${VAR} was substituted when the config was loaded
        name = entry.provider_name
        with self._lock:
            if name in self._cache:
                return self._cache[name]
        try:
            key = self._store.load(KEYCHAIN_SERVICE, keychain_account(name)).decode("utf-8")
        except UnlockMethodUnavailableError as error:
            raise ConfigError(
                f"{name}: the OS keychain is not available, so its API key cannot be read; "
                "set the key in an environment variable and write api_key: ${VAR} for this "
                "provider in the config file"
            ) from error
        except (NoSecretAvailableError, UnicodeDecodeError) as error:
            legacy = self._migrate(name)
            if legacy is not None:
                with self._lock:
                    self._cache[name] = legacy
                return legacy
            raise ConfigError(
                f"{name}: no API key for it in the OS keychain; enter the key again in "
                "Settings, Providers, or write api_key: ${VAR} in the config file"
            ) from error
        with self._lock:
            self._cache[name] = key
        return key

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
        self.save(name, key)
        try:
            keyring.delete_password(LEGACY_KEYCHAIN_SERVICE, name)
        except keyring.errors.KeyringError:
            log.warning("moved %s's API key; its old keychain entry could not be removed", name)
        log.info("moved %s's API key to the keychain entry of this version", name)
        return key

    def save(self, provider_name: str, key: str) -> None:
        """Keep ``key`` in the OS keychain (blocking). ConfigError when there is none."""
        try:
            self._store.store(
                KEYCHAIN_SERVICE, keychain_account(provider_name), key.encode("utf-8")
            )
        except UnlockMethodUnavailableError as error:
            raise ConfigError(
                "This computer has no OS keychain to keep the API key in (on Linux: no "
                "Secret Service such as gnome-keyring is running). Put the key in an "
                "environment variable instead and write api_key: ${VAR} in the config file."
            ) from error
        with self._lock:
            self._cache[provider_name] = key

    def delete(self, provider_name: str) -> None:
        """Remove the key of ``provider_name`` from the keychain (blocking); gone is fine."""
        with self._lock:
            self._cache.pop(provider_name, None)
        try:
            self._store.delete(KEYCHAIN_SERVICE, keychain_account(provider_name))
        except UnlockMethodUnavailableError:
            log.warning("could not remove the API key of %s: no OS keychain", provider_name)

    def forget(self) -> None:
        """Drop every cached key from memory (on lock)."""
        with self._lock:
            self._cache.clear()


def provider_spec(loaded: LoadedConfig, name: str | None = None) -> ProviderSpec:
    """The spec of a configured provider, its key resolved (blocking: for the CLI)."""
    entry = loaded.config.llm(name)
    return entry.to_spec(ApiKeys().resolve_now(entry))

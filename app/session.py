"""The unlocked state of one window: vault, library, chat service and their runner.

A :class:`Session` is plain Python (no Qt) so widgets and tests share one object
that says whether the vault is open and hands out the services. Everything that
blocks (Argon2, SQLCipher, keyring, FIDO2) runs through ``runner``; the async
methods here are what widgets start with ``app.ui.tasks.start``.

Lifecycle::

    Session(config, profile_dir)
      ├── create_vault(passphrase)        first run: creates, unlocks, opens the library
      ├── open_vault()                    later runs: take the profile lock (locked)
      ├── unlock_with_passphrase(...)     / recovery code / security key / keychain / Touch ID
      ├── lock()                          close the library (Ephemeral chats vanish), drop keys
      └── close()                         lock, release the profile, stop the runner threads

Idle auto-lock is tracked here (``record_activity``/``lock_if_idle``) with the minutes
from the config's ``ui.auto_lock_minutes``, so a settings change applies at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.chat.service import ChatService, ProviderFactory
from app.config import LoadedConfig
from app.errors import VaultLockedError
from app.executor import BlockingRunner
from app.store.library import Library
from app.tiers import Tier
from app.vault.idle import Clock, IdleTimer, MonotonicClock
from app.vault.kdf import KdfParams
from app.vault.keychain import SecretStore
from app.vault.recovery_code import RecoveryCode
from app.vault.slots import SLOT_FILE_NAME
from app.vault.vault import SlotInfo, Vault

if TYPE_CHECKING:  # fido2 loads only when a security key is used (start-up time)
    from app.vault.security_key import KeyPrompts, SecurityKey

__all__ = ["Session"]

log = logging.getLogger(__name__)


class Session:
    """One profile's vault and, while unlocked, its library and chat service."""

    def __init__(
        self,
        config: LoadedConfig,
        profile_dir: Path,
        *,
        runner: BlockingRunner | None = None,
        clock: Clock | None = None,
        secret_store: SecretStore | None = None,
        kdf: KdfParams | None = None,
        provider_factory: ProviderFactory | None = None,
    ) -> None:
        """``kdf`` fixes the Argon2id parameters of new passphrase slots (tests use the
        floor); by default they are calibrated on this machine. ``provider_factory``
        replaces ``providers.create_provider`` (scripted answers for screenshots)."""
        self.config = config
        self.profile_dir = Path(profile_dir)
        self.runner = runner or BlockingRunner()
        self.vault: Vault | None = None
        self.kdf = kdf
        self._provider_factory = provider_factory
        self._secret_store = secret_store
        self._library: Library | None = None
        self._service: ChatService | None = None
        self._clock = clock or MonotonicClock()
        self._opening: asyncio.Lock | None = None
        self._idle = IdleTimer(self._idle_seconds(), self._clock)
        # How a security key is found: SecurityKey.discover (USB HID / Windows Hello) by
        # default; tests put a software authenticator here.
        self.security_key_factory: Callable[[KeyPrompts], SecurityKey] | None = None

    # ----------------------------------------------------------------- state

    @property
    def vault_exists(self) -> bool:
        """Whether the profile already holds a vault (else: first run)."""
        return (self.profile_dir / SLOT_FILE_NAME).exists()

    @property
    def is_unlocked(self) -> bool:
        """Whether the library and chat service are available."""
        return self._service is not None and self.vault is not None and not self.vault.is_locked

    @property
    def library(self) -> Library:
        """The chats of all tiers; raises :class:`VaultLockedError` while locked."""
        if self._library is None:
            raise VaultLockedError("The vault is locked; unlock it first.")
        return self._library

    @property
    def service(self) -> ChatService:
        """The chat service; raises :class:`VaultLockedError` while locked."""
        if self._service is None:
            raise VaultLockedError("The vault is locked; unlock it first.")
        return self._service

    def slots(self) -> list[SlotInfo]:
        """The vault's key slots (no secret needed)."""
        return self.vault.slots() if self.vault is not None else []

    def has_slot(self, kind: str) -> bool:
        """Whether the vault has a key slot of ``kind`` (passphrase, security-key, ...)."""
        return any(slot.kind == kind for slot in self.slots())

    @property
    def config_path(self) -> Path:
        """The config file settings are written to (created on first save)."""
        from app.config import default_config_path

        return self.config.path or default_config_path()

    # ----------------------------------------------------------------- vault

    async def create_vault(self, passphrase: str) -> RecoveryCode:
        """Create the vault (first run), unlock it and open the library.

        Returns the recovery code, which is never stored: show it to the user once.
        """
        vault, code = await self.runner.blocking(
            Vault.create,
            self.profile_dir,
            passphrase,
            kdf=self.kdf,
            secret_store=self._secret_store,
        )
        self.vault = vault
        await self._open_library()
        return code

    async def open_vault(self) -> None:
        """Open the existing vault locked (takes the profile's process lock).

        Raises ``ProfileInUseError`` when another Hushchat has the profile open.
        """
        if self._opening is None:  # one open at a time: a second would fail on the lock
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.vault is None:
                self.vault = await self.runner.blocking(
                    Vault.open, self.profile_dir, secret_store=self._secret_store
                )

    async def unlock_with_passphrase(self, passphrase: str) -> None:
        """Unlock with the passphrase; ``WrongSecretError`` leaves everything as it was."""
        vault = await self._opened()
        await self.runner.blocking(vault.unlock_with_passphrase, passphrase)
        await self._open_library()

    async def unlock_with_recovery_code(self, code: str) -> None:
        """Unlock with the typed recovery code."""
        vault = await self._opened()
        await self.runner.blocking(vault.unlock_with_recovery_code, code)
        await self._open_library()

    async def find_security_key(self, prompts: KeyPrompts) -> SecurityKey:
        """Find a plugged-in security key (or Windows Hello); NoSecretAvailableError if none."""
        factory = self.security_key_factory
        if factory is None:
            from app.vault.security_key import SecurityKey

            factory = SecurityKey.discover
        return await self.runner.blocking(factory, prompts)

    async def unlock_with_security_key(self, key: SecurityKey) -> None:
        """Unlock with an enrolled FIDO2 key (prompts go through the key's ``KeyPrompts``)."""
        vault = await self._opened()
        await self.runner.blocking(vault.unlock_with_security_key, key)
        await self._open_library()

    async def unlock_with_keychain(self) -> None:
        """Unlock with the secret remembered in this device's keychain."""
        vault = await self._opened()
        await self.runner.blocking(vault.unlock_with_keychain)
        await self._open_library()

    async def unlock_with_touch_id(self) -> None:
        """Unlock with the Touch ID protected keychain item (macOS)."""
        vault = await self._opened()
        await self.runner.blocking(vault.unlock_with_touch_id)
        await self._open_library()

    async def _opened(self) -> Vault:
        await self.open_vault()
        assert self.vault is not None
        return self.vault

    async def _open_library(self) -> None:
        vault = self.vault
        assert vault is not None

        def open_library() -> Library:
            return Library(vault.connect(Tier.STANDARD), vault.connect(Tier.PRIVATE))

        try:
            library = await self.runner.db(open_library)
        except BaseException:
            vault.lock()
            raise
        self._library = library
        if self._provider_factory is None:
            self._service = ChatService(library, self.config, runner=self.runner)
        else:
            self._service = ChatService(
                library, self.config, runner=self.runner, provider_factory=self._provider_factory
            )
        self._idle.record_activity()
        log.info("session unlocked")

    def lock(self) -> None:
        """Close the library (Ephemeral chats vanish) and drop every key from memory."""
        library, service = self._library, self._service
        self._library, self._service = None, None
        if service is not None:
            service.cancel_titles()
        if library is not None:
            # On the database thread, after any query still running there.
            self.runner.db_sync(library.close)
        if self.vault is not None:
            self.vault.lock()

    def close(self) -> None:
        """Lock, release the profile for other processes and stop the runner threads."""
        self.lock()
        if self.vault is not None:
            self.vault.close()
            self.vault = None
        self.runner.shutdown()

    # ----------------------------------------------------------------- key slots

    async def change_passphrase(self, new_passphrase: str) -> SlotInfo:
        """Rewrap the vault key under a new passphrase (databases untouched)."""
        vault = await self._unlocked_vault()
        return await self.runner.blocking(vault.change_passphrase, new_passphrase, kdf=self.kdf)

    async def regenerate_recovery_code(self) -> RecoveryCode:
        """Replace the recovery slot; the old code stops working."""
        vault = await self._unlocked_vault()
        return await self.runner.blocking(vault.regenerate_recovery_code)

    async def add_security_key(self, key: SecurityKey, label: str) -> SlotInfo:
        """Enrol a FIDO2 credential as another way to unlock."""
        vault = await self._unlocked_vault()
        return await self.runner.blocking(vault.add_security_key, key, label=label)

    async def add_keychain(self) -> SlotInfo:
        """Remember the vault in this device's OS keychain (convenience, off by default)."""
        vault = await self._unlocked_vault()
        return await self.runner.blocking(vault.add_keychain)

    async def remove_slot(self, slot_id: str) -> None:
        """Remove a key slot; ``LastSlotError`` refuses the last one."""
        vault = await self._unlocked_vault()
        await self.runner.blocking(vault.remove_slot, slot_id)

    async def _unlocked_vault(self) -> Vault:
        if self.vault is None or self.vault.is_locked:
            raise VaultLockedError("The vault is locked; unlock it first.")
        return self.vault

    # ----------------------------------------------------------------- config and idle

    def apply_config(self, config: LoadedConfig) -> None:
        """Use a re-read config (providers, auto-lock) from now on."""
        self.config = config
        if self._service is not None:
            self._service.config = config
        self._idle = IdleTimer(self._idle_seconds(), self._clock)

    def _idle_seconds(self) -> float | None:
        ui = getattr(self.config.config, "ui", None)
        minutes = getattr(ui, "auto_lock_minutes", 0) if ui is not None else 0
        return float(minutes) * 60.0 if minutes else None

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Override the idle timeout (tests and the settings dialog's preview)."""
        self._idle = IdleTimer(seconds, self._clock)

    def record_activity(self) -> None:
        """The user did something: restart the idle period."""
        self._idle.record_activity()
        if self.vault is not None and not self.vault.is_locked:
            self.vault.record_activity()

    def seconds_until_idle_lock(self) -> float | None:
        """Seconds until :meth:`lock_if_idle` would lock; None without a timeout."""
        return self._idle.seconds_left()

    def lock_if_idle(self) -> bool:
        """Lock when unlocked and idle past the timeout; return whether it locked now."""
        if not self.is_unlocked or not self._idle.is_expired():
            return False
        log.info("idle for %s s, locking", self._idle.timeout_seconds)
        self.lock()
        return True

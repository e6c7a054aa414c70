"""The front door: one profile's vault, library, chat service and their runner.

The window and every ``hushchat`` subcommand go through a :class:`Session`: it
opens the vault and the library, holds the chat service (reads and writes of
chats), its change bus, the provider API keys and the runner. It is plain Python
(no Qt). Everything that blocks (Argon2, SQLCipher, keyring, FIDO2) runs through
``runner``; widgets start the async methods with ``app.ui.tasks.start``, commands
with ``asyncio.run``.

Lifecycle::

    Session(config, profile_dir)
      ├── create_vault(passphrase)        first run: creates, unlocks, opens the library
      ├── open_vault()                    later runs: take the profile lock (locked)
      ├── unlock_with_passphrase(...)     / recovery code / security key / keychain / Touch ID
      │                                   (keychain and Touch ID open the Standard tier only:
      │                                   ``locked_tiers`` then lists Private)
      ├── rotate_keys(...)                new vault and database keys; chats reopen
      ├── lock()                          close the library (Ephemeral chats vanish), drop keys
      └── close()                         lock, release the profile, stop the runner threads

    Session.ephemeral_only(config)        no vault at all: Ephemeral chats in memory

Idle auto-lock uses the vault's idle timer (``record_activity``/``lock_if_idle``) with
the minutes from the config's ``ui.auto_lock_minutes``; a settings change applies at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.api_keys import ApiKeys, KeyPlace
from app.chat.service import ChatService, ProviderFactory
from app.config import LoadedConfig
from app.errors import VaultLockedError
from app.executor import BlockingRunner
from app.store.chats import StorageError
from app.store.library import UNDO_SECONDS, Library
from app.store.vault_keys import VaultMeta
from app.tiers import Tier
from app.vault.idle import Clock, MonotonicClock
from app.vault.kdf import KdfParams, SlotKind
from app.vault.keychain import KeyringStore, SecretStore
from app.vault.recovery_code import RecoveryCode
from app.vault.slots import SLOT_FILE_NAME, TIERS
from app.vault.vault import Rotation, SlotInfo, TouchedKey, Vault

if TYPE_CHECKING:  # fido2 loads only when a security key is used (start-up time)
    from app.agent.server import AgentServer
    from app.sync.service import SyncService
    from app.vault.security_key import KeyPrompts, SecurityKey

__all__ = ["Session"]

log = logging.getLogger(__name__)

# vault_meta row: storing the recovery code was put off and not confirmed since.
#: How long ``aclose`` lets cancelled title tasks finish (they stop at their next await).
_TITLES_SETTLE_SECONDS = 1.0
_RECOVERY_UNCONFIRMED = "recovery-code/unconfirmed"


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
        # One secret store for the vault's keychain slots and the providers' API keys.
        self._secret_store: SecretStore = secret_store or KeyringStore()
        self.api_keys = ApiKeys(
            self._secret_store, self.runner, vault_connect=self._connect_standard
        )
        self._meta = VaultMeta(self._connect_standard)
        self._library: Library | None = None
        self._service: ChatService | None = None
        self._sync: SyncService | None = None
        self._clock = clock or MonotonicClock()
        self._opening: asyncio.Lock | None = None
        self._agent: AgentServer | None = None
        self._agent_on_locked: Callable[[str], None] | None = None
        self._idle_timeout = self._configured_idle_seconds()
        # How a security key is found: SecurityKey.discover (USB HID / Windows Hello) by
        # default; tests put a software authenticator here.
        self.security_key_factory: Callable[[KeyPrompts], SecurityKey] | None = None

    def _connect_standard(self) -> AbstractContextManager[Any]:
        """A connection to the Standard database for one operation (API keys and flags
        kept in the vault; the vault does not lock under it)."""
        if self.vault is None:
            raise VaultLockedError("The vault is not open; unlock it first.")
        return self.vault.connection(Tier.STANDARD)

    @classmethod
    def ephemeral_only(
        cls, config: LoadedConfig, *, runner: BlockingRunner | None = None
    ) -> Session:
        """A session without a vault: only Ephemeral chats, in memory (``chat --tier
        ephemeral`` never opens the vault, so it leaves nothing on disk)."""
        session = cls(config, Path(), runner=runner)
        session._start_service(Library())
        return session

    # ----------------------------------------------------------------- state

    @property
    def vault_exists(self) -> bool:
        """Whether the profile already holds a vault (else: first run)."""
        return (self.profile_dir / SLOT_FILE_NAME).exists()

    @property
    def is_unlocked(self) -> bool:
        """Whether the library and chat service are available."""
        if self._service is None:
            return False
        return self.vault is None or not self.vault.is_locked

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

    @property
    def sync(self) -> SyncService:
        """Sync with the user's server (made on first use: most sessions never sync);
        raises :class:`VaultLockedError` while locked, UsageError for Ephemeral-only."""
        library, service = self.library, self.service
        if self._sync is None:
            if Tier.STANDARD not in library.tiers:
                from app.errors import UsageError

                raise UsageError("sync needs the vault: Ephemeral chats are never synced")
            from app.sync.service import SyncService

            self._sync = SyncService(library, service, self.runner)
        return self._sync

    @property
    def locked_tiers(self) -> tuple[Tier, ...]:
        """While unlocked, the stored tiers that stayed closed: Private after a keychain or
        Touch ID unlock (they open Standard only). Empty when locked or fully unlocked."""
        vault = self.vault
        if vault is None or not self.is_unlocked:
            return ()
        return tuple(tier for tier in TIERS if tier not in vault.open_tiers)

    @property
    def unlocked_with(self) -> SlotKind | None:
        """How the vault was unlocked (``"recovery"`` after the recovery code, ...)."""
        return self.vault.unlocked_with if self.vault is not None else None

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
            idle_timeout_seconds=self._idle_timeout,
            clock=self._clock,
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
                    Vault.open,
                    self.profile_dir,
                    idle_timeout_seconds=self._idle_timeout,
                    clock=self._clock,
                    secret_store=self._secret_store,
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

    async def unlock_with_agent(self) -> bool:
        """Unlock with the keys of a running unlock agent or unlocked window (``hushchat
        unlock``): no KDF, no profile lock. False when none answers or its keys are stale.
        """
        from app.agent.client import request_keys

        keys = await self.runner.blocking(request_keys, self.profile_dir)
        if keys is None:
            return False
        try:
            vault = await self.runner.blocking(
                Vault.attach,
                self.profile_dir,
                keys,
                idle_timeout_seconds=self._idle_timeout,
                clock=self._clock,
            )
        except VaultLockedError as error:
            log.info("not using the unlock agent: %s", error)
            return False
        finally:
            keys.wipe()
        self.vault = vault
        await self._open_library()
        return True

    async def _opened(self) -> Vault:
        await self.open_vault()
        assert self.vault is not None
        return self.vault

    async def _open_library(self) -> None:
        vault = self.vault
        assert vault is not None

        def open_library() -> Library:
            # Only the tiers this unlock opened: after a keychain or Touch ID unlock the
            # library has no Private store (its chats stay closed until a full unlock).
            tiers = vault.open_tiers
            return Library(
                vault.connect(Tier.STANDARD) if Tier.STANDARD in tiers else None,
                vault.connect(Tier.PRIVATE) if Tier.PRIVATE in tiers else None,
            )

        try:
            library = await self.runner.db(open_library)
        except BaseException:
            vault.lock()
            raise
        self._start_service(library)
        vault.record_activity()
        # Deletes whose undo time ran out while no window was open (a crash, a quit).
        try:
            await self.service.purge_deleted(UNDO_SECONDS)
        except StorageError as error:  # they stay hidden; the next unlock tries again
            log.warning("could not purge deleted chats: %s", error)
        log.info("session unlocked")

    def _start_service(self, library: Library) -> None:
        self._library = library
        if self._provider_factory is None:
            self._service = ChatService(
                library, self.config, runner=self.runner, api_keys=self.api_keys
            )
        else:
            self._service = ChatService(
                library,
                self.config,
                runner=self.runner,
                provider_factory=self._provider_factory,
                api_keys=self.api_keys,
            )

    async def serve_agent(self, on_locked: Callable[[str], None] | None = None) -> bool:
        """While unlocked, answer ``hushchat`` commands' key requests like ``hushchat
        unlock`` does (the window calls this), so they ask for no secret.

        ``on_locked(reason)`` is called when the server locks by itself: the machine
        was suspended, or ``hushchat lock`` asked; the window then locks too. False
        when not serving (locked, another agent serves the profile, Windows).
        """
        vault = self.vault
        if vault is None or vault.is_locked or self._agent is not None:
            return False
        self._agent_on_locked = on_locked  # serve again after a rotation or a Private unlock
        if set(vault.open_tiers) != set(TIERS):  # the agent hands out both tiers' keys
            log.info("not serving the command line: only %s is open", vault.open_tiers)
            return False
        from app.agent.errors import AgentError
        from app.agent.server import AgentServer, LockReason

        def locked(reason: LockReason) -> None:
            self._agent = None
            if on_locked is not None:
                on_locked(str(reason))

        server = AgentServer(
            vault.agent_keys(),
            profile_dir=self.profile_dir,
            idle_timeout=None,  # the window's own auto-lock applies
            kind="window",
            on_locked=locked,
        )
        try:
            await server.start()
        except AgentError as error:
            log.info("not serving the command line: %s", error)
            return False
        if not self.is_unlocked or self.vault is not vault:  # locked while starting
            server.close()
            return False
        self._agent = server
        return True

    def lock(self) -> None:
        """Close the library (Ephemeral chats vanish) and drop every key from memory."""
        self._close_library()
        self._agent_on_locked = None
        self.api_keys.forget()
        if self.vault is not None:
            self.vault.lock()

    def _stop_loop_work(self) -> None:
        """Stop what runs on the event loop: sync, the agent, title tasks.

        Asyncio's tasks and servers are not thread-safe: this runs on the loop's thread
        (``aclose`` calls it there before the blocking rest of ``close`` moves off it)."""
        sync, self._sync = self._sync, None
        if sync is not None:  # before the library closes under it
            sync.cancel()
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.close()
        if self._service is not None:
            self._service.cancel_titles()

    def _close_library(self) -> None:
        """Stop serving the agent and close the library; the vault keeps its keys."""
        self._stop_loop_work()
        library, service = self._library, self._service
        self._library, self._service = None, None
        if service is not None:
            service.close()  # the library, on the database thread; the runner is ours
        elif library is not None:
            # On the database thread, after any query still running there.
            self.runner.db_sync(library.close)

    async def aclose(self) -> None:
        """``close`` from a coroutine: what runs on the loop stops on the loop's thread
        (cancelled title tasks are let finish), then the blocking rest (waiting for the
        database thread, joining the runner's threads) runs on a worker thread."""
        self._stop_loop_work()
        if self._service is not None:
            await self._service.wait_for_titles(_TITLES_SETTLE_SECONDS)
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        """Lock, release the profile for other processes and stop the runner threads.

        On the loop's thread, or after ``_stop_loop_work`` there (``aclose``)."""
        self.lock()
        if self.vault is not None:
            self.vault.close()
            self.vault = None
        self.runner.shutdown()

    # ----------------------------------------------------------------- key slots

    async def verify_passphrase(self, passphrase: str) -> None:
        """Check the vault's current passphrase (Argon2id, off the loop); WrongSecretError."""
        vault = await self._unlocked_vault()
        await self.runner.blocking(vault.verify_passphrase, passphrase)

    async def change_passphrase(
        self, new_passphrase: str, *, current: str | None = None
    ) -> SlotInfo:
        """Rewrap the vault key under a new passphrase (databases untouched).

        ``current`` is checked first; it may be left out only when the vault has no
        passphrase or was unlocked with the recovery code (a forgotten passphrase).
        """
        vault = await self._unlocked_vault()
        await self._check_current_passphrase(vault, current)
        return await self.runner.blocking(vault.change_passphrase, new_passphrase, kdf=self.kdf)

    async def _check_current_passphrase(self, vault: Vault, current: str | None) -> None:
        if current is not None:
            await self.runner.blocking(vault.verify_passphrase, current)
        elif vault.unlocked_with != "recovery" and self.has_slot("passphrase"):
            from app.vault.errors import WrongSecretError

            raise WrongSecretError("Type your current passphrase to change it.")

    def rotation_drops(
        self,
        *,
        keep_passphrase: bool,
        touched: Collection[str] = (),
        drop: Collection[str] = (),
    ) -> list[SlotInfo]:
        """The key slots :meth:`rotate_keys` would drop (no secret needed, nothing changes)."""
        if self.vault is None:
            return []
        return self.vault.rotation_drops(
            keep_passphrase=keep_passphrase, touched=touched, drop=drop
        )

    async def touch_security_key(self, key: SecurityKey) -> TouchedKey:
        """Touch an enrolled security key for :meth:`rotate_keys` (it is kept then)."""
        vault = await self._unlocked_vault()
        return await self.runner.blocking(vault.touch_security_key, key)

    async def rotate_keys(
        self,
        passphrase: str | None,
        *,
        new_passphrase: bool = False,
        current: str | None = None,
        touched: Sequence[TouchedKey] = (),
        drop: Collection[str] = (),
    ) -> Rotation:
        """Rotate every key (``Vault.rotate_keys``) and reopen the chats under the new ones.

        ``passphrase`` is the passphrase the rotated vault keeps; None drops the passphrase
        slot. It must be the current one (checked first), unless ``new_passphrase``: then
        ``current`` is checked as for :meth:`change_passphrase` (it may be left out after
        the recovery code). Every connection is closed like a lock does (Ephemeral chats
        vanish), the keys stay in memory, and the library and the window's agent start
        again with the new keys. Show the returned recovery code once.
        """
        vault = await self._unlocked_vault()
        vault.require_vault_key()  # a keychain unlock cannot rotate: say so at once
        if new_passphrase:
            await self._check_current_passphrase(vault, current)
        elif passphrase is not None and self.has_slot("passphrase"):
            await self.runner.blocking(vault.verify_passphrase, passphrase)
        on_locked = self._agent_on_locked
        self._close_library()
        try:
            rotation = await self.runner.blocking(
                vault.rotate_keys,
                passphrase=passphrase,
                touched=touched,
                drop=drop,
                kdf=self.kdf,
            )
        finally:
            if not vault.is_locked:  # locked: a rotation that could not finish (it says so)
                await self._open_library()
                if on_locked is not None:
                    await self.serve_agent(on_locked)
        return rotation

    async def regenerate_recovery_code(self) -> RecoveryCode:
        """Replace the recovery slot; the old code stops working."""
        vault = await self._unlocked_vault()
        return await self.runner.blocking(vault.regenerate_recovery_code)

    async def recovery_code_unconfirmed(self) -> bool:
        """Whether storing the recovery code was put off ("Remind me later") and not
        confirmed since (the window then reminds at every unlock). False while the
        Standard tier is locked."""
        if self.vault is None or Tier.STANDARD not in self.vault.open_tiers:
            return False
        value = await self.runner.blocking(self._meta.get, _RECOVERY_UNCONFIRMED)
        return value is not None

    async def postpone_recovery_code(self) -> None:
        """Remember that the recovery code was not confirmed stored. The code itself is
        not kept anywhere: the reminder offers a new one (:meth:`new_recovery_code`)."""
        await self._unlocked_vault()
        await self.runner.blocking(self._meta.put, _RECOVERY_UNCONFIRMED, "1")

    async def new_recovery_code(self) -> RecoveryCode:
        """A new recovery code for someone who put storing it off: the old one stops
        working; the reminder stays until :meth:`confirm_recovery_code_stored`."""
        code = await self.regenerate_recovery_code()
        await self.runner.blocking(self._meta.put, _RECOVERY_UNCONFIRMED, "1")
        return code

    async def confirm_recovery_code_stored(self) -> None:
        """The recovery code is stored: no more reminders."""
        await self._unlocked_vault()
        await self.runner.blocking(self._meta.delete, _RECOVERY_UNCONFIRMED)

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

    async def unlock_private(self, passphrase: str) -> None:
        """After a keychain or Touch ID unlock (Standard only), open Private chats too.

        A wrong passphrase (``WrongSecretError``) changes nothing. Otherwise the chats
        reopen with both tiers, like after an unlock (Ephemeral chats vanish).
        """
        vault = await self._unlocked_vault()
        await self.runner.blocking(vault.unlock_with_passphrase, passphrase)
        await self._reopen_library()

    async def _reopen_library(self) -> None:
        on_locked = self._agent_on_locked
        self._close_library()
        await self._open_library()
        if on_locked is not None:
            await self.serve_agent(on_locked)

    async def _unlocked_vault(self) -> Vault:
        if self.vault is None or self.vault.is_locked:
            raise VaultLockedError("The vault is locked; unlock it first.")
        return self.vault

    # ----------------------------------------------------------------- providers

    async def save_provider(
        self,
        entry: Mapping[str, Any],
        *,
        api_key: str | None = None,
        key_place: KeyPlace | None = None,
        replaces: str | None = None,
        make_default: bool = False,
    ) -> LoadedConfig:
        """Add or replace an ``llms:`` entry (API key to the vault or the keychain, see
        ``app.api_keys``) and use it now."""
        from app.provider_setup import save_provider

        config = await self.runner.blocking(
            save_provider, self.config, entry, keys=self.api_keys, api_key=api_key,
            key_place=key_place, replaces=replaces, make_default=make_default,
        )  # fmt: skip
        self.apply_config(config)
        return config

    async def remove_provider(self, name: str) -> LoadedConfig:
        """Remove an ``llms:`` entry and its kept key, and stop using it now."""
        from app.provider_setup import remove_provider

        config = await self.runner.blocking(remove_provider, self.config, name, keys=self.api_keys)
        self.apply_config(config)
        return config

    # ----------------------------------------------------------------- config and idle

    def apply_config(self, config: LoadedConfig) -> None:
        """Use a re-read config (providers, auto-lock) from now on."""
        self.config = config
        if self._service is not None:
            self._service.config = config
        self.set_idle_timeout(self._configured_idle_seconds())

    def _configured_idle_seconds(self) -> float | None:
        minutes = self.config.config.ui.auto_lock_minutes
        return float(minutes) * 60.0 if minutes else None

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Lock after ``seconds`` without activity (None: never), from now on."""
        self._idle_timeout = seconds
        if self.vault is not None:
            self.vault.set_idle_timeout(seconds)

    def record_activity(self) -> None:
        """The user did something: restart the idle period."""
        if self.vault is not None:
            self.vault.record_activity()

    def seconds_until_idle_lock(self) -> float | None:
        """Seconds until :meth:`lock_if_idle` would lock; None without a timeout."""
        return self.vault.seconds_until_idle_lock() if self.vault is not None else None

    def lock_if_idle(self) -> bool:
        """Lock when unlocked and idle past the timeout; return whether it locked now."""
        left = self.seconds_until_idle_lock()
        if not self.is_unlocked or left is None or left > 0:
            return False
        log.info("idle for %s s, locking", self._idle_timeout)
        self.lock()
        return True

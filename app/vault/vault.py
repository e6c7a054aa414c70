"""The vault service: create, unlock by any slot, manage slots, rekey, lock.

Key hierarchy (drawn in ``docs/security.md``)::

    passphrase --Argon2id--> HKDF ─┐
    recovery code ------------HKDF ┤
    security-key PRF ---------HKDF ┼─ AES-256-GCM unwrap ─> vault key (VK, random 256 bit)
    keychain / Touch ID secret HKDF┘                          │
                                          HKDF ─ AES-256-GCM  ├─> standard.db raw key
                                                              └─> private.db raw key

Everything is synchronous and blocking (Argon2, SQLCipher, FIDO2); the UI runs these
calls in its executor. One ``Vault`` object per process holds the profile's OS lock
from ``open``/``create`` until ``close``.

A vault can also be *attached* (:meth:`Vault.attach`) with the database keys an unlock
agent hands out (``app/agent``): it connects to the databases but holds no vault key and
no profile lock, so slot operations and rekey need a real unlock.
:meth:`Vault.agent_keys` is the other direction: an unlocked vault's keys for an agent.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import sqlcipher3

from app.agent.keys import AgentKeys
from app.vault import database
from app.vault.atomic_file import fsync_directory, write_atomically
from app.vault.errors import (
    DatabaseDamagedError,
    LastSlotError,
    NoSecretAvailableError,
    SlotNotFoundError,
    UnlockMethodUnavailableError,
    VaultError,
    VaultExistsError,
    VaultLockedError,
    VaultNotFoundError,
    WrongSecretError,
)
from app.vault.idle import Clock, IdleTimer, MonotonicClock
from app.vault.kdf import KdfParams, SlotKind, calibrate, derive_passphrase_secret
from app.vault.keychain import KEYCHAIN_SERVICE, KeyringStore, SecretStore
from app.vault.profile import ProfileLock
from app.vault.recovery_code import RecoveryCode
from app.vault.slots import (
    SLOT_FILE_NAME,
    TIERS,
    DatabaseKey,
    Slot,
    SlotFile,
    Tier,
    new_slot,
    open_slot,
    unwrap_database_key,
    wrap_database_key,
)
from app.vault.touch_id import TOUCH_ID_SERVICE

if TYPE_CHECKING:  # fido2 is imported only when a security key is used (start-up time)
    from app.vault.security_key import SecurityKey

__all__ = ["DatabaseInfo", "SlotInfo", "Vault", "VaultStatus"]

logger = logging.getLogger(__name__)

_REKEY_SUFFIX: Final = ".rekey"
_SALT_BYTES: Final = 16
_PRF_SALT_BYTES: Final = 32
_KEY_BYTES: Final = 32


@dataclass(frozen=True)
class SlotInfo:
    """What may be shown about a slot without unlocking: never secret."""

    id: str
    kind: SlotKind
    label: str
    created: str
    detail: str

    @classmethod
    def of(cls, slot: Slot) -> SlotInfo:
        """Describe a slot for listings."""
        if slot.kind == "passphrase":
            detail = f"Argon2id {slot.kdf_params.describe()}"
        elif slot.kind == "security-key":
            pin = "with PIN/biometric" if slot.params["user_verification"] else "touch only"
            detail = f"FIDO2 credential {slot.credential_id[:4].hex()}…, {pin}"
        elif slot.kind in ("keychain", "touch-id"):
            detail = f"{slot.params['service']} / {slot.params['account']}"
        else:
            detail = "256-bit code, 16 groups"
        return cls(slot.id, slot.kind, slot.label, slot.created, detail)


@dataclass(frozen=True)
class DatabaseInfo:
    """A database file as seen without its key."""

    tier: Tier
    file: str
    exists: bool
    size: int
    generation: int


@dataclass(frozen=True)
class VaultStatus:
    """Everything ``vault status`` reports; needs no secret."""

    profile_dir: Path
    slots: tuple[SlotInfo, ...]
    databases: tuple[DatabaseInfo, ...]
    rekey_pending: bool
    in_use: bool


def _slot_path(profile_dir: Path) -> Path:
    return profile_dir / SLOT_FILE_NAME


def _read_slot_file(profile_dir: Path) -> SlotFile:
    path = _slot_path(profile_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VaultNotFoundError(
            f"There is no vault in {profile_dir}; create one with 'hushchat vault init' (or "
            "pass the right --profile)."
        ) from None
    return SlotFile.from_bytes(data)


class Vault:
    """An open profile: locked or unlocked, holding the profile's process lock."""

    def __init__(
        self,
        profile_dir: Path,
        slot_file: SlotFile,
        profile_lock: ProfileLock,
        *,
        idle_timeout_seconds: float | None,
        clock: Clock | None,
        secret_store: SecretStore | None,
        touch_id_store: SecretStore | None,
    ) -> None:
        """Use :meth:`open` or :meth:`create`."""
        self.profile_dir = profile_dir
        self._slot_file = slot_file
        self._profile_lock = profile_lock
        self._state_lock = threading.RLock()
        self._vault_key: bytearray | None = None
        self._database_keys: dict[Tier, bytearray] = {}
        self._connections: dict[Tier, list[Any]] = {tier: [] for tier in TIERS}
        self._clock = clock or MonotonicClock()
        self._idle = IdleTimer(idle_timeout_seconds, self._clock)
        self._secret_store = secret_store
        self._touch_id_store = touch_id_store

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(
        cls,
        profile_dir: Path,
        passphrase: str,
        *,
        kdf: KdfParams | None = None,
        idle_timeout_seconds: float | None = None,
        clock: Clock | None = None,
        secret_store: SecretStore | None = None,
        touch_id_store: SecretStore | None = None,
    ) -> tuple[Vault, RecoveryCode]:
        """Create a vault in ``profile_dir`` and return it unlocked, with its recovery code.

        ``kdf`` defaults to parameters calibrated on this machine (about 0.5-1 s). The
        recovery code is returned once and never stored; show it to the user.
        """
        if not passphrase:
            raise WrongSecretError("The passphrase is empty; choose one.")
        profile_dir = Path(profile_dir)
        profile_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        profile_lock = ProfileLock(profile_dir)
        profile_lock.acquire()
        try:
            cls.check_can_create(profile_dir)
            params = kdf or calibrate()
            vault_key = secrets.token_bytes(_KEY_BYTES)
            vault_id = secrets.token_bytes(16)
            records: dict[Tier, DatabaseKey] = {}
            for tier in TIERS:
                raw = secrets.token_bytes(_KEY_BYTES)
                database.create_database(profile_dir / f"{tier}.db", raw)
                records[tier] = wrap_database_key(
                    tier=tier,
                    file=f"{tier}.db",
                    generation=1,
                    raw_key=raw,
                    vault_key=vault_key,
                    vault_id=vault_id,
                )
            code = RecoveryCode.generate()
            slots = (
                _passphrase_slot(passphrase, params, vault_key, vault_id),
                _recovery_slot(code, vault_key, vault_id),
            )
            slot_file = SlotFile(
                vault_id=vault_id,
                created=slots[0].created,
                databases=records,
                slots=slots,
            ).sealed(vault_key)
            write_atomically(_slot_path(profile_dir), slot_file.to_bytes())
        except BaseException:
            profile_lock.release()
            raise
        vault = cls(
            profile_dir,
            slot_file,
            profile_lock,
            idle_timeout_seconds=idle_timeout_seconds,
            clock=clock,
            secret_store=secret_store,
            touch_id_store=touch_id_store,
        )
        vault._accept_vault_key(vault_key)
        logger.info("vault created with Argon2id %s", params.describe())
        return vault, code

    @staticmethod
    def check_can_create(profile_dir: Path) -> None:
        """Raise :class:`VaultExistsError` if creating a vault there would overwrite files."""
        existing = [
            name
            for name in (SLOT_FILE_NAME, "standard.db", "private.db")
            if (Path(profile_dir) / name).exists()
        ]
        if existing:
            raise VaultExistsError(
                f"{profile_dir} already holds {', '.join(existing)}; refusing to overwrite. "
                "Use another --profile, or move those files away first."
            )

    @classmethod
    def open(
        cls,
        profile_dir: Path,
        *,
        idle_timeout_seconds: float | None = None,
        clock: Clock | None = None,
        secret_store: SecretStore | None = None,
        touch_id_store: SecretStore | None = None,
    ) -> Vault:
        """Take the profile's process lock and read its slot file; the vault starts locked.

        Raises :class:`VaultNotFoundError`, :class:`ProfileInUseError`,
        :class:`DamagedSlotFileError` (incl. KDF parameters below the floor).
        """
        profile_dir = Path(profile_dir)
        if not _slot_path(profile_dir).exists():
            _read_slot_file(profile_dir)  # raises the not-found error
        profile_lock = ProfileLock(profile_dir)
        profile_lock.acquire()
        try:
            slot_file = _read_slot_file(profile_dir)
        except BaseException:
            profile_lock.release()
            raise
        return cls(
            profile_dir,
            slot_file,
            profile_lock,
            idle_timeout_seconds=idle_timeout_seconds,
            clock=clock,
            secret_store=secret_store,
            touch_id_store=touch_id_store,
        )

    @classmethod
    def attach(
        cls,
        profile_dir: Path,
        keys: AgentKeys,
        *,
        idle_timeout_seconds: float | None = None,
        clock: Clock | None = None,
    ) -> Vault:
        """An unlocked vault from an unlock agent's database keys (copied; no KDF).

        It can :meth:`connect` to both databases but holds no vault key: changing key
        slots and rekeying raise :class:`VaultLockedError` (they need a real unlock). It
        does not take the profile's process lock (the agent serves commands while the
        window is open); SQLite's own locking orders the writers.
        Raises :class:`VaultNotFoundError`, :class:`DamagedSlotFileError`, and
        :class:`VaultLockedError` when the keys are of another vault or key generation
        (after ``hushchat vault rekey``) or a rekey is unfinished.
        """
        profile_dir = Path(profile_dir)
        slot_file = _read_slot_file(profile_dir)
        stale = "The unlock agent's keys are out of date"
        again = "run 'hushchat lock', then unlock again"
        if slot_file.vault_id != keys.vault_id:
            raise VaultLockedError(f"The unlock agent holds the keys of another vault; {again}.")
        if slot_file.pending_rekey:
            raise VaultLockedError(
                f"{stale}: a rekey of this vault is unfinished. Unlock with your passphrase "
                "(or another unlock method) to finish it."
            )
        for tier in TIERS:
            if keys.generations[tier] != slot_file.databases[tier].generation:
                raise VaultLockedError(f"{stale} (the vault was rekeyed); {again}.")
        vault = cls(
            profile_dir,
            slot_file,
            ProfileLock(profile_dir),  # never acquired: close() releases nothing
            idle_timeout_seconds=idle_timeout_seconds,
            clock=clock,
            secret_store=None,
            touch_id_store=None,
        )
        with vault._state_lock:
            vault._database_keys = {tier: bytearray(keys.database_keys[tier]) for tier in TIERS}
            vault._idle.record_activity()
        logger.info("vault attached with the unlock agent's database keys")
        return vault

    @staticmethod
    def status(profile_dir: Path) -> VaultStatus:
        """Describe the vault without a secret and without changing any file."""
        profile_dir = Path(profile_dir)
        slot_file = _read_slot_file(profile_dir)
        probe = ProfileLock(profile_dir)
        try:
            probe.acquire()
        except VaultError:
            in_use = True
        else:
            in_use = False
            probe.release()
        databases = []
        for tier in TIERS:
            path = profile_dir / f"{tier}.db"
            databases.append(
                DatabaseInfo(
                    tier=tier,
                    file=path.name,
                    exists=path.exists(),
                    size=path.stat().st_size if path.exists() else 0,
                    generation=slot_file.databases[tier].generation,
                )
            )
        return VaultStatus(
            profile_dir=profile_dir,
            slots=tuple(SlotInfo.of(slot) for slot in slot_file.slots),
            databases=tuple(databases),
            rekey_pending=bool(slot_file.pending_rekey),
            in_use=in_use,
        )

    def close(self) -> None:
        """Lock and release the profile for other processes."""
        with self._state_lock:
            self.lock()
            self._profile_lock.release()

    def __enter__(self) -> Vault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- state

    @property
    def is_locked(self) -> bool:
        """Whether no key material is held."""
        return not self._database_keys

    @property
    def has_vault_key(self) -> bool:
        """Whether slot operations and rekey are possible (unlocked by a secret, not
        attached with an agent's database keys)."""
        return self._vault_key is not None

    def agent_keys(self) -> AgentKeys:
        """Copies of the database keys with the vault id and key generations, for an
        unlock agent (``app.agent``). The caller owns the copies: wipe them when done."""
        with self._state_lock:
            self._require_database_keys()
            return AgentKeys(
                self.vault_id,
                {tier: bytearray(self._database_keys[tier]) for tier in TIERS},
                {tier: self._slot_file.databases[tier].generation for tier in TIERS},
            )

    @property
    def vault_id(self) -> bytes:
        """The vault's public random id."""
        return self._slot_file.vault_id

    def slots(self) -> list[SlotInfo]:
        """List the key slots (no secret needed)."""
        return [SlotInfo.of(slot) for slot in self._slot_file.slots]

    def lock(self) -> None:
        """Close every connection and drop the vault and database keys from memory.

        Python may keep copies of key bytes it made internally (bytes objects are
        immutable); the vault overwrites the buffers it owns.
        """
        with self._state_lock:
            for tier in TIERS:
                for connection in self._connections[tier]:
                    with contextlib.suppress(sqlcipher3.Error):
                        connection.close()
                self._connections[tier].clear()
            for key in [self._vault_key, *self._database_keys.values()]:
                if key is not None:
                    key[:] = bytes(len(key))
            self._vault_key = None
            self._database_keys.clear()
            logger.info("vault locked")

    def record_activity(self) -> None:
        """Tell the idle timer the user did something."""
        self._idle.record_activity()

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Lock after ``seconds`` without activity from now on (None: never)."""
        with self._state_lock:
            self._idle = IdleTimer(seconds, self._clock)

    def seconds_until_idle_lock(self) -> float | None:
        """Seconds until :meth:`lock_if_idle` would lock, or None without a timeout."""
        return self._idle.seconds_left()

    def lock_if_idle(self) -> bool:
        """Lock when the idle timeout has elapsed; return whether it locked now."""
        with self._state_lock:
            if self.is_locked or not self._idle.is_expired():
                return False
            logger.info("vault idle for %s s, locking", self._idle.timeout_seconds)
            self.lock()
            return True

    def _require_key(self) -> bytes:
        if self._vault_key is None:
            if self._database_keys:
                raise VaultLockedError(
                    "This needs the vault key, which the unlock agent does not hold: changing "
                    "key slots or rekeying needs your passphrase (or another unlock method)."
                )
            raise VaultLockedError("The vault is locked; unlock it first.")
        return bytes(self._vault_key)

    def _require_database_keys(self) -> None:
        if not self._database_keys:
            raise VaultLockedError("The vault is locked; unlock it first.")

    # ----------------------------------------------------------------- unlock

    def _accept_vault_key(self, vault_key: bytes) -> None:
        """Check the file MAC, unwrap the database keys, finish an interrupted rekey."""
        self._slot_file.verify_mac(vault_key)
        keys = {
            tier: unwrap_database_key(self._slot_file.databases[tier], vault_key, self.vault_id)
            for tier in TIERS
        }
        with self._state_lock:
            self._vault_key = bytearray(vault_key)
            self._database_keys = {tier: bytearray(key) for tier, key in keys.items()}
            self._idle.record_activity()
        if self._slot_file.pending_rekey:
            try:
                self._finish_interrupted_rekey()
            except VaultError:
                self.lock()
                raise

    def _unlock_with(self, candidates: list[Slot], secret_for: Callable[[Slot], bytes]) -> None:
        last_error: WrongSecretError | None = None
        for slot in candidates:
            try:
                vault_key = open_slot(slot, secret_for(slot), self.vault_id)
            except WrongSecretError as error:
                last_error = error
                continue
            self._accept_vault_key(vault_key)
            logger.info("vault unlocked with %s slot %s", slot.kind, slot.id)
            return
        if last_error is None:
            raise NoSecretAvailableError("The vault has no slot of that kind.")
        raise last_error

    def unlock_with_passphrase(self, passphrase: str) -> None:
        """Unlock with the passphrase; raises :class:`WrongSecretError` if it does not fit."""
        candidates = self._slot_file.slots_of("passphrase")
        if not candidates:
            raise NoSecretAvailableError(
                "This vault has no passphrase slot; unlock with the recovery code "
                "('hushchat vault recover') to set one."
            )
        self._unlock_with(
            candidates,
            lambda slot: derive_passphrase_secret(passphrase, slot.salt, slot.kdf_params),
        )

    def unlock_with_recovery_code(self, code: str | RecoveryCode) -> None:
        """Unlock with the recovery code (typed text or a parsed code)."""
        parsed = code if isinstance(code, RecoveryCode) else RecoveryCode.parse(code)
        self._unlock_with(self._slot_file.slots_of("recovery"), _constant(parsed.secret))

    def unlock_with_security_key(self, key: SecurityKey) -> None:
        """Unlock with whichever enrolled FIDO2 credential ``key`` holds (touch, maybe PIN)."""
        candidates = self._slot_file.slots_of("security-key")
        if not candidates:
            raise NoSecretAvailableError("This vault has no security-key slot.")
        flags = {bool(slot.params["user_verification"]) for slot in candidates}
        user_verification = flags.pop() if len(flags) == 1 else None
        result = key.evaluate(
            {slot.credential_id: slot.salt for slot in candidates},
            user_verification=user_verification,
            rp_id=str(candidates[0].params["rp_id"]),
        )
        slot = next((s for s in candidates if s.credential_id == result.credential_id), None)
        if slot is None:
            raise WrongSecretError("This security key is not enrolled in this vault.")
        if bool(slot.params["user_verification"]) and not result.user_verified:
            raise WrongSecretError(
                "This security key was enrolled with its PIN; enter the PIN when asked."
            )
        self._unlock_with([slot], _constant(result.output))

    def unlock_with_keychain(self) -> None:
        """Unlock with the secret remembered in this device's OS keychain."""
        self._unlock_with_store("keychain", self._keychain())

    def unlock_with_touch_id(self) -> None:
        """Unlock with the Touch ID protected keychain item (macOS, signed build)."""
        self._unlock_with_store("touch-id", self._touch_id())

    def _unlock_with_store(self, kind: SlotKind, store: SecretStore) -> None:
        candidates = self._slot_file.slots_of(kind)
        if not candidates:
            raise NoSecretAvailableError(f"This vault has no {kind} slot.")
        errors: list[VaultError] = []
        for slot in candidates:
            try:
                secret = store.load(str(slot.params["service"]), str(slot.params["account"]))
            except NoSecretAvailableError as error:
                errors.append(error)
                continue
            self._unlock_with([slot], _constant(secret))
            return
        raise errors[0]

    def _keychain(self) -> SecretStore:
        if self._secret_store is None:
            self._secret_store = KeyringStore()
        return self._secret_store

    def _touch_id(self) -> SecretStore:
        if self._touch_id_store is None:
            from app.vault.touch_id import TouchIdStore

            self._touch_id_store = TouchIdStore()
        return self._touch_id_store

    # ----------------------------------------------------------------- databases

    def connect(self, tier: Tier) -> Any:
        """Open a new connection to a tier's database (raw key, WAL, hardening pragmas).

        The vault closes it on :meth:`lock`. Raises :class:`VaultLockedError` when locked
        and :class:`DatabaseDamagedError` when the file does not decrypt.
        """
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}")
        with self._state_lock:
            self._require_database_keys()
            raw = bytes(self._database_keys[tier])
            connection = database.open_database(self.profile_dir / f"{tier}.db", raw)
            self._connections[tier] = [c for c in self._connections[tier] if database.is_open(c)]
            self._connections[tier].append(connection)
            self._idle.record_activity()
            return connection

    def verify_databases(self) -> None:
        """Run SQLCipher's page authentication and SQLite's integrity check on both files."""
        with self._state_lock:
            self._require_database_keys()
            for tier in TIERS:
                database.check_integrity(
                    self.profile_dir / f"{tier}.db", bytes(self._database_keys[tier])
                )

    # ----------------------------------------------------------------- slots

    def _write(self, slot_file: SlotFile) -> None:
        vault_key = self._require_key()
        sealed = slot_file.sealed(vault_key)
        write_atomically(_slot_path(self.profile_dir), sealed.to_bytes())
        self._slot_file = sealed

    def change_passphrase(self, new_passphrase: str, *, kdf: KdfParams | None = None) -> SlotInfo:
        """Replace the passphrase slot (or add one) with one for ``new_passphrase``.

        One atomic write of the slot file: after a crash exactly one of the old and new
        passphrases works. The databases are not touched. ``kdf`` defaults to the old
        slot's parameters (or a fresh calibration when there was none).
        """
        if not new_passphrase:
            raise WrongSecretError("The new passphrase is empty; choose one.")
        with self._state_lock:
            vault_key = self._require_key()
            old = self._slot_file.slots_of("passphrase")
            params = kdf or (old[0].kdf_params if old else calibrate())
            slot = _passphrase_slot(new_passphrase, params, vault_key, self.vault_id)
            self._write(self._replace_slots(old, slot))
            logger.info("passphrase slot replaced by %s", slot.id)
            return SlotInfo.of(slot)

    def regenerate_recovery_code(self) -> RecoveryCode:
        """Replace the recovery slot; the old code stops working. Show the new one once."""
        with self._state_lock:
            vault_key = self._require_key()
            code = RecoveryCode.generate()
            slot = _recovery_slot(code, vault_key, self.vault_id)
            self._write(self._replace_slots(self._slot_file.slots_of("recovery"), slot))
            logger.info("recovery slot replaced by %s", slot.id)
            return code

    def _replace_slots(self, old: list[Slot], new: Slot) -> SlotFile:
        slots = list(self._slot_file.slots)
        if old:
            index = slots.index(old[0])
            slots = [s for s in slots if s not in old]
            slots.insert(min(index, len(slots)), new)
        else:
            slots.append(new)
        return replace(self._slot_file, slots=tuple(slots))

    def add_security_key(self, key: SecurityKey, *, label: str = "Security key") -> SlotInfo:
        """Enrol a FIDO2 credential as a new slot (the key asks for two touches)."""
        from app.vault.security_key import RP_ID

        with self._state_lock:
            vault_key = self._require_key()
            credential_id = key.enrol(user_id=self.vault_id, user_name="Hushchat vault")
            salt = secrets.token_bytes(_PRF_SALT_BYTES)
            result = key.evaluate({credential_id: salt}, user_verification=None)
            slot = new_slot(
                kind="security-key",
                label=label,
                salt=salt,
                params={
                    "credential_id": _b64(credential_id),
                    "rp_id": RP_ID,
                    "user_verification": result.user_verified,
                },
                slot_secret=result.output,
                vault_key=vault_key,
                vault_id=self.vault_id,
            )
            self._write(replace(self._slot_file, slots=(*self._slot_file.slots, slot)))
            logger.info("security-key slot %s added", slot.id)
            return SlotInfo.of(slot)

    def add_keychain(self, *, label: str = "This device's keychain") -> SlotInfo:
        """Remember the vault in this device's OS keychain (a new slot)."""
        return self._add_store_slot("keychain", KEYCHAIN_SERVICE, self._keychain(), label)

    def add_touch_id(self, *, label: str = "Touch ID") -> SlotInfo:
        """Add a Touch ID slot (macOS, signed build)."""
        return self._add_store_slot("touch-id", TOUCH_ID_SERVICE, self._touch_id(), label)

    def _add_store_slot(
        self, kind: SlotKind, service: str, store: SecretStore, label: str
    ) -> SlotInfo:
        with self._state_lock:
            vault_key = self._require_key()
            secret = secrets.token_bytes(_KEY_BYTES)
            account = f"{self.vault_id.hex()}/{secrets.token_hex(4)}"
            store.store(service, account, secret)
            try:
                slot = new_slot(
                    kind=kind,
                    label=label,
                    salt=secrets.token_bytes(_SALT_BYTES),
                    params={"service": service, "account": account},
                    slot_secret=secret,
                    vault_key=vault_key,
                    vault_id=self.vault_id,
                )
                self._write(replace(self._slot_file, slots=(*self._slot_file.slots, slot)))
            except BaseException:
                store.delete(service, account)
                raise
            logger.info("%s slot %s added", kind, slot.id)
            return SlotInfo.of(slot)

    def remove_slot(self, slot_id: str) -> None:
        """Remove a slot (never the last one); keychain items of the slot are deleted too."""
        with self._state_lock:
            self._require_key()
            slot = self._slot_file.slot(slot_id)
            if slot is None:
                raise SlotNotFoundError(
                    f"No key slot has the id {slot_id!r}; 'hushchat vault slots' lists them."
                )
            if len(self._slot_file.slots) == 1:
                raise LastSlotError(
                    "This is the vault's only key slot; add another unlock method before "
                    "removing it."
                )
            remaining = tuple(s for s in self._slot_file.slots if s.id != slot_id)
            self._write(replace(self._slot_file, slots=remaining))
            logger.info("%s slot %s removed", slot.kind, slot.id)
            if slot.kind in ("keychain", "touch-id"):
                store = self._keychain() if slot.kind == "keychain" else self._touch_id()
                try:
                    store.delete(str(slot.params["service"]), str(slot.params["account"]))
                except UnlockMethodUnavailableError:
                    logger.warning("could not delete the %s item of slot %s", slot.kind, slot.id)

    # ----------------------------------------------------------------- rekey

    def rekey(self, tiers: tuple[Tier, ...] = TIERS) -> None:
        """Re-encrypt the databases under fresh random keys, safe against a crash.

        Per tier: record the new key as pending in the slot file; export the database into
        ``<tier>.db.rekey`` under the new key and verify it by reopening; atomically rename
        it over the original; then make the new key current. If the process dies anywhere,
        the next unlock sees the pending key, tests which key opens the file, and finishes
        or abandons the rekey: exactly one key works and no row is lost.
        """
        with self._state_lock:
            vault_key = self._require_key()
            for tier in tiers:
                path = self.profile_dir / f"{tier}.db"
                temp = path.with_name(path.name + _REKEY_SUFFIX)
                for connection in self._connections[tier]:
                    with contextlib.suppress(sqlcipher3.Error):
                        connection.close()
                self._connections[tier].clear()
                old_key = bytes(self._database_keys[tier])
                new_key = secrets.token_bytes(_KEY_BYTES)
                current = self._slot_file.databases[tier]
                pending = wrap_database_key(
                    tier=tier,
                    file=current.file,
                    generation=current.generation + 1,
                    raw_key=new_key,
                    vault_key=vault_key,
                    vault_id=self.vault_id,
                )
                self._write(
                    replace(
                        self._slot_file,
                        pending_rekey={**self._slot_file.pending_rekey, tier: pending},
                    )
                )
                try:
                    database.export_with_new_key(path, old_key, temp, new_key)
                except BaseException:
                    self._abandon_pending(tier, temp)
                    raise
                for companion in ("-wal", "-shm"):
                    leftover = path.with_name(path.name + companion)
                    if leftover.exists() and leftover.stat().st_size and companion == "-wal":
                        raise DatabaseDamagedError(
                            f"{path.name} still has an unmerged write-ahead log after a "
                            "checkpoint; the rekey was abandoned. Close other connections "
                            "and retry."
                        )
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
                temp.replace(path)
                fsync_directory(self.profile_dir)
                self._promote_pending(tier)
                self._database_keys[tier] = bytearray(new_key)
                logger.info("%s database rekeyed to generation %d", tier, pending.generation)

    def _abandon_pending(self, tier: Tier, temp: Path) -> None:
        """Forget a pending key whose export failed; the original file is untouched."""
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        pending = {t: r for t, r in self._slot_file.pending_rekey.items() if t != tier}
        self._write(replace(self._slot_file, pending_rekey=pending))

    def _promote_pending(self, tier: Tier) -> None:
        pending = dict(self._slot_file.pending_rekey)
        record = pending.pop(tier)
        databases = {**self._slot_file.databases, tier: record}
        self._write(replace(self._slot_file, databases=databases, pending_rekey=pending))

    def _finish_interrupted_rekey(self) -> None:
        vault_key = self._require_key()
        for tier, record in sorted(self._slot_file.pending_rekey.items()):
            path = self.profile_dir / f"{tier}.db"
            temp = path.with_name(path.name + _REKEY_SUFFIX)
            new_key = unwrap_database_key(record, vault_key, self.vault_id)
            if database.key_opens(path, new_key):
                self._promote_pending(tier)
                self._database_keys[tier] = bytearray(new_key)
                logger.info("finished an interrupted rekey of the %s database", tier)
            elif database.key_opens(path, bytes(self._database_keys[tier])):
                self._abandon_pending(tier, temp)
                logger.info("abandoned an interrupted rekey of the %s database", tier)
            else:
                raise DatabaseDamagedError(
                    f"Neither the current nor the pending key opens {path.name}; restore the "
                    "profile from a backup. Nothing was overwritten."
                )
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _constant(secret: bytes) -> Callable[[Slot], bytes]:
    def secret_for(_slot: Slot) -> bytes:
        return secret

    return secret_for


def _passphrase_slot(passphrase: str, params: KdfParams, vault_key: bytes, vault_id: bytes) -> Slot:
    salt = secrets.token_bytes(_SALT_BYTES)
    return new_slot(
        kind="passphrase",
        label="Passphrase",
        salt=salt,
        params=params.to_json(),
        slot_secret=derive_passphrase_secret(passphrase, salt, params),
        vault_key=vault_key,
        vault_id=vault_id,
    )


def _recovery_slot(code: RecoveryCode, vault_key: bytes, vault_id: bytes) -> Slot:
    return new_slot(
        kind="recovery",
        label="Recovery code",
        salt=secrets.token_bytes(_SALT_BYTES),
        params={},
        slot_secret=code.secret,
        vault_key=vault_key,
        vault_id=vault_id,
    )


def iter_profile_files(profile_dir: Path) -> Iterator[Path]:
    """Yield every regular file in the profile (for checks and tests)."""
    yield from sorted(p for p in Path(profile_dir).rglob("*") if p.is_file())

"""The vault service: create, unlock by any slot, manage slots, rekey, lock.

Key hierarchy (drawn in ``docs/security.md``)::

    passphrase --Argon2id--> HKDF ─┐
    recovery code ------------HKDF ┼─ AES-256-GCM unwrap ─> vault key (VK, random 256 bit)
    security-key PRF ---------HKDF ┘                          │
                                          HKDF ─ AES-256-GCM  ├─> standard.db raw key
                                                              └─> private.db raw key
    keychain / Touch ID secret HKDF ── AES-256-GCM unwrap ───────> standard.db raw key only

A keychain or Touch ID unlock opens the Standard tier only: any process of the user can
read those stores, so Private stays behind the passphrase, a security key or the
recovery code. Such slots written by format 1 (they wrapped VK) are re-created as
Standard-only slots on the next unlock that yields VK.

Key rotation (:meth:`Vault.rotate_keys`) makes a new VK and new database keys, rewraps
for the secrets present (the passphrase typed again, security keys touched again,
keychain items re-created, a new recovery code) and drops every other slot, so an old
copy of ``vault.json`` with an old secret opens nothing current.

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
import os
import secrets
import stat
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import sqlcipher3

from app.agent.keys import AgentKeys
from app.vault import database
from app.vault.atomic_file import fsync_directory, write_atomically
from app.vault.errors import (
    DamagedSlotFileError,
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
from app.vault.profile import LOCK_FILE_NAME, ProfileLock
from app.vault.recovery_code import RecoveryCode
from app.vault.slots import (
    SLOT_FILE_NAME,
    STORE_KINDS,
    TIERS,
    DatabaseKey,
    Slot,
    SlotFile,
    Tier,
    new_slot,
    new_tier_slot,
    open_slot,
    open_tier_slot,
    unwrap_database_key,
    wrap_database_key,
)
from app.vault.touch_id import TOUCH_ID_SERVICE

if TYPE_CHECKING:  # fido2 is imported only when a security key is used (start-up time)
    from app.vault.security_key import SecurityKey

__all__ = ["DatabaseInfo", "Rotation", "SlotInfo", "TouchedKey", "Vault", "VaultStatus"]

logger = logging.getLogger(__name__)

_REKEY_SUFFIX: Final = ".rekey"
_SALT_BYTES: Final = 16
_PRF_SALT_BYTES: Final = 32
_KEY_BYTES: Final = 32
_STANDARD: Final = Tier.STANDARD
_SERVICE_OF_KIND: Final[dict[str, str]] = {
    "keychain": KEYCHAIN_SERVICE,
    "touch-id": TOUCH_ID_SERVICE,
}
_FINISH_WITH_A_FULL_UNLOCK: Final = (
    "A key change of this vault was interrupted. Unlock with your passphrase, a security "
    "key or the recovery code to finish it (the keychain and Touch ID open only Standard "
    "chats and cannot)."
)


@dataclass(frozen=True)
class SlotInfo:
    """What may be shown about a slot without unlocking: never secret."""

    id: str
    kind: SlotKind
    label: str
    created: str
    detail: str
    #: The tiers this slot opens: both for a passphrase, security key or recovery code;
    #: Standard only for keychain and Touch ID slots.
    tiers: tuple[Tier, ...] = TIERS
    #: A passphrase slot's Argon2id parameters (the sync keys record reuses them).
    kdf: KdfParams | None = None

    @property
    def opens_everything(self) -> bool:
        """Whether the slot opens every stored tier (Private included)."""
        return set(self.tiers) == set(TIERS)

    @classmethod
    def of(cls, slot: Slot) -> SlotInfo:
        """Describe a slot for listings."""
        tiers: tuple[Tier, ...] = TIERS
        if slot.kind == "passphrase":
            detail = f"Argon2id {slot.kdf_params.describe()}"
        elif slot.kind == "security-key":
            pin = "with PIN/biometric" if slot.params["user_verification"] else "touch only"
            detail = f"FIDO2 credential {slot.credential_id[:4].hex()}…, {pin}"
        elif slot.kind in STORE_KINDS:
            detail = f"{slot.params['service']} / {slot.params['account']}"
            # A format-1 slot still wraps VK, but the vault lets it open Standard only and
            # re-creates it as a Standard-only slot at the next full unlock.
            tiers = (_STANDARD,)
        else:
            detail = "256-bit code, 16 groups"
        kdf = slot.kdf_params if slot.kind == "passphrase" else None
        return cls(slot.id, slot.kind, slot.label, slot.created, detail, tiers, kdf)


@dataclass(frozen=True, repr=False)
class TouchedKey:
    """A security key's fresh PRF output for a rotation: touched once, used once."""

    slot_id: str
    salt: bytes
    output: bytes
    user_verified: bool

    def __repr__(self) -> str:
        return f"TouchedKey(slot_id={self.slot_id!r}, output=<hidden>)"


@dataclass(frozen=True)
class Rotation:
    """What a key rotation did: the new recovery code (show it once), the slots now, and
    the slots it dropped (their secrets no longer open anything)."""

    recovery_code: RecoveryCode | None
    slots: tuple[SlotInfo, ...]
    dropped: tuple[SlotInfo, ...] = field(default_factory=tuple)
    #: Why the files were not all swapped yet (the vault was locked; the next unlock
    #: finishes), or None when the rotation is complete.
    unfinished: str | None = None


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


_PROFILE_FILE_SUFFIXES: Final = (".db", ".db-wal", ".db-shm", ".db-journal", _REKEY_SUFFIX)


def tighten_profile_modes(profile_dir: Path) -> None:
    """Make the profile directory 0700 and the vault's files in it 0600 where looser.

    Files are created 0600 in the first place (databases before SQLite writes a byte,
    whose WAL and shared-memory files then take the database's mode); this catches a
    profile made by an earlier release, copied in, or restored from a backup. POSIX only:
    on Windows access is governed by ACLs inherited from the user's profile folder.
    """
    if os.name == "nt":
        return
    directory = Path(profile_dir)
    _tighten(directory, 0o700)
    for path in directory.iterdir():
        name = path.name
        if name in (SLOT_FILE_NAME, LOCK_FILE_NAME) or name.endswith(_PROFILE_FILE_SUFFIXES):
            _tighten(path, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        return  # never follow a link out of the profile
    if stat.S_IMODE(info.st_mode) & ~mode:
        try:
            path.chmod(stat.S_IMODE(info.st_mode) & mode)
        except OSError as error:  # not ours, a read-only mount: open it anyway, say so
            logger.warning("could not tighten the permissions of %s: %s", path.name, error)
            return
        logger.info("tightened the permissions of %s", path.name)


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
        self._unlocked_with: SlotKind | None = None

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
        tighten_profile_modes(profile_dir)
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
        vault._unlocked_with = "passphrase"
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
            tighten_profile_modes(profile_dir)
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
        if not slot_file.is_settled:
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
            rekey_pending=not slot_file.is_settled,
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
        """Whether slot operations and rekey are possible (unlocked by a secret that opens
        everything, not attached with an agent's keys nor by a Standard-only slot)."""
        return self._vault_key is not None

    @property
    def open_tiers(self) -> tuple[Tier, ...]:
        """The tiers whose database key is held now (none while locked)."""
        return tuple(tier for tier in TIERS if tier in self._database_keys)

    @property
    def unlocked_with(self) -> SlotKind | None:
        """The kind of slot that unlocked the vault (None while locked or attached)."""
        return self._unlocked_with

    def agent_keys(self) -> AgentKeys:
        """Copies of the database keys with the vault id and key generations, for an
        unlock agent (``app.agent``). The caller owns the copies: wipe them when done."""
        with self._state_lock:
            self._require_database_keys()
            if set(self.open_tiers) != set(TIERS):
                raise VaultLockedError(
                    "The unlock agent serves both Standard and Private chats, and this "
                    "unlock opened only Standard ones (the keychain and Touch ID do not open "
                    "Private chats). Unlock with your passphrase, a security key or the "
                    "recovery code."
                )
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
            self._unlocked_with = None
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

    def require_vault_key(self) -> None:
        """Raise :class:`VaultLockedError`, saying what to unlock with, unless slot changes,
        rekey and rotation are possible (a full unlock by a secret holds the vault key)."""
        self._require_key()

    def _require_key(self) -> bytes:
        if self._vault_key is None:
            if self._unlocked_with in STORE_KINDS:
                raise VaultLockedError(
                    "This needs your passphrase, a security key or the recovery code: the "
                    "keychain and Touch ID open only Standard chats and cannot change key "
                    "slots or keys."
                )
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
        """Check the file MAC, unwrap the database keys, finish an interrupted rekey or
        rotation, remove stray temporary files and migrate format-1 keychain slots."""
        self._slot_file.verify_mac(vault_key)
        keys = {
            tier: unwrap_database_key(self._slot_file.databases[tier], vault_key, self.vault_id)
            for tier in TIERS
        }
        with self._state_lock:
            self._wipe_keys()
            self._vault_key = bytearray(vault_key)
            self._database_keys = {tier: bytearray(key) for tier, key in keys.items()}
            self._idle.record_activity()
        try:
            if self._slot_file.pending_rekey:
                self._finish_interrupted_rekey()
            if self._slot_file.previous_keys:
                self._finish_rotation(temps_verified=False)
        except VaultError:
            self.lock()
            raise
        self._remove_stray_temps()
        self._migrate_legacy_store_slots()

    def _unlock_with(self, candidates: list[Slot], secret_for: Callable[[Slot], bytes]) -> None:
        last_error: WrongSecretError | None = None
        for slot in candidates:
            try:
                vault_key = open_slot(slot, secret_for(slot), self.vault_id)
            except WrongSecretError as error:
                last_error = error
                continue
            self._accept_vault_key(vault_key)
            self._unlocked_with = slot.kind
            logger.info("vault unlocked with %s slot %s", slot.kind, slot.id)
            return
        if last_error is None:
            raise NoSecretAvailableError("The vault has no slot of that kind.")
        raise last_error

    def verify_passphrase(self, passphrase: str) -> None:
        """Check that ``passphrase`` opens this vault's passphrase slot (an Argon2id run);
        raise :class:`WrongSecretError` otherwise. Changes nothing, keeps no key."""
        candidates = self._slot_file.slots_of("passphrase")
        if not candidates:
            raise NoSecretAvailableError("This vault has no passphrase slot.")
        last_error: WrongSecretError | None = None
        for slot in candidates:
            secret = derive_passphrase_secret(passphrase, slot.salt, slot.kdf_params)
            try:
                vault_key = open_slot(slot, secret, self.vault_id)
            except WrongSecretError as error:
                last_error = error
                continue
            current = self._vault_key
            if current is not None and not secrets.compare_digest(bytes(current), vault_key):
                raise DamagedSlotFileError(
                    f"The passphrase slot in {SLOT_FILE_NAME} opens another key than the one "
                    "in use: the file changed behind Hushchat's back. Lock and unlock again."
                )
            return
        assert last_error is not None
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
        """Unlock the Standard tier with a keychain or Touch ID item.

        A Standard-only slot unwraps just the Standard database key. Its wrap's
        associated data binds the slot's fields, the vault id and the Standard key record,
        and SQLCipher authenticates every page; the file MAC (keyed by VK, which this
        unlock never sees) is checked at the next full unlock (docs/security.md). A
        format-1 slot still yields VK: it is used once to check the MAC and re-create the
        slot Standard-only, then dropped, so this unlock opens Standard only either way.
        """
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
            if slot.tier is None:
                self._unlock_with([slot], _constant(secret))
                self._restrict_to_standard(slot.kind)
            else:
                self._accept_standard_key(slot, secret)
            logger.info("vault unlocked (Standard tier only) with %s slot %s", slot.kind, slot.id)
            return
        raise errors[0]

    def _accept_standard_key(self, slot: Slot, secret: bytes) -> None:
        if not self._slot_file.is_settled:
            raise VaultLockedError(_FINISH_WITH_A_FULL_UNLOCK)
        record = self._slot_file.databases[_STANDARD]
        key = open_tier_slot(slot, secret, self.vault_id, record)
        with self._state_lock:
            if self._vault_key is not None:
                return  # already unlocked with more: keep it
            self._wipe_keys()
            self._database_keys = {_STANDARD: bytearray(key)}
            self._unlocked_with = slot.kind
            self._idle.record_activity()

    def _restrict_to_standard(self, kind: SlotKind) -> None:
        """Keep only the Standard key after a format-1 store slot yielded VK."""
        with self._state_lock:
            for tier in TIERS:
                if tier != _STANDARD:
                    for connection in self._connections[tier]:
                        with contextlib.suppress(sqlcipher3.Error):
                            connection.close()
                    self._connections[tier].clear()
            standard = bytearray(self._database_keys[_STANDARD])
            self._wipe_keys()
            self._database_keys = {_STANDARD: standard}
            self._unlocked_with = kind

    def _wipe_keys(self) -> None:
        for key in [self._vault_key, *self._database_keys.values()]:
            if key is not None:
                key[:] = bytes(len(key))
        self._vault_key = None
        self._database_keys = {}

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
            if tier not in self._database_keys:
                raise VaultLockedError(
                    f"{tier.title()} chats are locked: unlock with your passphrase, a "
                    "security key or the recovery code to open them (the keychain and "
                    "Touch ID open only Standard chats)."
                )
            raw = bytes(self._database_keys[tier])
            connection = database.open_database(self.profile_dir / f"{tier}.db", raw)
            self._connections[tier] = [c for c in self._connections[tier] if database.is_open(c)]
            self._connections[tier].append(connection)
            self._idle.record_activity()
            return connection

    @contextlib.contextmanager
    def connection(self, tier: Tier) -> Iterator[Any]:
        """A connection for one short operation on any thread, closed after it.

        Held under the vault's state lock, so :meth:`lock` (from the window's thread)
        waits for it instead of closing the connection under a running query, which
        crashes SQLite."""
        with self._state_lock:
            connection = self.connect(tier)
            try:
                yield connection
            finally:
                connection.close()

    def verify_databases(self) -> tuple[Tier, ...]:
        """Run SQLCipher's page authentication and SQLite's integrity check on the files
        of the open tiers (both after a full unlock); return the tiers checked."""
        with self._state_lock:
            self._require_database_keys()
            checked = self.open_tiers
            for tier in checked:
                database.check_integrity(
                    self.profile_dir / f"{tier}.db", bytes(self._database_keys[tier])
                )
            return checked

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
            self._require_key()
            record = self._slot_file.databases[_STANDARD]
            secret = secrets.token_bytes(_KEY_BYTES)
            account = f"{self.vault_id.hex()}/{secrets.token_hex(4)}"
            store.store(service, account, secret)
            try:
                slot = new_tier_slot(
                    kind=kind,
                    label=label,
                    salt=secrets.token_bytes(_SALT_BYTES),
                    params={"service": service, "account": account},
                    slot_secret=secret,
                    database_key=bytes(self._database_keys[_STANDARD]),
                    record=record,
                    vault_id=self.vault_id,
                )
                self._write(replace(self._slot_file, slots=(*self._slot_file.slots, slot)))
            except BaseException:
                store.delete(service, account)
                raise
            logger.info("%s slot %s added (Standard tier only)", kind, slot.id)
            return SlotInfo.of(slot)

    def _store_for(self, kind: SlotKind) -> SecretStore:
        return self._keychain() if kind == "keychain" else self._touch_id()

    def _delete_store_items(self, slots: Sequence[Slot]) -> None:
        """Forget the keychain / Touch ID items of slots no longer in the file."""
        for slot in slots:
            if slot.kind not in STORE_KINDS:
                continue
            try:
                self._store_for(slot.kind).delete(
                    str(slot.params["service"]), str(slot.params["account"])
                )
            except (UnlockMethodUnavailableError, NoSecretAvailableError):
                logger.warning("could not delete the %s item of slot %s", slot.kind, slot.id)

    def _new_store_slot(self, old: Slot, record: DatabaseKey, database_key: bytes) -> Slot:
        """A Standard-only slot of ``old``'s kind and label under a new secret, stored in a
        new keychain item (the old item stays until the caller deletes it).

        Raises :class:`UnlockMethodUnavailableError` when the store cannot be written.
        """
        store = self._store_for(old.kind)
        service = _SERVICE_OF_KIND[old.kind]
        account = f"{self.vault_id.hex()}/{secrets.token_hex(4)}"
        secret = secrets.token_bytes(_KEY_BYTES)
        store.store(service, account, secret)
        return new_tier_slot(
            kind=old.kind,
            label=old.label,
            salt=secrets.token_bytes(_SALT_BYTES),
            params={"service": service, "account": account},
            slot_secret=secret,
            database_key=database_key,
            record=record,
            vault_id=self.vault_id,
        )

    def _renewed_store_slots(
        self, slots: Sequence[Slot], record: DatabaseKey, database_key: bytes, *, legacy: bool
    ) -> tuple[list[Slot], list[Slot], list[Slot]]:
        """Re-create the Standard-only store slots (or, with ``legacy``, the format-1 ones)
        for ``record``. Returns the new slot list, the slots replaced, and those dropped
        because their store cannot be written here."""
        result: list[Slot] = []
        replaced: list[Slot] = []
        dropped: list[Slot] = []
        for slot in slots:
            wanted = slot.is_legacy_store_slot if legacy else slot.tier is not None
            if not wanted:
                result.append(slot)
                continue
            try:
                result.append(self._new_store_slot(slot, record, database_key))
            except UnlockMethodUnavailableError as error:
                if legacy:
                    logger.warning("kept format-1 %s slot %s: %s", slot.kind, slot.id, error)
                    result.append(slot)
                    continue
                logger.warning("dropped %s slot %s: %s", slot.kind, slot.id, error)
                dropped.append(slot)
                continue
            replaced.append(slot)
        return result, replaced, dropped

    def _migrate_legacy_store_slots(self) -> None:
        """Re-create format-1 keychain / Touch ID slots (which wrap VK) as Standard-only
        slots. Best effort: a store that cannot be written here keeps its slot for the next
        full unlock (meanwhile it is used for the Standard tier only)."""
        if not any(slot.is_legacy_store_slot for slot in self._slot_file.slots):
            return
        with self._state_lock:
            record = self._slot_file.databases[_STANDARD]
            slots, replaced, _ = self._renewed_store_slots(
                self._slot_file.slots,
                record,
                bytes(self._database_keys[_STANDARD]),
                legacy=True,
            )
            if not replaced:
                return
            created = [slot for slot in slots if slot not in self._slot_file.slots]
            try:
                self._write(replace(self._slot_file, slots=tuple(slots)))
            except (OSError, VaultError) as error:
                logger.warning("could not migrate the keychain slots: %s", error)
                self._delete_store_items(created)
                return
            self._delete_store_items(replaced)
            logger.info("re-created %d keychain slot(s) as Standard-only", len(replaced))

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
            self._delete_store_items([slot])

    # ----------------------------------------------------------------- rekey

    def rekey(self, tiers: tuple[Tier, ...] = TIERS) -> None:
        """Re-encrypt the databases under fresh random keys, safe against a crash.

        Per tier: record the new key as pending in the slot file; export the database into
        ``<tier>.db.rekey`` under the new key and verify it by reopening; atomically rename
        it over the original; then make the new key current. If the process dies anywhere,
        the next unlock sees the pending key, tests which key opens the file, and finishes
        or abandons the rekey: exactly one key works and no row is lost.

        The vault key and the slots stay (Standard-only keychain slots are re-created for
        the new Standard key); :meth:`rotate_keys` replaces everything.
        """
        with self._state_lock:
            vault_key = self._require_key()
            for tier in tiers:
                path = self.profile_dir / f"{tier}.db"
                temp = path.with_name(path.name + _REKEY_SUFFIX)
                self._close_connections(tier)
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
                self._swap_in(path, temp, "rekey")
                self._promote_pending(tier, new_key)
                self._database_keys[tier] = bytearray(new_key)
                logger.info("%s database rekeyed to generation %d", tier, pending.generation)

    def _close_connections(self, tier: Tier) -> None:
        for connection in self._connections[tier]:
            with contextlib.suppress(sqlcipher3.Error):
                connection.close()
        self._connections[tier].clear()

    def _swap_in(self, path: Path, temp: Path, what: str) -> None:
        """Rename a verified re-encrypted copy over the database (its WAL must be empty)."""
        for companion in ("-wal", "-shm"):
            leftover = path.with_name(path.name + companion)
            if leftover.exists() and leftover.stat().st_size and companion == "-wal":
                raise DatabaseDamagedError(
                    f"{path.name} still has an unmerged write-ahead log after a checkpoint; "
                    f"the {what} was not finished. Close other Hushchat windows and commands, "
                    "then unlock again."
                )
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        temp.replace(path)
        fsync_directory(self.profile_dir)

    def _abandon_pending(self, tier: Tier, temp: Path) -> None:
        """Forget a pending key whose export failed; the original file is untouched."""
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        pending = {t: r for t, r in self._slot_file.pending_rekey.items() if t != tier}
        self._write(replace(self._slot_file, pending_rekey=pending))

    def _promote_pending(self, tier: Tier, new_key: bytes) -> None:
        """Make a pending key current (one atomic write); for the Standard tier, re-create
        the Standard-only store slots for the new key in the same write."""
        pending = dict(self._slot_file.pending_rekey)
        record = pending.pop(tier)
        databases = {**self._slot_file.databases, tier: record}
        slots: Sequence[Slot] = self._slot_file.slots
        replaced: list[Slot] = []
        if tier == _STANDARD:
            slots, replaced, dropped = self._renewed_store_slots(
                slots, record, new_key, legacy=False
            )
            for slot in dropped:
                logger.warning("rekey dropped %s slot %s: no store here", slot.kind, slot.id)
        created = [slot for slot in slots if slot not in self._slot_file.slots]
        try:
            self._write(
                replace(
                    self._slot_file,
                    databases=databases,
                    pending_rekey=pending,
                    slots=tuple(slots),
                )
            )
        except BaseException:
            self._delete_store_items(created)
            raise
        self._delete_store_items(replaced)

    def _finish_interrupted_rekey(self) -> None:
        vault_key = self._require_key()
        for tier, record in sorted(self._slot_file.pending_rekey.items()):
            path = self.profile_dir / f"{tier}.db"
            temp = path.with_name(path.name + _REKEY_SUFFIX)
            new_key = unwrap_database_key(record, vault_key, self.vault_id)
            if database.key_opens(path, new_key):
                self._promote_pending(tier, new_key)
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

    def _remove_stray_temps(self) -> None:
        """Delete re-encrypted copies a crash left behind before anything recorded them.

        With no rekey or rotation pending, a ``<tier>.db.rekey`` file is under a key that
        was never written down (a rotation killed before its commit): it opens nothing.
        """
        if not self._slot_file.is_settled:
            return
        for tier in TIERS:
            temp = self.profile_dir / f"{tier}.db{_REKEY_SUFFIX}"
            companions = (temp.with_name(temp.name + s) for s in ("-journal", "-wal", "-shm"))
            for leftover in (temp, *companions):
                if leftover.exists():
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
                    logger.info("removed %s, left by an interrupted key rotation", leftover.name)

    # ----------------------------------------------------------------- rotation

    def touch_security_key(self, key: SecurityKey) -> TouchedKey:
        """Ask an enrolled security key for a fresh secret for :meth:`rotate_keys` (one
        touch, maybe the PIN). Whichever enrolled credential the key holds answers; the
        result names its slot. Changes nothing."""
        with self._state_lock:
            self._require_key()
            candidates = self._slot_file.slots_of("security-key")
        if not candidates:
            raise NoSecretAvailableError("This vault has no security-key slot.")
        salts = {slot.credential_id: secrets.token_bytes(_PRF_SALT_BYTES) for slot in candidates}
        flags = {bool(slot.params["user_verification"]) for slot in candidates}
        user_verification = flags.pop() if len(flags) == 1 else None
        result = key.evaluate(
            salts, user_verification=user_verification, rp_id=str(candidates[0].params["rp_id"])
        )
        slot = next((s for s in candidates if s.credential_id == result.credential_id), None)
        if slot is None:
            raise WrongSecretError("This security key is not enrolled in this vault.")
        if bool(slot.params["user_verification"]) and not result.user_verified:
            raise WrongSecretError(
                "This security key was enrolled with its PIN; enter the PIN when asked."
            )
        return TouchedKey(slot.id, salts[slot.credential_id], result.output, result.user_verified)

    def rotation_drops(
        self,
        *,
        keep_passphrase: bool,
        touched: Collection[str] = (),
        drop: Collection[str] = (),
        recovery_code: bool = True,
    ) -> list[SlotInfo]:
        """The slots a :meth:`rotate_keys` with these arguments would drop (no secret
        needed): passphrase slots without a passphrase, security keys not touched, slots
        named in ``drop`` (keychain and Touch ID slots are re-created, unless their store
        turns out to be unavailable then)."""
        dropped: list[SlotInfo] = []
        recovery_code = recovery_code and not self._drops_recovery(drop)
        for slot in self._slot_file.slots:
            gone = slot.id in drop or (
                (slot.kind == "passphrase" and not keep_passphrase)
                or (slot.kind == "security-key" and slot.id not in touched)
                or (slot.kind == "recovery" and not recovery_code)
            )
            if gone:
                dropped.append(SlotInfo.of(slot))
        return dropped

    def rotate_keys(
        self,
        *,
        passphrase: str | None,
        touched: Sequence[TouchedKey] = (),
        drop: Collection[str] = (),
        recovery_code: bool = True,
        kdf: KdfParams | None = None,
    ) -> Rotation:
        """Replace the vault key and both database keys, and rewrap for the secrets present.

        The new slots: a passphrase slot for ``passphrase`` (the current one typed again, or
        a new one; None drops the passphrase), one per security key in ``touched`` (from
        :meth:`touch_security_key`), keychain and Touch ID slots re-created with new items,
        and a new recovery code (returned: show it once; none with ``recovery_code`` False
        or when the recovery slot is in ``drop``). Every other slot is dropped, and
        the generation of both database keys goes up, so unlock agents holding the old keys
        are refused. An old copy of ``vault.json`` with an old secret opens nothing current.

        Crash safety: both databases are exported under their new keys into
        ``<tier>.db.rekey`` (verified, fsynced) while the slot file still holds only the
        old keys; one atomic write then commits the new slot file (new VK, new slots, new
        database keys, and the old database keys wrapped under the new VK as
        ``previous_keys``); the copies are renamed in and ``previous_keys`` dropped. Killed
        before the commit, the old secrets open the untouched old files (the copies are
        deleted at the next unlock); after it, only the new secrets open the vault and the
        next unlock re-encrypts whatever file was not swapped yet. ``kdf`` defaults to the
        old passphrase slot's parameters.
        """
        with self._state_lock:
            self._require_key()
            old = self._slot_file
            if not old.is_settled:  # finished at unlock; only a failed finish leaves it
                raise VaultLockedError(_FINISH_WITH_A_FULL_UNLOCK)
            if passphrase is not None and not passphrase:
                raise WrongSecretError("The passphrase is empty; type it.")
            recovery_code = recovery_code and not self._drops_recovery(drop)
            by_id = {item.slot_id: item for item in touched}
            for slot_id in by_id:
                slot = old.slot(slot_id)
                if slot is None or slot.kind != "security-key":
                    raise SlotNotFoundError(f"No security-key slot has the id {slot_id!r}.")
            _lock_unlock_agent(self.profile_dir)
            for tier in TIERS:
                self._close_connections(tier)
            new_vault_key = secrets.token_bytes(_KEY_BYTES)
            old_keys = {tier: bytes(self._database_keys[tier]) for tier in TIERS}
            new_keys = {tier: secrets.token_bytes(_KEY_BYTES) for tier in TIERS}
            records = {
                tier: wrap_database_key(
                    tier=tier,
                    file=old.databases[tier].file,
                    generation=old.databases[tier].generation + 1,
                    raw_key=new_keys[tier],
                    vault_key=new_vault_key,
                    vault_id=self.vault_id,
                )
                for tier in TIERS
            }
            created: list[Slot] = []
            temps = {tier: self.profile_dir / f"{tier}.db{_REKEY_SUFFIX}" for tier in TIERS}
            try:
                slots, dropped, code = self._rotated_slots(
                    old,
                    passphrase=passphrase,
                    touched=by_id,
                    drop=drop,
                    recovery_code=recovery_code,
                    kdf=kdf,
                    vault_key=new_vault_key,
                    standard=(records[_STANDARD], new_keys[_STANDARD]),
                    created=created,
                )
                for tier in TIERS:
                    path = self.profile_dir / f"{tier}.db"
                    database.export_with_new_key(path, old_keys[tier], temps[tier], new_keys[tier])
                previous = {
                    tier: wrap_database_key(
                        tier=tier,
                        file=old.databases[tier].file,
                        generation=old.databases[tier].generation,
                        raw_key=old_keys[tier],
                        vault_key=new_vault_key,
                        vault_id=self.vault_id,
                    )
                    for tier in TIERS
                }
                committed = SlotFile(
                    vault_id=self.vault_id,
                    created=old.created,
                    databases=records,
                    slots=tuple(slots),
                    previous_keys=previous,
                ).sealed(new_vault_key)
                write_atomically(_slot_path(self.profile_dir), committed.to_bytes())
            except BaseException:
                for temp in temps.values():
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
                self._delete_store_items(created)
                raise
            # Committed: from here on only the new secrets open the vault.
            self._slot_file = committed
            self._wipe_keys()
            self._vault_key = bytearray(new_vault_key)
            self._database_keys = {tier: bytearray(new_keys[tier]) for tier in TIERS}
            logger.info(
                "keys rotated (generation %d); %d slot(s) kept, %d dropped",
                records[_STANDARD].generation,
                len(slots),
                len(dropped),
            )
            unfinished: str | None = None
            try:
                self._finish_rotation(temps_verified=True)
            except (OSError, VaultError) as error:
                # The new keys are the vault's now (the new recovery code must still be
                # shown); the next unlock finishes the swap.
                logger.warning("key rotation committed but not finished: %s", error)
                unfinished = f"{error} Lock and unlock again to finish the key rotation."
                self.lock()
            self._delete_store_items([s for s in old.slots if s.kind in STORE_KINDS])
            return Rotation(
                code,
                tuple(SlotInfo.of(slot) for slot in slots),
                tuple(SlotInfo.of(slot) for slot in dropped),
                unfinished,
            )

    def _drops_recovery(self, drop: Collection[str]) -> bool:
        return any(slot.id in drop for slot in self._slot_file.slots_of("recovery"))

    def _rotated_slots(
        self,
        old: SlotFile,
        *,
        passphrase: str | None,
        touched: dict[str, TouchedKey],
        drop: Collection[str],
        recovery_code: bool,
        kdf: KdfParams | None,
        vault_key: bytes,
        standard: tuple[DatabaseKey, bytes],
        created: list[Slot],
    ) -> tuple[list[Slot], list[Slot], RecoveryCode | None]:
        """The new slot list of a rotation (old order kept), the old slots dropped, and
        the new recovery code. Store items it creates are appended to ``created``."""
        slots: list[Slot] = []
        dropped: list[Slot] = []
        code: RecoveryCode | None = None
        passphrase_done = recovery_done = False
        old_passphrases = old.slots_of("passphrase")
        for slot in old.slots:
            if slot.id in drop:
                dropped.append(slot)
            elif slot.kind == "passphrase":
                if passphrase is None or passphrase_done:
                    dropped.append(slot)
                    continue
                params = kdf or slot.kdf_params
                slots.append(_passphrase_slot(passphrase, params, vault_key, self.vault_id))
                passphrase_done = True
            elif slot.kind == "security-key":
                item = touched.get(slot.id)
                if item is None:
                    dropped.append(slot)
                    continue
                slots.append(
                    new_slot(
                        kind="security-key",
                        label=slot.label,
                        salt=item.salt,
                        params={**slot.params, "user_verification": item.user_verified},
                        slot_secret=item.output,
                        vault_key=vault_key,
                        vault_id=self.vault_id,
                    )
                )
            elif slot.kind in STORE_KINDS:
                try:
                    renewed = self._new_store_slot(slot, *standard)
                except UnlockMethodUnavailableError as error:
                    logger.warning("rotation drops %s slot %s: %s", slot.kind, slot.id, error)
                    dropped.append(slot)
                    continue
                created.append(renewed)
                slots.append(renewed)
            elif recovery_code and not recovery_done:
                code = RecoveryCode.generate()
                slots.append(_recovery_slot(code, vault_key, self.vault_id))
                recovery_done = True
            else:
                dropped.append(slot)
        if passphrase is not None and not passphrase_done:
            params = kdf or (old_passphrases[0].kdf_params if old_passphrases else calibrate())
            slots.insert(0, _passphrase_slot(passphrase, params, vault_key, self.vault_id))
        if recovery_code and not recovery_done:
            code = RecoveryCode.generate()
            slots.append(_recovery_slot(code, vault_key, self.vault_id))
        if not slots:
            raise LastSlotError(
                "The rotation would leave no way to unlock the vault; keep the passphrase, a "
                "security key or the recovery code."
            )
        return slots, dropped, code

    def _finish_rotation(self, *, temps_verified: bool) -> None:
        """Swap in each tier's re-encrypted copy, then forget the previous keys.

        Right after the commit the copies are the ones just verified (``temps_verified``).
        After a crash a copy may be missing or half-written, so it is made again from the
        original, which nothing has written to since the commit.
        """
        vault_key = self._require_key()
        for tier, previous in sorted(self._slot_file.previous_keys.items()):
            path = self.profile_dir / f"{tier}.db"
            temp = path.with_name(path.name + _REKEY_SUFFIX)
            new_key = bytes(self._database_keys[tier])
            if not temps_verified and database.key_opens(path, new_key):
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
                continue
            if not temps_verified:
                old_key = unwrap_database_key(previous, vault_key, self.vault_id)
                if not database.key_opens(path, old_key):
                    raise DatabaseDamagedError(
                        f"Neither the new nor the previous key opens {path.name}; restore the "
                        "profile from a backup. Nothing was overwritten."
                    )
                database.export_with_new_key(path, old_key, temp, new_key)
                logger.info("re-encrypting the %s database to finish a key rotation", tier)
            self._swap_in(path, temp, "key rotation")
        self._write(replace(self._slot_file, previous_keys={}))
        logger.info("key rotation finished")


def _lock_unlock_agent(profile_dir: Path) -> None:
    """Ask a running unlock agent of this profile to forget its keys before a rotation: a
    command it serves could otherwise write to a database after it was copied (the new
    key generations would refuse the agent afterwards anyway)."""
    from app.agent.client import lock  # stdlib only; never raises for "no agent"

    if lock(profile_dir):
        logger.info("asked the unlock agent to lock before rotating keys")


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

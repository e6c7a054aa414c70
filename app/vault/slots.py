"""The key-slot file (``vault.json``): format, validation, and the AES-GCM wraps.

One JSON document, versioned, written atomically. It holds

* ``vault_id`` - 16 random bytes naming this vault (bound into every wrap);
* ``databases`` - per tier, the database's random 256-bit key wrapped by the vault key
  (AES-256-GCM under ``HKDF(VK, "database-key-wrap")``, associated data = vault id,
  tier, file name, key generation);
* ``pending_rekey`` - the next database keys while a rekey is in flight (crash safety);
* ``previous_keys`` (version 2) - while a key rotation finishes, the database keys the
  files may still be encrypted with, wrapped under the *new* vault key (crash safety);
* ``slots`` - one AES-256-GCM wrap per unlock method, under a key derived from the
  method's secret; the associated data is the canonical JSON of every other field of the
  slot plus the vault id, so editing any of them makes unwrap fail. Most slots wrap the
  vault key; keychain and Touch ID slots with ``"tier": "standard"`` wrap only the
  Standard database key (their associated data also binds that key's record), so they
  cannot open Private chats;
* ``mac`` - HMAC-SHA256 of everything above under ``HKDF(VK, "slot-file-mac")``, checked
  after every unlock that yields the vault key: a slot removed or a wrap swapped by
  someone without the vault key is seen (a Standard-only unlock cannot check it; see
  ``docs/security.md`` for why that is sound);
* ``checksum`` - SHA-256 of the rest, checked before anything else so that truncation or
  accidental edits are reported as damage instead of as a wrong passphrase.

Version 1 files (no ``previous_keys``; keychain slots that wrap the vault key) are read
as they are and written back unchanged by the parser; the vault writes version 2 on its
next change, and migrates version-1 keychain slots on the next full unlock.
The format is documented with an example in ``docs/security.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, cast, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.tiers import STORED_TIERS, Tier
from app.vault.errors import DamagedSlotFileError, KdfBelowFloorError, WrongSecretError
from app.vault.kdf import KdfParams, SlotKind, hkdf_slot_key

__all__ = [
    "FORMAT",
    "READABLE_VERSIONS",
    "SLOT_FILE_NAME",
    "TIERS",
    "VERSION",
    "DatabaseKey",
    "Slot",
    "SlotFile",
    "Tier",
    "WrappedKey",
    "canonical_json",
    "new_slot",
    "new_tier_slot",
    "open_slot",
    "open_tier_slot",
    "unwrap_database_key",
    "wrap_database_key",
]

FORMAT: Final = "hushchat-vault"
VERSION: Final = 2
#: Version 1 lacks ``previous_keys`` and knows only keychain slots that wrap the vault key.
READABLE_VERSIONS: Final = (1, 2)
SLOT_FILE_NAME: Final = "vault.json"
TIERS: Final = STORED_TIERS
SLOT_KINDS: Final[tuple[str, ...]] = get_args(SlotKind)
#: Slot kinds whose secret sits in an OS store any process of the user may read.
STORE_KINDS: Final = ("keychain", "touch-id")
_KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_SLOT_AD_PREFIX: Final = b"hushchat-vault/v1/slot\0"
_DATABASE_AD_PREFIX: Final = b"hushchat-vault/v1/database-key\0"
_MAC_PREFIX: Final = b"hushchat-vault/v1/file\0"


def canonical_json(value: Any) -> bytes:
    """Serialize deterministically (sorted keys, no spaces, ASCII) for hashing and AD."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class WrappedKey:
    """An AES-256-GCM ciphertext of a 32-byte key with its 12-byte nonce."""

    nonce: bytes
    ciphertext: bytes

    def to_json(self) -> dict[str, str]:
        """Return the slot-file representation."""
        return {"nonce": _b64(self.nonce), "ciphertext": _b64(self.ciphertext)}


def _seal(key: bytes, plaintext: bytes, associated_data: bytes) -> WrappedKey:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return WrappedKey(nonce, AESGCM(key).encrypt(nonce, plaintext, associated_data))


def _open(key: bytes, wrapped: WrappedKey, associated_data: bytes) -> bytes | None:
    try:
        return AESGCM(key).decrypt(wrapped.nonce, wrapped.ciphertext, associated_data)
    except InvalidTag:
        return None


@dataclass(frozen=True)
class Slot:
    """One unlock method: the vault key wrapped under a key derived from its secret.

    ``params`` holds the kind's public parameters as JSON values: Argon2id costs for a
    passphrase, credential id / RP id / user-verification flag for a security key, the
    keychain service and account for keychain and Touch ID slots (plus ``"tier":
    "standard"`` when the slot wraps only the Standard database key), nothing for recovery.
    """

    id: str
    kind: SlotKind
    label: str
    created: str
    salt: bytes
    params: Mapping[str, Any]
    wrapped: WrappedKey

    def public_json(self) -> dict[str, Any]:
        """Return every field except the wrap: exactly what the associated data binds."""
        return {
            "id": self.id,
            "type": self.kind,
            "label": self.label,
            "created": self.created,
            "salt": _b64(self.salt),
            "params": dict(self.params),
        }

    def to_json(self) -> dict[str, Any]:
        """Return the slot-file representation."""
        return {**self.public_json(), "wrapped_key": self.wrapped.to_json()}

    def associated_data(self, vault_id: bytes) -> bytes:
        """Return the AES-GCM associated data binding every field and the vault id."""
        return _SLOT_AD_PREFIX + canonical_json(
            {"vault_id": _b64(vault_id), "slot": self.public_json()}
        )

    @property
    def tier(self) -> Tier | None:
        """The one tier a Standard-only slot opens; None when it wraps the vault key."""
        value = self.params.get("tier") if self.kind in STORE_KINDS else None
        return cast(Tier, value) if value is not None else None

    @property
    def is_legacy_store_slot(self) -> bool:
        """A keychain or Touch ID slot of format 1, wrapping the whole vault key."""
        return self.kind in STORE_KINDS and self.tier is None

    def tier_associated_data(self, vault_id: bytes, record: DatabaseKey) -> bytes:
        """The associated data of a Standard-only wrap: the slot's fields, the vault id and
        the database-key record (tier, file, generation) it opens."""
        return _SLOT_AD_PREFIX + canonical_json(
            {
                "vault_id": _b64(vault_id),
                "slot": self.public_json(),
                "database": record.public_json(),
            }
        )

    @property
    def kdf_params(self) -> KdfParams:
        """Argon2id parameters of a passphrase slot."""
        if self.kind != "passphrase":
            raise TypeError(f"a {self.kind} slot has no KDF parameters")
        return KdfParams(
            int(self.params["memory_kib"]),
            int(self.params["iterations"]),
            int(self.params["parallelism"]),
        )

    @property
    def credential_id(self) -> bytes:
        """FIDO2 credential id of a security-key slot."""
        if self.kind != "security-key":
            raise TypeError(f"a {self.kind} slot has no credential")
        return base64.b64decode(str(self.params["credential_id"]), validate=True)


def new_slot(
    *,
    kind: SlotKind,
    label: str,
    salt: bytes,
    params: Mapping[str, Any],
    slot_secret: bytes,
    vault_key: bytes,
    vault_id: bytes,
) -> Slot:
    """Create a slot wrapping ``vault_key`` under ``HKDF(slot_secret, kind label)``."""
    draft = Slot(
        id=secrets.token_hex(4),
        kind=kind,
        label=label,
        created=_now(),
        salt=salt,
        params=dict(params),
        wrapped=WrappedKey(b"", b""),
    )
    key = hkdf_slot_key(slot_secret, kind)
    return replace(draft, wrapped=_seal(key, vault_key, draft.associated_data(vault_id)))


def open_slot(slot: Slot, slot_secret: bytes, vault_id: bytes) -> bytes:
    """Unwrap the vault key from a slot, or raise :class:`WrongSecretError`."""
    key = hkdf_slot_key(slot_secret, slot.kind)
    vault_key = _open(key, slot.wrapped, slot.associated_data(vault_id))
    if vault_key is None or len(vault_key) != _KEY_BYTES:
        raise WrongSecretError(_WRONG_SECRET_MESSAGES[slot.kind])
    return vault_key


def new_tier_slot(
    *,
    kind: SlotKind,
    label: str,
    salt: bytes,
    params: Mapping[str, Any],
    slot_secret: bytes,
    database_key: bytes,
    record: DatabaseKey,
    vault_id: bytes,
) -> Slot:
    """Create a slot wrapping one tier's raw database key (not the vault key).

    ``record`` is the tier's current :class:`DatabaseKey`; its tier, file and generation are
    bound into the associated data, so the slot stops opening anything after a rekey of
    that tier (the vault re-creates such slots then).
    """
    draft = Slot(
        id=secrets.token_hex(4),
        kind=kind,
        label=label,
        created=_now(),
        salt=salt,
        params={**params, "tier": str(record.tier)},
        wrapped=WrappedKey(b"", b""),
    )
    key = hkdf_slot_key(slot_secret, kind)
    ad = draft.tier_associated_data(vault_id, record)
    return replace(draft, wrapped=_seal(key, database_key, ad))


def open_tier_slot(slot: Slot, slot_secret: bytes, vault_id: bytes, record: DatabaseKey) -> bytes:
    """Unwrap the database key of a Standard-only slot, or raise :class:`WrongSecretError`."""
    if slot.tier is None or slot.tier != record.tier:
        raise ValueError(f"slot {slot.id} does not wrap the {record.tier} database key")
    key = hkdf_slot_key(slot_secret, slot.kind)
    raw = _open(key, slot.wrapped, slot.tier_associated_data(vault_id, record))
    if raw is None or len(raw) != _KEY_BYTES:
        raise WrongSecretError(_WRONG_SECRET_MESSAGES[slot.kind])
    return raw


_WRONG_SECRET_MESSAGES: Final[dict[str, str]] = {
    "passphrase": "The passphrase does not open this vault; check it and try again.",
    "recovery": "The recovery code does not open this vault; check every group and try again.",
    "security-key": "This security key does not open this vault; try another enrolled key.",
    "keychain": "The keychain entry does not open this vault; unlock with your passphrase "
    "and add the keychain again.",
    "touch-id": "The Touch ID item does not open this vault; unlock with your passphrase "
    "and enrol Touch ID again.",
}


@dataclass(frozen=True)
class DatabaseKey:
    """The wrapped raw key of one tier's SQLCipher database."""

    tier: Tier
    file: str
    generation: int
    wrapped: WrappedKey

    def public_json(self) -> dict[str, Any]:
        """Return every field except the wrap."""
        return {"tier": self.tier, "file": self.file, "generation": self.generation}

    def to_json(self) -> dict[str, Any]:
        """Return the slot-file representation."""
        return {**self.public_json(), "wrapped_key": self.wrapped.to_json()}

    def associated_data(self, vault_id: bytes) -> bytes:
        """Return the AES-GCM associated data binding tier, file, generation, vault id."""
        return _DATABASE_AD_PREFIX + canonical_json(
            {"vault_id": _b64(vault_id), "database": self.public_json()}
        )


def wrap_database_key(
    *, tier: Tier, file: str, generation: int, raw_key: bytes, vault_key: bytes, vault_id: bytes
) -> DatabaseKey:
    """Wrap a database's raw key under the vault key."""
    draft = DatabaseKey(tier, file, generation, WrappedKey(b"", b""))
    key = hkdf_slot_key(vault_key, "database-wrap")
    return replace(draft, wrapped=_seal(key, raw_key, draft.associated_data(vault_id)))


def unwrap_database_key(record: DatabaseKey, vault_key: bytes, vault_id: bytes) -> bytes:
    """Unwrap a database's raw key; a failure means the slot file was tampered with."""
    key = hkdf_slot_key(vault_key, "database-wrap")
    raw = _open(key, record.wrapped, record.associated_data(vault_id))
    if raw is None or len(raw) != _KEY_BYTES:
        raise DamagedSlotFileError(
            f"The {record.tier} database key in {SLOT_FILE_NAME} does not decrypt: the file "
            "was modified. Restore it from a backup; nothing was changed."
        )
    return raw


@dataclass(frozen=True)
class SlotFile:
    """The parsed, validated content of ``vault.json``."""

    vault_id: bytes
    created: str
    databases: Mapping[Tier, DatabaseKey]
    slots: tuple[Slot, ...]
    pending_rekey: Mapping[Tier, DatabaseKey] = field(default_factory=dict)
    mac: bytes = b""
    #: Database keys a rotation replaced, kept (wrapped under the new vault key) until
    #: every file is re-encrypted under its new key. Version 2 only.
    previous_keys: Mapping[Tier, DatabaseKey] = field(default_factory=dict)
    #: The format version read (files are written back as read; :meth:`sealed` upgrades).
    version: int = VERSION

    def body_json(self) -> dict[str, Any]:
        """Return everything the MAC covers."""
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": self.version,
            "vault_id": _b64(self.vault_id),
            "created": self.created,
            "databases": {tier: self.databases[tier].to_json() for tier in TIERS},
            "pending_rekey": {
                tier: record.to_json() for tier, record in sorted(self.pending_rekey.items())
            },
            "slots": [slot.to_json() for slot in self.slots],
        }
        if self.version >= 2:
            body["previous_keys"] = {
                tier: record.to_json() for tier, record in sorted(self.previous_keys.items())
            }
        return body

    @property
    def is_settled(self) -> bool:
        """Whether no rekey or rotation is waiting to be finished."""
        return not self.pending_rekey and not self.previous_keys

    def compute_mac(self, vault_key: bytes) -> bytes:
        """Return HMAC-SHA256 of the body under the vault's file-MAC key."""
        key = hkdf_slot_key(vault_key, "file-mac")
        return hmac.digest(key, _MAC_PREFIX + canonical_json(self.body_json()), "sha256")

    def sealed(self, vault_key: bytes) -> SlotFile:
        """Return a copy in the current format version whose MAC matches its content."""
        upgraded = replace(self, version=VERSION)
        return replace(upgraded, mac=upgraded.compute_mac(vault_key))

    def verify_mac(self, vault_key: bytes) -> None:
        """Raise :class:`DamagedSlotFileError` if the file was changed without the vault key."""
        if not hmac.compare_digest(self.mac, self.compute_mac(vault_key)):
            raise DamagedSlotFileError(
                f"{SLOT_FILE_NAME} was modified outside Hushchat (its authentication code "
                "does not match). Restore it from a backup; nothing was changed."
            )

    def to_bytes(self) -> bytes:
        """Serialize, with the checksum, as the bytes written to disk."""
        document = {**self.body_json(), "mac": _b64(self.mac)}
        document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")

    def slot(self, slot_id: str) -> Slot | None:
        """Return the slot with this id, if any."""
        return next((slot for slot in self.slots if slot.id == slot_id), None)

    def slots_of(self, kind: SlotKind) -> list[Slot]:
        """Return the slots of one kind, in file order."""
        return [slot for slot in self.slots if slot.kind == kind]

    @classmethod
    def from_bytes(cls, data: bytes) -> SlotFile:
        """Parse and validate; raise :class:`DamagedSlotFileError` on any deviation."""
        try:
            document = json.loads(data.decode("ascii"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            # RecursionError: arrays or objects nested thousands deep.
            raise _damaged(f"it is not valid JSON ({type(error).__name__})") from None
        parser = _Parser(document)
        return parser.parse()


def _damaged(reason: str) -> DamagedSlotFileError:
    return DamagedSlotFileError(
        f"The key-slot file {SLOT_FILE_NAME} is damaged: {reason}. Restore it from a backup; "
        "nothing was changed."
    )


class _Parser:
    """Strict reader of the slot file: exact keys, exact types, no extras."""

    def __init__(self, document: Any) -> None:
        self.document = document

    def parse(self) -> SlotFile:
        keys = {
            "format",
            "version",
            "vault_id",
            "created",
            "databases",
            "pending_rekey",
            "slots",
            "mac",
            "checksum",
        }
        if not isinstance(self.document, dict):
            raise _damaged("it is not a JSON object")
        document = cast(dict[str, Any], self.document)
        if document.get("format") != FORMAT:
            raise _damaged("it is not a Hushchat vault file")
        version = document.get("version")
        if type(version) is not int or version not in READABLE_VERSIONS:  # not 1.0, not true
            raise DamagedSlotFileError(
                f"{SLOT_FILE_NAME} has format version {version!r}; this Hushchat reads "
                f"versions {READABLE_VERSIONS[0]} to {VERSION}. Use the Hushchat release that "
                "wrote it, or a newer one."
            )
        if version >= 2:
            keys.add("previous_keys")
        self._object(document, "the file", keys)
        checksum = document["checksum"]
        rest = {key: value for key, value in document.items() if key != "checksum"}
        expected = "sha256:" + hashlib.sha256(canonical_json(rest)).hexdigest()
        if (
            not isinstance(checksum, str)
            or not checksum.isascii()  # compare_digest refuses other strings (TypeError)
            or not hmac.compare_digest(checksum, expected)
        ):
            raise _damaged("its checksum does not match (truncated or edited)")
        vault_id = self._bytes(document["vault_id"], "vault_id", length=16)
        created = self._str(document["created"], "created")
        databases = self._databases(document["databases"], "databases", require_all=True)
        pending = self._databases(document["pending_rekey"], "pending_rekey", require_all=False)
        previous: dict[Tier, DatabaseKey] = {}
        if version >= 2:
            previous = self._databases(
                document["previous_keys"], "previous_keys", require_all=False
            )
        slots_value = document["slots"]
        if not isinstance(slots_value, list) or not slots_value:
            raise _damaged("it lists no key slots")
        slots = tuple(self._slot(item, index) for index, item in enumerate(slots_value))
        if len({slot.id for slot in slots}) != len(slots):
            raise _damaged("two key slots share an id")
        mac = self._bytes(document["mac"], "mac", length=32)
        return SlotFile(vault_id, created, databases, slots, pending, mac, previous, version)

    def _object(
        self,
        value: Any,
        where: str,
        keys: set[str],
        *,
        required_only: set[str] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _damaged(f"{where} is not an object")
        required = keys if required_only is None else required_only
        missing = required - value.keys()
        extra = value.keys() - keys
        if missing:
            raise _damaged(f"{where} lacks {', '.join(sorted(missing))}")
        if extra:
            raise _damaged(f"{where} has unknown fields {', '.join(sorted(extra))}")
        return cast(dict[str, Any], value)

    def _str(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _damaged(f"{where} is not a string")
        return value

    def _bytes(self, value: Any, where: str, *, length: int | None = None) -> bytes:
        text = self._str(value, where)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):  # ValueError: a string that is not ASCII
            raise _damaged(f"{where} is not base64") from None
        if _b64(raw) != text:  # e.g. "AB==" for "AA==": the MAC covers the decoded bytes
            raise _damaged(f"{where} is not base64 as Hushchat writes it")
        if length is not None and len(raw) != length:
            raise _damaged(f"{where} has the wrong length")
        return raw

    def _wrapped(self, value: Any, where: str) -> WrappedKey:
        data = self._object(value, where, {"nonce", "ciphertext"})
        return WrappedKey(
            self._bytes(data["nonce"], f"{where}.nonce", length=_NONCE_BYTES),
            self._bytes(data["ciphertext"], f"{where}.ciphertext", length=_KEY_BYTES + 16),
        )

    def _databases(self, value: Any, where: str, *, require_all: bool) -> dict[Tier, DatabaseKey]:
        required: set[str] = set(TIERS) if require_all else set()
        data = self._object(value, where, {*TIERS}, required_only=required)
        result: dict[Tier, DatabaseKey] = {}
        for tier in TIERS:
            if tier not in data:
                continue
            item = self._object(
                data[tier], f"{where}.{tier}", {"tier", "file", "generation", "wrapped_key"}
            )
            generation = item["generation"]
            if item["tier"] != tier or item["file"] != f"{tier}.db":
                raise _damaged(f"{where}.{tier} names the wrong tier or file")
            if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
                raise _damaged(f"{where}.{tier}.generation is not a positive integer")
            wrapped = self._wrapped(item["wrapped_key"], f"{where}.{tier}.wrapped_key")
            result[tier] = DatabaseKey(tier, item["file"], generation, wrapped)
        return result

    def _slot(self, value: Any, index: int) -> Slot:
        where = f"slot {index + 1}"
        data = self._object(
            value, where, {"id", "type", "label", "created", "salt", "params", "wrapped_key"}
        )
        kind = data["type"]
        if kind not in SLOT_KINDS:
            raise _damaged(f"{where} has unknown type {kind!r}")
        slot_id = self._str(data["id"], f"{where}.id")
        if len(slot_id) != 8 or any(char not in "0123456789abcdef" for char in slot_id):
            raise _damaged(f"{where}.id is not 8 hex digits")
        slot = Slot(
            id=slot_id,
            kind=cast(SlotKind, kind),
            label=self._str(data["label"], f"{where}.label"),
            created=self._str(data["created"], f"{where}.created"),
            salt=self._bytes(data["salt"], f"{where}.salt"),
            params=self._params(cast(SlotKind, kind), data["params"], f"{where}.params"),
            wrapped=self._wrapped(data["wrapped_key"], f"{where}.wrapped_key"),
        )
        if len(slot.salt) < 16:
            raise _damaged(f"{where}.salt is shorter than 16 bytes")
        if slot.kind == "passphrase":
            try:
                _ = slot.kdf_params
            except KdfBelowFloorError as error:
                raise KdfBelowFloorError(
                    f"Passphrase slot {slot.id} in {SLOT_FILE_NAME}: {error} The file was "
                    "edited or written by a broken tool; restore it from a backup. Nothing "
                    "was changed."
                ) from None
        return slot

    def _params(self, kind: SlotKind, value: Any, where: str) -> dict[str, Any]:
        if kind == "passphrase":
            data = self._object(
                value, where, {"algorithm", "version", "memory_kib", "iterations", "parallelism"}
            )
            version = data["version"]
            if data["algorithm"] != "argon2id" or type(version) is not int or version != 0x13:
                raise _damaged(f"{where} names an unsupported KDF")
            for name in ("memory_kib", "iterations", "parallelism"):
                if not isinstance(data[name], int) or isinstance(data[name], bool):
                    raise _damaged(f"{where}.{name} is not an integer")
            return data
        if kind == "security-key":
            data = self._object(value, where, {"credential_id", "rp_id", "user_verification"})
            self._bytes(data["credential_id"], f"{where}.credential_id")
            self._str(data["rp_id"], f"{where}.rp_id")
            if not isinstance(data["user_verification"], bool):
                raise _damaged(f"{where}.user_verification is not a boolean")
            return data
        if kind in STORE_KINDS:
            data = self._object(
                value, where, {"service", "account", "tier"}, required_only={"service", "account"}
            )
            self._str(data["service"], f"{where}.service")
            self._str(data["account"], f"{where}.account")
            if "tier" in data and data["tier"] != "standard":
                raise _damaged(f'{where}.tier is not "standard"')
            return data
        return self._object(value, where, set())

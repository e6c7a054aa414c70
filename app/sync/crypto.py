"""Record encryption for sync: tier sync keys with epochs, per-chat keys, sealed records,
and the account's "keys" record (drawn in ``docs/security.md``, "Sync keys")::

    passphrase ──Argon2id──HKDF─┐
    recovery code ─────────HKDF─┴─> key-record private key (X25519) + signing key (Ed25519)
                                         (the "slots" of the keys record; no device keeps
                                          the private key, every device keeps the public
                                          key, the signing key and the slots blob)
    key-record public key ──ECDH+HKDF+AEAD──> every tier's current sync key ("keys" record)
    sync key (epoch e) ──AEAD──> sync key (epoch e+1)          ("rotation" records)
    Standard sync key (epoch e) ──AEAD──> chat key of each Standard chat ("chatkey" records)
    Private sync key  (epoch e) ──AEAD──> chat key of each Private chat
    chat key ──AEAD──> that chat's records (its settings, its messages, their tombstones)

* Sync keys and chat keys are random 256-bit keys. A key's id is random too, so the
  server cannot tell a Standard record from a Private one by its ``key_id``; it can tell
  which records share a chat key.
* Deleting a chat tombstones its records and moves its tier to a new epoch: the next
  sync key travels sealed under the old one (a "rotation" record: forward only), the
  remaining chat keys are re-wrapped (key records only, no message is re-encrypted), the
  "keys" record is sealed again to the public key (any device can: no passphrase needed)
  and the old sync key is destroyed on every device as it syncs. A server backup taken
  before the delete then holds the deleted chat's key only under a sync key no device
  holds any more (crypto-shredding); it stays readable to whoever also has the passphrase
  or recovery code *as they were* when the backup was taken (the "keys" record of that
  time, opened with the slots of that time).
* Every sealed payload is ``0x01 || nonce (12) || AES-256-GCM(key, plaintext, AAD)`` where
  the AAD binds the account, record id, kind, revision, deleted flag and key id (shared
  DESIGN §6): the server cannot swap, replay an old revision as new, or un-delete a
  record without the client noticing. The "keys" record is signed (Ed25519) over its
  header and body: the server knows the public key, so it could seal keys of its own
  choosing to it, but it cannot sign them.

Everything here is pure computation; the caller decides what to sync and when.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import HushchatError
from app.tiers import STORED_TIERS, Tier
from app.vault.kdf import KdfParams, derive_passphrase_secret

__all__ = [
    "KEYS_RECORD_ID",
    "KEY_BYTES",
    "AccountKeys",
    "ChatKey",
    "OpenedKeys",
    "RecordHeader",
    "RecordTamperedError",
    "SyncKey",
    "WrongKeySecretError",
    "create_account_keys",
    "keys_header",
    "open_keys_with_link",
    "open_keys_with_passphrase",
    "open_keys_with_recovery",
    "open_record",
    "read_keys_record",
    "rewrap_passphrase",
    "seal_key_entry",
    "seal_keys_record",
    "seal_record",
    "tier_slot",
    "unwrap_chat_key",
    "unwrap_next_key",
    "wrap_chat_key",
    "wrap_next_key",
]

KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_VERSION: Final = 1
_RECORD_AAD: Final = b"hushchat-record-v1\0"
_KEY_RECORD_LABELS: Final = {
    "passphrase": b"hushchat/sync/v2/key-record/passphrase",
    "recovery": b"hushchat/sync/v2/key-record/recovery",
}
_KEYS_VERSION: Final = 2
_SLOT_AAD: Final = b"hushchat-keys-slot-v2\0"
_ENTRY_AAD: Final = b"hushchat-keys-entry-v2\0"
_ENTRY_LABEL: Final = b"hushchat/sync/v2/keys-entry"
_KEYS_SIGNED: Final = b"hushchat-keys-record-v2\0"
_TIER_LABEL: Final = b"hushchat/sync/v2/tier-label"
KEYS_RECORD_ID: Final = "keys"


class RecordTamperedError(HushchatError):
    """A synced record does not decrypt under its key and header: changed, swapped,
    replayed or damaged. It is ignored and reported; nothing local is changed."""


class WrongKeySecretError(HushchatError):
    """The passphrase or recovery code does not open the account's key record."""


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise RecordTamperedError(f"{what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RecordTamperedError(f"{what} is not base64") from None


def new_key_id() -> str:
    """A random, opaque key id (the server sees it; it says nothing about the key)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, repr=False)
class SyncKey:
    """One tier's sync key at one epoch."""

    tier: Tier
    epoch: int
    key_id: str
    secret: bytes

    @classmethod
    def generate(cls, tier: Tier, epoch: int = 1) -> SyncKey:
        if tier not in STORED_TIERS:
            raise ValueError(f"{tier} chats are never synced")
        return cls(tier, epoch, new_key_id(), secrets.token_bytes(KEY_BYTES))

    def next_epoch(self) -> SyncKey:
        """The key that replaces this one after a chat of the tier is deleted."""
        return SyncKey.generate(self.tier, self.epoch + 1)

    def __repr__(self) -> str:
        return f"SyncKey({self.tier.value}, epoch={self.epoch}, id={self.key_id})"

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "epoch": self.epoch,
            "key_id": self.key_id,
            "secret": _b64(self.secret),
        }

    @classmethod
    def from_json(cls, data: Any) -> SyncKey:
        if not isinstance(data, dict):
            raise RecordTamperedError("a sync key is not an object")
        try:
            tier = Tier(data["tier"])
            epoch = data["epoch"]
            key_id = data["key_id"]
        except (KeyError, ValueError):
            raise RecordTamperedError("a sync key lacks its tier, epoch or id") from None
        secret = _unb64(data.get("secret"), "a sync key")
        if (
            tier not in STORED_TIERS
            or not isinstance(epoch, int)
            or isinstance(epoch, bool)
            or epoch < 1
            or not isinstance(key_id, str)
            or len(secret) != KEY_BYTES
        ):
            raise RecordTamperedError("a sync key is malformed")
        return cls(tier, epoch, key_id, secret)


@dataclass(frozen=True, repr=False)
class ChatKey:
    """The key of one chat's records."""

    chat_id: str
    key_id: str
    secret: bytes

    @classmethod
    def generate(cls, chat_id: str) -> ChatKey:
        return cls(chat_id, new_key_id(), secrets.token_bytes(KEY_BYTES))

    def __repr__(self) -> str:
        return f"ChatKey({self.chat_id}, id={self.key_id})"


@dataclass(frozen=True)
class RecordHeader:
    """What a record's AEAD binds: the server stores these fields beside the payload."""

    account: str
    id: str
    kind: str
    revision: int
    deleted: bool
    key_id: str

    def associated_data(self) -> bytes:
        return _RECORD_AAD + _canonical(
            {
                "account": self.account,
                "id": self.id,
                "kind": self.kind,
                "revision": self.revision,
                "deleted": self.deleted,
                "key_id": self.key_id,
            }
        )


def seal_record(secret: bytes, header: RecordHeader, plaintext: bytes) -> bytes:
    """Encrypt a record's plaintext under ``secret``, bound to its ``header``."""
    if len(secret) != KEY_BYTES:
        raise ValueError("record keys are 32 bytes")
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(secret).encrypt(nonce, plaintext, header.associated_data())
    return bytes([_VERSION]) + nonce + sealed


def open_record(secret: bytes, header: RecordHeader, payload: bytes) -> bytes:
    """Decrypt a record; RecordTamperedError if key, header or bytes do not match."""
    if len(payload) < 1 + _NONCE_BYTES + 16 or payload[0] != _VERSION:
        raise RecordTamperedError(f"record {header.id} is not a sealed record of version 1")
    nonce = payload[1 : 1 + _NONCE_BYTES]
    try:
        return AESGCM(secret).decrypt(nonce, payload[1 + _NONCE_BYTES :], header.associated_data())
    except InvalidTag:
        raise RecordTamperedError(
            f"record {header.id} does not decrypt: it was changed, swapped or replayed"
        ) from None


def wrap_chat_key(sync_key: SyncKey, chat_key: ChatKey, header: RecordHeader) -> bytes:
    """The payload of a chat's "chatkey" record: its key sealed under the tier's sync key."""
    body = _canonical(
        {"chat_id": chat_key.chat_id, "key_id": chat_key.key_id, "secret": _b64(chat_key.secret)}
    )
    return seal_record(sync_key.secret, header, body)


def unwrap_chat_key(sync_key: SyncKey, header: RecordHeader, payload: bytes) -> ChatKey:
    """The chat key in a "chatkey" record."""
    body = _json_object(open_record(sync_key.secret, header, payload), "a chat key record")
    chat_id, key_id = body.get("chat_id"), body.get("key_id")
    secret = _unb64(body.get("secret"), "a chat key")
    if not isinstance(chat_id, str) or not isinstance(key_id, str) or len(secret) != KEY_BYTES:
        raise RecordTamperedError("a chat key record is malformed")
    return ChatKey(chat_id, key_id, secret)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RecordTamperedError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise RecordTamperedError(f"{what} is not a JSON object")
    return value


def _slot_key(label: str, secret: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_KEY_RECORD_LABELS[label]
    ).derive(secret)


# --- the "keys" record -----------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AccountKeys:
    """What every device of an account keeps to publish the "keys" record.

    ``public_key`` is the key-record public key (X25519): the sync keys are sealed to it.
    Its private half exists only inside ``slots`` (wrapped by the passphrase and the
    recovery code), so no device holds anything that opens a "keys" record, old or new.
    ``signing_key`` (Ed25519) signs each "keys" record, so the server, which knows the
    public key too, cannot forge one with sync keys of its choosing; it opens nothing.
    """

    public_key: bytes
    verify_key: bytes
    signing_key: bytes
    slots: dict[str, Any]

    @property
    def key_id(self) -> str:
        """The "keys" record's key id: a fingerprint of the key-record public key."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"AccountKeys(id={self.key_id})"

    def to_json(self) -> dict[str, Any]:
        return {
            "public_key": _b64(self.public_key),
            "verify_key": _b64(self.verify_key),
            "signing_key": _b64(self.signing_key),
            "slots": self.slots,
        }

    @classmethod
    def from_json(cls, data: Any) -> AccountKeys:
        if not isinstance(data, dict) or not isinstance(data.get("slots"), dict):
            raise RecordTamperedError("the stored account keys are malformed")
        return cls(
            _unb64(data.get("public_key"), "the key-record public key"),
            _unb64(data.get("verify_key"), "the verify key"),
            _unb64(data.get("signing_key"), "the signing key"),
            data["slots"],
        )


def _slot_aad(account: str, public_key: bytes, verify_key: bytes, slot: Mapping[str, Any]) -> bytes:
    return _SLOT_AAD + _canonical(
        {
            "account": account,
            "public_key": _b64(public_key),
            "verify_key": _b64(verify_key),
            "slot": dict(slot),
        }
    )


def _passphrase_slot(kdf: KdfParams) -> dict[str, Any]:
    return {
        "type": "passphrase",
        "salt": _b64(secrets.token_bytes(16)),
        "memory_kib": kdf.memory_kib,
        "iterations": kdf.iterations,
        "parallelism": kdf.parallelism,
    }


def _passphrase_slot_key(slot: Mapping[str, Any], passphrase: str) -> bytes:
    try:
        params = KdfParams(
            int(slot["memory_kib"]), int(slot["iterations"]), int(slot["parallelism"])
        )
    except (KeyError, TypeError, ValueError):
        raise RecordTamperedError("the keys record's passphrase parameters are malformed") from None
    salt = _unb64(slot.get("salt"), "the keys record's salt")
    return _slot_key("passphrase", derive_passphrase_secret(passphrase, salt, params))


def _wrap_slot(
    account: str,
    public_key: bytes,
    verify_key: bytes,
    slot: dict[str, Any],
    key: bytes,
    secret: bytes,
) -> dict[str, Any]:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    aad = _slot_aad(account, public_key, verify_key, slot)
    return {**slot, "wrapped": _b64(nonce + AESGCM(key).encrypt(nonce, secret, aad))}


def create_account_keys(
    account: str, *, passphrase: str, kdf: KdfParams, recovery_secret: bytes | None
) -> AccountKeys:
    """A new key-record key pair and signing key, the private halves wrapped for the
    passphrase (Argon2id at ``kdf``: blocking) and, if given, the recovery code."""
    private = X25519PrivateKey.generate()
    signing = Ed25519PrivateKey.generate()
    public_key = private.public_key().public_bytes_raw()
    verify_key = signing.public_key().public_bytes_raw()
    secret = private.private_bytes_raw() + signing.private_bytes_raw()
    slot = _passphrase_slot(kdf)
    wraps = [
        _wrap_slot(
            account, public_key, verify_key, slot, _passphrase_slot_key(slot, passphrase), secret
        )
    ]
    if recovery_secret is not None:
        wraps.append(
            _wrap_slot(
                account,
                public_key,
                verify_key,
                {"type": "recovery"},
                _slot_key("recovery", recovery_secret),
                secret,
            )
        )
    slots = {"v": _KEYS_VERSION, "public_key": _b64(public_key), "verify_key": _b64(verify_key)}
    slots["slots"] = wraps
    return AccountKeys(public_key, verify_key, signing.private_bytes_raw(), slots)


def _unwrap_slots(
    account: str, slots: Mapping[str, Any], kind: str, key: bytes
) -> tuple[AccountKeys, X25519PrivateKey]:
    """The account keys and the key-record private key, with the key of one slot."""
    public_key = _unb64(slots.get("public_key"), "the key-record public key")
    verify_key = _unb64(slots.get("verify_key"), "the verify key")
    slot = _slot_of(slots, kind)
    blob = _unb64(slot.get("wrapped"), "the keys record's wrap")
    public = {name: value for name, value in slot.items() if name != "wrapped"}
    what = "passphrase" if kind == "passphrase" else "recovery code"
    try:
        secret = AESGCM(key).decrypt(
            blob[:_NONCE_BYTES],
            blob[_NONCE_BYTES:],
            _slot_aad(account, public_key, verify_key, public),
        )
    except (InvalidTag, ValueError):
        raise WrongKeySecretError(
            f"The {what} does not open this account's sync keys; check it and try again."
        ) from None
    if len(secret) != 2 * KEY_BYTES:
        raise RecordTamperedError("the keys record's wrap is malformed")
    private = X25519PrivateKey.from_private_bytes(secret[:KEY_BYTES])
    signing = Ed25519PrivateKey.from_private_bytes(secret[KEY_BYTES:])
    if (
        private.public_key().public_bytes_raw() != public_key
        or signing.public_key().public_bytes_raw() != verify_key
    ):
        raise RecordTamperedError("the keys record's public keys do not match its private keys")
    return AccountKeys(public_key, verify_key, signing.private_bytes_raw(), dict(slots)), private


def rewrap_passphrase(
    account: str,
    keys: AccountKeys,
    *,
    current_passphrase: str,
    new_passphrase: str,
    kdf: KdfParams,
) -> AccountKeys:
    """The same account keys with the passphrase slot re-wrapped for a new passphrase
    (the current one unwraps it: WrongKeySecretError otherwise). Blocking (Argon2id)."""
    slot = _slot_of(keys.slots, "passphrase")
    opened, private = _unwrap_slots(
        account, keys.slots, "passphrase", _passphrase_slot_key(slot, current_passphrase)
    )
    secret = private.private_bytes_raw() + opened.signing_key
    new_slot = _passphrase_slot(kdf)
    wrap = _wrap_slot(
        account,
        opened.public_key,
        opened.verify_key,
        new_slot,
        _passphrase_slot_key(new_slot, new_passphrase),
        secret,
    )
    others = [
        s for s in keys.slots["slots"] if isinstance(s, dict) and s.get("type") != "passphrase"
    ]
    slots = {**keys.slots, "slots": [wrap, *others]}
    return AccountKeys(opened.public_key, opened.verify_key, opened.signing_key, slots)


def _entry_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=ephemeral + recipient, info=_ENTRY_LABEL
    ).derive(shared)


def _entry_aad(account: str, key_id: str, slot: str, recipient: bytes) -> bytes:
    return _ENTRY_AAD + _canonical(
        {"account": account, "key_id": key_id, "slot": slot, "recipient": _b64(recipient)}
    )


def tier_slot(keys: AccountKeys, tier: Tier) -> str:
    """The label of a tier's entry in the "keys" record: devices (which hold the signing
    key) tell the entries apart, the server cannot tell Standard from Private."""
    label_key = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_TIER_LABEL
    ).derive(keys.signing_key)
    return hmac.new(label_key, tier.value.encode(), hashlib.sha256).hexdigest()[:16]


def seal_key_entry(account: str, keys: AccountKeys, key: SyncKey) -> dict[str, Any]:
    """One sync key sealed to the key-record public key: ephemeral-static X25519, HKDF,
    AES-256-GCM, a fresh ephemeral key per seal. Readable: the key's id and its tier's
    opaque slot label (``tier_slot``)."""
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(keys.public_key))
    nonce = secrets.token_bytes(_NONCE_BYTES)
    slot = tier_slot(keys, key.tier)
    sealed = AESGCM(_entry_key(shared, epk, keys.public_key)).encrypt(
        nonce, _canonical(key.to_json()), _entry_aad(account, key.key_id, slot, keys.public_key)
    )
    return {"key_id": key.key_id, "slot": slot, "epk": _b64(epk), "sealed": _b64(nonce + sealed)}


def _open_key_entry(account: str, private: X25519PrivateKey, entry: Any) -> SyncKey:
    if not isinstance(entry, dict) or not isinstance(entry.get("key_id"), str):
        raise RecordTamperedError("a keys record entry is malformed")
    epk = _unb64(entry.get("epk"), "a keys record entry")
    blob = _unb64(entry.get("sealed"), "a keys record entry")
    recipient = private.public_key().public_bytes_raw()
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        plain = AESGCM(_entry_key(shared, epk, recipient)).decrypt(
            blob[:_NONCE_BYTES],
            blob[_NONCE_BYTES:],
            _entry_aad(account, entry["key_id"], str(entry.get("slot")), recipient),
        )
    except (InvalidTag, ValueError):
        raise RecordTamperedError("a keys record entry does not decrypt") from None
    key = SyncKey.from_json(_json_object(plain, "a keys record entry"))
    if key.key_id != entry["key_id"]:
        raise RecordTamperedError("a keys record entry's key id does not match")
    return key


def keys_header(account: str, revision: int, keys: AccountKeys) -> RecordHeader:
    """The header of the account's "keys" record at ``revision``."""
    return RecordHeader(account, KEYS_RECORD_ID, "keys", revision, False, keys.key_id)


def seal_keys_record(
    header: RecordHeader, keys: AccountKeys, entries: list[dict[str, Any]]
) -> bytes:
    """The "keys" record's payload: the slots (to re-publish), the sealed sync-key
    entries, and a signature over both and the header."""
    body = {"v": _KEYS_VERSION, "slots": keys.slots, "entries": entries}
    signature = Ed25519PrivateKey.from_private_bytes(keys.signing_key).sign(
        _signed_bytes(header, body)
    )
    return _canonical({**body, "signature": _b64(signature)})


def _signed_bytes(header: RecordHeader, body: Mapping[str, Any]) -> bytes:
    return _KEYS_SIGNED + header.associated_data() + _canonical(dict(body))


def read_keys_record(
    header: RecordHeader, payload: bytes, verify_key: bytes | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The slots blob and the entries of a "keys" record, its signature checked with
    ``verify_key`` (None: with the verify key the record itself names, for a device that
    then proves it by opening a slot). RecordTamperedError if anything is off."""
    data = _json_object(payload, "the keys record")
    slots, entries = data.get("slots"), data.get("entries")
    if (
        data.get("v") != _KEYS_VERSION
        or not isinstance(slots, dict)
        or not isinstance(entries, list)
        or not all(isinstance(entry, dict) for entry in entries)
    ):
        raise RecordTamperedError("the keys record is not of version 2")
    if verify_key is None:
        verify_key = _unb64(slots.get("verify_key"), "the verify key")
    signature = _unb64(data.get("signature"), "the keys record's signature")
    body = {"v": _KEYS_VERSION, "slots": slots, "entries": entries}
    try:
        Ed25519PublicKey.from_public_bytes(verify_key).verify(
            signature, _signed_bytes(header, body)
        )
    except (InvalidSignature, ValueError):
        raise RecordTamperedError("the keys record's signature does not verify") from None
    return slots, entries


@dataclass(frozen=True)
class OpenedKeys:
    """What a device learns by opening the "keys" record with a user secret."""

    sync_keys: dict[Tier, SyncKey]
    account_keys: AccountKeys


def open_keys_with_passphrase(header: RecordHeader, payload: bytes, passphrase: str) -> OpenedKeys:
    """The sync keys and account keys, with the passphrase (Argon2id: blocking). The
    key-record private key is used here and dropped."""
    slots, _ = read_keys_record(header, payload, None)
    key = _passphrase_slot_key(_slot_of(slots, "passphrase"), passphrase)
    return _open_keys(header, payload, slots, "passphrase", key)


def open_keys_with_recovery(
    header: RecordHeader, payload: bytes, recovery_secret: bytes
) -> OpenedKeys:
    """The sync keys and account keys, with the recovery code's secret."""
    slots, _ = read_keys_record(header, payload, None)
    return _open_keys(header, payload, slots, "recovery", _slot_key("recovery", recovery_secret))


def open_keys_with_link(
    header: RecordHeader,
    payload: bytes,
    account_keys: AccountKeys,
    sync_keys: Mapping[Tier, SyncKey],
) -> OpenedKeys:
    """The keys another device of the account handed over (``app.sync.pairing``: its
    account keys and current sync keys), checked against the "keys" record: signed with
    that signing key, sealed to that public key, and holding exactly those sync keys.
    No slot is opened (the key-record private key never leaves the slots); the slots
    blob kept is the record's. RecordTamperedError if anything differs."""
    if any(key.tier is not tier for tier, key in sync_keys.items()):
        raise RecordTamperedError("a linked sync key is filed under another tier")
    signing = Ed25519PrivateKey.from_private_bytes(account_keys.signing_key)
    if signing.public_key().public_bytes_raw() != account_keys.verify_key:
        raise RecordTamperedError("the linked signing key does not match its verify key")
    slots, entries = read_keys_record(header, payload, account_keys.verify_key)
    if (
        header.key_id != account_keys.key_id
        or _unb64(slots.get("public_key"), "the key-record public key") != account_keys.public_key
        or _unb64(slots.get("verify_key"), "the verify key") != account_keys.verify_key
    ):
        raise RecordTamperedError(
            "the keys record belongs to other account keys than the linked ones"
        )
    expected = {tier_slot(account_keys, tier): key for tier, key in sync_keys.items()}
    found = {entry.get("slot"): entry.get("key_id") for entry in entries}
    if len(found) != len(entries) or found != {slot: key.key_id for slot, key in expected.items()}:
        raise RecordTamperedError(
            "the linked sync keys are not the ones in the account's keys record"
        )
    linked = AccountKeys(
        account_keys.public_key, account_keys.verify_key, account_keys.signing_key, dict(slots)
    )
    return OpenedKeys(dict(sync_keys), linked)


def _open_keys(
    header: RecordHeader, payload: bytes, slots: Mapping[str, Any], kind: str, key: bytes
) -> OpenedKeys:
    account_keys, private = _unwrap_slots(header.account, slots, kind, key)
    if header.key_id != account_keys.key_id:
        raise RecordTamperedError("the keys record's key id does not match its public key")
    # The verify key came out of an authenticated slot: check the signature again with it.
    _, entries = read_keys_record(header, payload, account_keys.verify_key)
    sync_keys: dict[Tier, SyncKey] = {}
    for entry in entries:
        sync_key = _open_key_entry(header.account, private, entry)
        if entry.get("slot") != tier_slot(account_keys, sync_key.tier):
            raise RecordTamperedError("a keys record entry is labelled with another tier")
        if sync_key.tier in sync_keys:
            raise RecordTamperedError("the keys record holds two keys of one tier")
        sync_keys[sync_key.tier] = sync_key
    return OpenedKeys(sync_keys, account_keys)


def _slot_of(slots: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if slots.get("v") != _KEYS_VERSION or not isinstance(slots.get("slots"), list):
        raise RecordTamperedError("the keys record's slots are not of version 2")
    for slot in slots["slots"]:
        if isinstance(slot, dict) and slot.get("type") == kind:
            return slot
    raise RecordTamperedError(f"the keys record has no {kind} slot")


# --- epoch rotation --------------------------------------------------------------------------


def wrap_next_key(old: SyncKey, new: SyncKey, header: RecordHeader) -> bytes:
    """A "rotation" record's payload: the tier's next sync key sealed under the old one,
    so devices holding the old key move forward (and destroy it); nothing leads back."""
    if new.tier != old.tier or new.epoch != old.epoch + 1:
        raise ValueError("the next key must be the same tier's next epoch")
    return seal_record(old.secret, header, _canonical(new.to_json()))


def unwrap_next_key(old: SyncKey, header: RecordHeader, payload: bytes) -> SyncKey:
    """The key a "rotation" record carries; RecordTamperedError unless it is ``old``'s
    tier at the next epoch."""
    new = SyncKey.from_json(_json_object(open_record(old.secret, header, payload), "a rotation"))
    if new.tier != old.tier or new.epoch != old.epoch + 1:
        raise RecordTamperedError(f"record {header.id} does not carry the next epoch's key")
    return new

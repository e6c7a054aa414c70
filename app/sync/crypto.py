"""Record encryption for sync: tier sync keys with epochs, per-chat keys, sealed records.

The key model (drawn in ``docs/security.md``, "Sync keys")::

    passphrase ──Argon2id──HKDF─┐
    recovery code ─────────HKDF─┴─> key-record key ──AEAD──> every tier's current sync key
                                                                (the "keys" record)
    Standard sync key (epoch e) ──AEAD──> chat key of each Standard chat ("chatkey" records)
    Private sync key  (epoch e) ──AEAD──> chat key of each Private chat
    chat key ──AEAD──> that chat's records (its settings, its messages, their tombstones)

* Sync keys and chat keys are random 256-bit keys. A key's id is random too, so the
  server cannot tell a Standard record from a Private one by its ``key_id``; it can tell
  which records share a chat key.
* Deleting a chat deletes its chat-key record and moves its tier to a new epoch: a new
  sync key re-wraps the remaining chat keys (key records only, no message is
  re-encrypted) and the old sync key is destroyed on every device as it syncs. A server
  backup taken before the delete then holds the deleted chat's key only under a sync key
  no device holds any more (crypto-shredding); it stays readable to whoever also has the
  passphrase or recovery code *as they were* when the backup was taken (the "keys"
  record of that time unwraps the old epoch).
* Every sealed payload is ``0x01 || nonce (12) || AES-256-GCM(key, plaintext, AAD)`` where
  the AAD binds the account, record id, kind, revision, deleted flag and key id (shared
  DESIGN §6): the server cannot swap, replay an old revision as new, or un-delete a
  record without the client noticing.

Everything here is pure computation; the caller decides what to sync and when.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import HushchatError
from app.tiers import STORED_TIERS, Tier
from app.vault.kdf import KdfParams, derive_passphrase_secret

__all__ = [
    "KEY_BYTES",
    "ChatKey",
    "KeyRecord",
    "RecordHeader",
    "RecordTamperedError",
    "SyncKey",
    "WrongKeySecretError",
    "open_record",
    "seal_record",
]

KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_VERSION: Final = 1
_RECORD_AAD: Final = b"hushchat-record-v1\0"
_KEY_RECORD_LABELS: Final = {
    "passphrase": b"hushchat/sync/v1/key-record/passphrase",
    "recovery": b"hushchat/sync/v1/key-record/recovery",
}


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


@dataclass(frozen=True)
class KeyRecord:
    """The account's "keys" record: every tier's current sync key, readable with the
    passphrase or the recovery code only (never with a device-bound secret).

    A new device signs in, fetches this record and unlocks it locally: the server sees
    only Argon2id-wrapped keys (which is why passphrases have a strength floor).
    """

    keys: dict[Tier, SyncKey] = field(default_factory=dict)

    def seal(
        self,
        header: RecordHeader,
        *,
        passphrase: str,
        kdf: KdfParams,
        recovery_secret: bytes,
    ) -> bytes:
        """The record's payload: the sync keys sealed under a random key-record key,
        itself wrapped for the passphrase (Argon2id at ``kdf``) and the recovery code."""
        record_key = secrets.token_bytes(KEY_BYTES)
        salt = secrets.token_bytes(16)
        passphrase_secret = derive_passphrase_secret(passphrase, salt, kdf)
        slots: list[dict[str, Any]] = [
            {
                "type": "passphrase",
                "salt": _b64(salt),
                "memory_kib": kdf.memory_kib,
                "iterations": kdf.iterations,
                "parallelism": kdf.parallelism,
            },
            {"type": "recovery"},
        ]
        wraps: list[dict[str, Any]] = []
        for slot, secret in zip(slots, (passphrase_secret, recovery_secret), strict=True):
            label = str(slot["type"])
            wrap_header = _slot_header(header, slot)
            wraps.append(
                {
                    **slot,
                    "wrapped": _b64(seal_record(_slot_key(label, secret), wrap_header, record_key)),
                }
            )
        keys = _canonical({"keys": [key.to_json() for key in self.keys.values()]})
        body = {"v": _VERSION, "slots": wraps, "keys": _b64(seal_record(record_key, header, keys))}
        return _canonical(body)

    @classmethod
    def open_with_passphrase(
        cls, header: RecordHeader, payload: bytes, passphrase: str
    ) -> KeyRecord:
        """The sync keys, unlocked with the passphrase (runs Argon2id: blocking)."""
        body = _json_object(payload, "the keys record")
        slot = _slot_of(body, "passphrase")
        try:
            params = KdfParams(
                int(slot["memory_kib"]), int(slot["iterations"]), int(slot["parallelism"])
            )
        except (KeyError, TypeError, ValueError):
            raise RecordTamperedError(
                "the keys record's passphrase parameters are malformed"
            ) from None
        salt = _unb64(slot.get("salt"), "the keys record's salt")
        secret = derive_passphrase_secret(passphrase, salt, params)
        return cls._open(header, body, slot, _slot_key("passphrase", secret), "passphrase")

    @classmethod
    def open_with_recovery(
        cls, header: RecordHeader, payload: bytes, recovery_secret: bytes
    ) -> KeyRecord:
        """The sync keys, unlocked with the recovery code's secret."""
        body = _json_object(payload, "the keys record")
        slot = _slot_of(body, "recovery")
        return cls._open(
            header, body, slot, _slot_key("recovery", recovery_secret), "recovery code"
        )

    @classmethod
    def _open(
        cls,
        header: RecordHeader,
        body: Mapping[str, Any],
        slot: Mapping[str, Any],
        key: bytes,
        what: str,
    ) -> KeyRecord:
        wrapped = _unb64(slot.get("wrapped"), "the keys record's wrap")
        public = {name: value for name, value in slot.items() if name != "wrapped"}
        try:
            record_key = open_record(key, _slot_header(header, public), wrapped)
        except RecordTamperedError:
            raise WrongKeySecretError(
                f"The {what} does not open this account's sync keys; check it and try again."
            ) from None
        keys_body = _json_object(
            open_record(record_key, header, _unb64(body.get("keys"), "the keys record's keys")),
            "the sync keys",
        )
        items = keys_body.get("keys")
        if not isinstance(items, list):
            raise RecordTamperedError("the keys record holds no key list")
        keys = [SyncKey.from_json(item) for item in items]
        by_tier = {key.tier: key for key in keys}
        if len(by_tier) != len(keys):
            raise RecordTamperedError("the keys record holds two keys of one tier")
        return cls(by_tier)


def _slot_header(header: RecordHeader, slot: Mapping[str, Any]) -> RecordHeader:
    """The header a key-record slot's wrap binds: the record's own, plus the slot's public
    fields in the key id (so changing the KDF parameters or salt breaks the wrap)."""
    return RecordHeader(
        header.account,
        header.id,
        header.kind,
        header.revision,
        header.deleted,
        f"{header.key_id}/slot/{_canonical(dict(slot)).decode()}",
    )


def _slot_of(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if body.get("v") != _VERSION or not isinstance(body.get("slots"), list):
        raise RecordTamperedError("the keys record is not of version 1")
    for slot in body["slots"]:
        if isinstance(slot, dict) and slot.get("type") == kind:
            return slot
    raise RecordTamperedError(f"the keys record has no {kind} slot")

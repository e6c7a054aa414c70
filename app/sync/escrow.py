"""Escrow of the Standard sync key with the sync server (never the Private one).

The server publishes an X25519 *escrow public key* in ``GET /v1/meta``. The engine seals
the Standard tier's current sync key to it and uploads the sealed box (``PUT
/v1/escrow``); the server stores it without opening it. Whoever holds the server's
escrow private key (its operator's key file and KEK) *and* its database can open it and
read every Standard chat synced to that account. Private chats are never escrowed.

The sealed box (version 1) is the one of ``sync_server/sealing.py``, re-implemented here
(the two packages never import each other)::

    sealed = 0x01 || ephemeral_public (32) || nonce (12) || AES-256-GCM ciphertext+tag
    key    = HKDF-SHA256(ikm = X25519(ephemeral_private, recipient_public),
                         salt = ephemeral_public || recipient_public,
                         info = b"hushchat sealed box v1", length = 32)
    AAD    = "hushchat-escrow-v1:{account}:{key id}"      (the upload)
             "hushchat-recovery-v1:{account}:{recovery id}" (the recovery answer)

What is sealed (:func:`encode_escrowed_key`)::

    0x01 || epoch (uint32, big-endian) || len(key id) (1) || key id (ASCII) || secret (32)

Bookkeeping (the Standard database's ``sync_settings``, so it survives a crash):

``escrow_needed``   ``{"key_id": …, "create": bool}``: the key to escrow next; kept until
                    the server accepted it (retried on every sync round). ``create``: a
                    new escrow (set-up, ``sync escrow on``); otherwise only an escrow the
                    server already holds is replaced (a new key epoch), so an escrow turned
                    off on one device stays off for the account.
``escrow_key_id``   the key id the server last accepted from this device.
``escrow_off``      set by ``sync escrow off``: nothing is uploaded from this device.

Nothing here logs a key or a secret.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from typing import Any, Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.store.sync_state import SyncState
from app.sync.crypto import KEY_BYTES, SyncKey
from app.sync.errors import SyncError
from app.sync.protocol import EscrowStatus, Meta
from app.tiers import Tier

__all__ = [
    "ESCROW_ALGORITHM",
    "EscrowTransport",
    "SealingError",
    "decode_escrowed_key",
    "encode_escrowed_key",
    "escrow_aad",
    "open_sealed",
    "recovery_aad",
    "seal",
    "seal_deterministic",
]

log = logging.getLogger(__name__)

SEALED_BOX_VERSION: Final = 1
ESCROW_ALGORITHM: Final = "X25519-HKDF-SHA256-AES256GCM"
_HKDF_INFO: Final = b"hushchat sealed box v1"
_FRAME_VERSION: Final = 1
#: Largest plaintext the server accepts in an escrow (contract: at most 256 bytes).
MAX_ESCROWED_BYTES: Final = 256

# sync_settings names (Standard database)
NEEDED_SETTING: Final = "escrow_needed"
DONE_SETTING: Final = "escrow_key_id"
OFF_SETTING: Final = "escrow_off"


class SealingError(SyncError):
    """A sealed box does not open (wrong key, altered, not a version-1 box)."""


def escrow_aad(account_id: str, key_id: str) -> bytes:
    """Associated data binding an escrowed key to its account and key id."""
    return f"hushchat-escrow-v1:{account_id}:{key_id}".encode()


def recovery_aad(account_id: str, recovery_id: str) -> bytes:
    """Associated data binding a recovery answer to its account and recovery request."""
    return f"hushchat-recovery-v1:{account_id}:{recovery_id}".encode()


def raw_public(key: X25519PublicKey) -> bytes:
    """The raw 32 bytes of an X25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=_HKDF_INFO,
    ).derive(shared)


def _public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != 32:
        raise SealingError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def seal(recipient_public: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of the recipient's private key opens it."""
    return seal_deterministic(
        X25519PrivateKey.generate(), os.urandom(12), recipient_public, plaintext, aad
    )


def seal_deterministic(
    ephemeral: X25519PrivateKey,
    nonce: bytes,
    recipient_public: bytes,
    plaintext: bytes,
    aad: bytes,
) -> bytes:
    """:func:`seal` with a given ephemeral key and nonce (test vectors only)."""
    recipient = _public_key(recipient_public)
    ephemeral_public = raw_public(ephemeral.public_key())
    try:
        shared = ephemeral.exchange(recipient)
    except ValueError as exc:  # cryptography refuses low-order points
        raise SealingError("the recipient public key is a low-order point") from exc
    key = _derive(shared, ephemeral_public, recipient_public)
    return (
        bytes([SEALED_BOX_VERSION])
        + ephemeral_public
        + nonce
        + AESGCM(key).encrypt(nonce, plaintext, aad)
    )


def open_sealed(recipient: X25519PrivateKey, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt a sealed box; :class:`SealingError` when it is not authentic."""
    if len(sealed) < 1 + 32 + 12 + 16 or sealed[0] != SEALED_BOX_VERSION:
        raise SealingError("not a version-1 sealed box")
    ephemeral_public = sealed[1:33]
    nonce = sealed[33:45]
    try:
        shared = recipient.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as exc:
        raise SealingError("the sealed box uses a low-order ephemeral key") from exc
    key = _derive(shared, ephemeral_public, raw_public(recipient.public_key()))
    try:
        return AESGCM(key).decrypt(nonce, sealed[45:], aad)
    except InvalidTag as exc:
        raise SealingError("the sealed box failed authentication") from exc


def encode_escrowed_key(key: SyncKey) -> bytes:
    """The plaintext escrowed for a Standard sync key (see the module)."""
    if key.tier is not Tier.STANDARD:
        raise ValueError("only the Standard sync key is ever escrowed")
    key_id = key.key_id.encode("ascii")
    if len(key.secret) != KEY_BYTES or not 0 < len(key_id) < 256:
        raise ValueError("not a sync key")
    return (
        bytes([_FRAME_VERSION]) + struct.pack(">I", key.epoch) + bytes([len(key_id)]) + key_id
        + key.secret
    )  # fmt: skip


def decode_escrowed_key(data: bytes, key_id: str) -> SyncKey:
    """The Standard sync key in an escrowed plaintext; :class:`SealingError` if it is not
    one, or names another key id than ``key_id`` (what the server says it holds)."""
    if len(data) < 6 or data[0] != _FRAME_VERSION:
        raise SealingError("the recovered key is not in a format this Hushchat knows")
    (epoch,) = struct.unpack(">I", data[1:5])
    length = data[5]
    named = data[6 : 6 + length]
    secret = data[6 + length :]
    if len(named) != length or len(secret) != KEY_BYTES or epoch < 1:
        raise SealingError("the recovered key is damaged")
    try:
        text = named.decode("ascii")
    except UnicodeDecodeError:
        raise SealingError("the recovered key is damaged") from None
    if text != key_id:
        raise SealingError("the recovered key is not the one the server names")
    return SyncKey(Tier.STANDARD, epoch, text, secret)


@runtime_checkable
class EscrowTransport(Protocol):
    """What escrow needs of the server (``SyncClient`` has it; test fakes may not)."""

    async def meta(self) -> Meta: ...

    async def escrow_status(self) -> EscrowStatus: ...

    async def put_escrow(self, key_id: str, server_key_id: str, sealed_key: bytes) -> None: ...

    async def delete_escrow(self) -> None: ...


# --- bookkeeping in the Standard database (call inside a transaction) -------------------------


def mark_needed(standard: SyncState, key_id: str, *, create: bool) -> None:
    """Remember that ``key_id`` is to be escrowed (``create``: even if none is yet)."""
    if standard.setting(OFF_SETTING):
        return
    current = needed(standard)
    if current is not None and current[0] == key_id:
        create = create or current[1]
    standard.set_setting(NEEDED_SETTING, json.dumps({"key_id": key_id, "create": create}))


def needed(standard: SyncState) -> tuple[str, bool] | None:
    """(key id, create) waiting to be escrowed, or None."""
    raw = standard.setting(NEEDED_SETTING)
    if raw is None:
        return None
    try:
        data: Any = json.loads(raw)
        return str(data["key_id"]), bool(data.get("create"))
    except (ValueError, TypeError, KeyError):
        log.warning("sync: the escrow bookkeeping was unreadable; escrowing again")
        return "", True

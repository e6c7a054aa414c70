"""Sealed boxes to an X25519 public key, and the operator's wrapped escrow key.

Sealed box (version 1), used both for the client's escrow upload (sealed to the server's
escrow public key) and for the recovery answer (sealed to the new device's ephemeral key)::

    sealed = 0x01 || ephemeral_public (32) || nonce (12) || AES-256-GCM ciphertext+tag
    key    = HKDF-SHA256(ikm = X25519(ephemeral_private, recipient_public),
                         salt = ephemeral_public || recipient_public,
                         info = b"hushchat sealed box v1", length = 32)
    AAD    = the context string given by the protocol (see ``escrow_aad``/``recovery_aad``)

The server answers requests with the escrow *public* key only (``ESCROW_PUBLIC_KEY``):
it checks an upload's shape (:func:`check_sealed_shape`) and never opens it. Only
``hushchat-sync escrow process`` holds the private key, stored by the operator wrapped by
a key-encryption key (KEK)::

    wrapped = base64( nonce (12) || AES-256-GCM(KEK, raw X25519 private key, AAD) )
    AAD     = b"hushchat-sync escrow private key v1"

The desktop client implements the same sealing; ``tests/unit/sync_server/test_sealing.py``
pins a test vector both sides must reproduce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sync_server.errors import ConfigError, SyncServerError

SEALED_BOX_VERSION = 1
#: Overhead of a v1 sealed box: version, ephemeral public key, nonce, GCM tag.
SEALED_BOX_OVERHEAD = 1 + 32 + 12 + 16
#: Escrowed plaintext: a 32-byte key with at most a few bytes of framing; at most 256.
MIN_ESCROW_PLAINTEXT = 16
MAX_ESCROW_PLAINTEXT = 256
_HKDF_INFO = b"hushchat sealed box v1"
_KEK_AAD = b"hushchat-sync escrow private key v1"
ESCROW_ALGORITHM = "X25519-HKDF-SHA256-AES256GCM"


class SealingError(SyncServerError):
    """A sealed box or wrapped key could not be opened (wrong key, tampered, malformed)."""


def escrow_aad(account_id: str, key_id: str) -> bytes:
    """Associated data binding an escrowed key to its account and client key id."""
    return f"hushchat-escrow-v1:{account_id}:{key_id}".encode()


def recovery_aad(account_id: str, recovery_id: str) -> bytes:
    """Associated data binding a recovery answer to its account and recovery request."""
    return f"hushchat-recovery-v1:{account_id}:{recovery_id}".encode()


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=_HKDF_INFO,
    ).derive(shared)


def public_key_from_bytes(raw: bytes) -> X25519PublicKey:
    """Parse a raw 32-byte X25519 public key."""
    if len(raw) != 32:
        raise SealingError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def seal(recipient: X25519PublicKey, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of ``recipient``'s private key opens it."""
    return seal_deterministic(
        X25519PrivateKey.generate(), os.urandom(12), recipient, plaintext, aad
    )


def seal_deterministic(
    ephemeral: X25519PrivateKey,
    nonce: bytes,
    recipient: X25519PublicKey,
    plaintext: bytes,
    aad: bytes,
) -> bytes:
    """:func:`seal` with a given ephemeral key and nonce — for test vectors only."""
    ephemeral_public = _raw_public(ephemeral.public_key())
    recipient_public = _raw_public(recipient)
    try:
        shared = ephemeral.exchange(recipient)
    except ValueError as exc:  # cryptography refuses low-order points
        raise SealingError("recipient public key is a low-order point") from exc
    key = _derive(shared, ephemeral_public, recipient_public)
    return (
        bytes([SEALED_BOX_VERSION])
        + ephemeral_public
        + nonce
        + AESGCM(key).encrypt(nonce, plaintext, aad)
    )


def open_sealed(recipient: X25519PrivateKey, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt a sealed box; raises :class:`SealingError` when it is not authentic."""
    if len(sealed) < 1 + 32 + 12 + 16 or sealed[0] != SEALED_BOX_VERSION:
        raise SealingError("not a version-1 sealed box")
    ephemeral_public = sealed[1:33]
    nonce = sealed[33:45]
    try:
        shared = recipient.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as exc:  # cryptography refuses low-order points
        raise SealingError("sealed box uses a low-order ephemeral key") from exc
    key = _derive(shared, ephemeral_public, _raw_public(recipient.public_key()))
    try:
        return AESGCM(key).decrypt(nonce, sealed[45:], aad)
    except InvalidTag as exc:
        raise SealingError("sealed box failed authentication") from exc


def check_sealed_shape(sealed: bytes, min_plaintext: int, max_plaintext: int) -> None:
    """Raise :class:`SealingError` unless ``sealed`` looks like a v1 sealed box of a
    plaintext of ``min_plaintext`` to ``max_plaintext`` bytes (nothing is decrypted)."""
    if not sealed or sealed[0] != SEALED_BOX_VERSION:
        raise SealingError("not a version-1 sealed box")
    low, high = SEALED_BOX_OVERHEAD + min_plaintext, SEALED_BOX_OVERHEAD + max_plaintext
    if not low <= len(sealed) <= high:
        raise SealingError(f"a sealed key is {low} to {high} bytes, not {len(sealed)}")


def key_id_of(public_bytes: bytes) -> str:
    """Short fingerprint of an escrow public key, so clients notice a key change."""
    return hashlib.sha256(public_bytes).hexdigest()[:16]


@dataclass(frozen=True)
class EscrowPublicKey:
    """The escrow public key: all the request path needs (uploads are sealed to it)."""

    public_bytes: bytes

    @property
    def key_id(self) -> str:
        """Short fingerprint of the public key, so clients notice a key change."""
        return key_id_of(self.public_bytes)

    def to_text(self) -> str:
        """The ``ESCROW_PUBLIC_KEY`` setting's form: base64 of the raw 32 bytes."""
        return base64.b64encode(self.public_bytes).decode()


def parse_public_key(text: str) -> EscrowPublicKey:
    """Read ``ESCROW_PUBLIC_KEY`` (base64 of 32 bytes); :class:`ConfigError` if malformed."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        public_key_from_bytes(raw)
    except (binascii.Error, ValueError, SealingError) as exc:
        raise ConfigError(
            "HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY must be the base64 of a 32-byte X25519 public "
            "key, as printed by `hushchat-sync gen-keys` or `hushchat-sync escrow public-key`."
        ) from exc
    return EscrowPublicKey(raw)


@dataclass(frozen=True)
class EscrowKeyPair:
    """The server's escrow key pair, unwrapped in memory (``escrow process`` only)."""

    private_key: X25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        """Raw 32-byte public key."""
        return _raw_public(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        """Short fingerprint of the public key, so clients notice a key change."""
        return key_id_of(self.public_bytes)

    @property
    def public(self) -> EscrowPublicKey:
        """The public half."""
        return EscrowPublicKey(self.public_bytes)


def wrap_private_key(private_key: X25519PrivateKey, kek: bytes) -> str:
    """Wrap an escrow private key with the operator's KEK (base64 text)."""
    raw = private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, raw, _KEK_AAD)).decode()


def unwrap_private_key(wrapped: str, kek: bytes) -> EscrowKeyPair:
    """Unwrap the escrow private key; :class:`ConfigError` when KEK and key do not match."""
    try:
        blob = base64.b64decode(wrapped, validate=True)
        raw = AESGCM(kek).decrypt(blob[:12], blob[12:], _KEK_AAD)
    except (binascii.Error, ValueError, InvalidTag) as exc:
        raise ConfigError(
            "HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY cannot be unwrapped with HUSHCHAT_SYNC_ESCROW_KEK "
            "(wrong key-encryption key or damaged value)."
        ) from exc
    return EscrowKeyPair(X25519PrivateKey.from_private_bytes(raw))


def generate_secrets() -> dict[str, str]:
    """Fresh secret key, escrow public key, KEK and wrapped escrow private key, as
    setting-name → value. ``serve`` needs SECRET_KEY and ESCROW_PUBLIC_KEY; only
    ``escrow process`` needs ESCROW_KEK and ESCROW_PRIVATE_KEY."""
    kek = os.urandom(32)
    private = X25519PrivateKey.generate()
    return {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ESCROW_PUBLIC_KEY": base64.b64encode(_raw_public(private.public_key())).decode(),
        "ESCROW_KEK": base64.b64encode(kek).decode(),
        "ESCROW_PRIVATE_KEY": wrap_private_key(private, kek),
    }

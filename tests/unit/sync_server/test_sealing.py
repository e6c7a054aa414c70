"""Sealed boxes and the KEK-wrapped escrow key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync_server.errors import ConfigError
from sync_server.sealing import (
    MAX_ESCROW_PLAINTEXT,
    MIN_ESCROW_PLAINTEXT,
    SealingError,
    check_sealed_shape,
    escrow_aad,
    generate_secrets,
    open_sealed,
    parse_public_key,
    public_key_from_bytes,
    seal,
    seal_deterministic,
    unwrap_private_key,
)


def test_round_trip_and_binding() -> None:
    recipient = X25519PrivateKey.generate()
    sealed = seal(recipient.public_key(), b"k" * 32, escrow_aad("acct", "key-1"))
    assert sealed[0] == 1 and len(sealed) == 1 + 32 + 12 + 32 + 16
    assert open_sealed(recipient, sealed, escrow_aad("acct", "key-1")) == b"k" * 32
    with pytest.raises(SealingError):
        open_sealed(recipient, sealed, escrow_aad("other", "key-1"))
    with pytest.raises(SealingError):
        open_sealed(X25519PrivateKey.generate(), sealed, escrow_aad("acct", "key-1"))
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SealingError):
        open_sealed(recipient, bytes(tampered), escrow_aad("acct", "key-1"))


def test_malformed_and_low_order_inputs() -> None:
    recipient = X25519PrivateKey.generate()
    for blob in (b"", b"\x02" + bytes(80), b"\x01" + bytes(80)):
        with pytest.raises(SealingError):
            open_sealed(recipient, blob, b"")
    with pytest.raises(SealingError):
        public_key_from_bytes(b"short")
    with pytest.raises(SealingError):
        seal(public_key_from_bytes(bytes(32)), b"x", b"")


def test_wrapped_escrow_key() -> None:
    values = generate_secrets()
    kek = base64.b64decode(values["ESCROW_KEK"])
    keys = unwrap_private_key(values["ESCROW_PRIVATE_KEY"], kek)
    assert len(keys.public_bytes) == 32 and len(keys.key_id) == 16
    raw = keys.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert base64.b64encode(raw).decode() not in values["ESCROW_PRIVATE_KEY"]
    with pytest.raises(ConfigError, match="ESCROW_KEK"):
        unwrap_private_key(values["ESCROW_PRIVATE_KEY"], bytes(32))
    with pytest.raises(ConfigError):
        unwrap_private_key("!!!", kek)


# Test vector for the desktop client's implementation (app/sync) to reproduce.
VECTOR = (
    "0107a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c000102030405060708090a"
    "0bcc34e74b8a4f1bc59ed497c925efac9912975121e77b8a1911a1f2551b000fa1d8122aae74b525465bc9ea"
    "827e08a82f"
)


def test_sealed_box_vector() -> None:
    ephemeral = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    recipient = X25519PrivateKey.from_private_bytes(bytes(range(101, 133)))
    aad = escrow_aad("acct", "key-1")
    sealed = seal_deterministic(
        ephemeral, bytes(range(12)), recipient.public_key(), bytes(range(200, 232)), aad
    )
    assert sealed.hex() == VECTOR
    assert open_sealed(recipient, bytes.fromhex(VECTOR), aad) == bytes(range(200, 232))


def test_generated_public_key_is_the_private_keys_half() -> None:
    values = generate_secrets()
    pair = unwrap_private_key(values["ESCROW_PRIVATE_KEY"], base64.b64decode(values["ESCROW_KEK"]))
    public = parse_public_key(values["ESCROW_PUBLIC_KEY"])
    assert public.public_bytes == pair.public_bytes and public.key_id == pair.key_id
    assert pair.public.to_text() == values["ESCROW_PUBLIC_KEY"]
    # What is sealed to the published public key opens with the wrapped private key.
    sealed = seal(public_key_from_bytes(public.public_bytes), b"k" * 32, b"aad")
    assert open_sealed(pair.private_key, sealed, b"aad") == b"k" * 32
    for bad in ("", "not base64!", base64.b64encode(bytes(31)).decode()):
        with pytest.raises(ConfigError, match="ESCROW_PUBLIC_KEY"):
            parse_public_key(bad)


def test_sealed_shape_bounds() -> None:
    recipient = X25519PrivateKey.generate().public_key()
    smallest = seal(recipient, bytes(MIN_ESCROW_PLAINTEXT), b"")
    largest = seal(recipient, bytes(MAX_ESCROW_PLAINTEXT), b"")
    assert (len(smallest), len(largest)) == (77, 317)
    for sealed in (smallest, largest, seal(recipient, bytes(32), b"")):
        check_sealed_shape(sealed, MIN_ESCROW_PLAINTEXT, MAX_ESCROW_PLAINTEXT)
    for sealed in (
        b"",
        smallest[:-1],
        largest + b"x",
        b"\x02" + smallest[1:],
        bytes.fromhex(VECTOR)[:76],
    ):
        with pytest.raises(SealingError):
            check_sealed_shape(sealed, MIN_ESCROW_PLAINTEXT, MAX_ESCROW_PLAINTEXT)

"""DPoP proofs made by the device key, checked with an independent JOSE library (PyJWT)."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt as pyjwt
import pytest

from app.sync.dpop import DeviceKey, access_token_hash, target_uri


def _thumbprint(jwk: dict[str, str]) -> str:
    # RFC 7638 §3: the required members, sorted, no whitespace, SHA-256, base64url.
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def test_the_device_id_is_the_keys_thumbprint_and_survives_a_reload() -> None:
    key = DeviceKey.generate()
    assert key.device_id == _thumbprint(key.public_jwk)
    assert len(key.device_id) == 43
    again = DeviceKey.from_pem(key.to_pem())
    assert again.device_id == key.device_id
    assert "PRIVATE" not in repr(key) and key.device_id in repr(key)


def test_a_proof_verifies_with_the_public_key_in_its_header() -> None:
    key = DeviceKey.generate()
    proof = key.proof("post", "https://Sync.Example/v1/sync/push?x=1#f", "tok-123", now=1000)
    header = pyjwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert "d" not in header["jwk"]
    public = pyjwt.PyJWK(header["jwk"]).key
    claims = pyjwt.decode(proof, public, algorithms=["ES256"], options={"verify_iat": False})
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://sync.example/v1/sync/push"
    assert claims["iat"] == 1000
    assert claims["ath"] == access_token_hash("tok-123")
    assert len(claims["jti"]) >= 16
    assert key.proof("GET", "http://a/") != key.proof("GET", "http://a/")  # fresh jti


def test_access_token_hash_and_target_uri() -> None:
    # RFC 9449 §7.1's example token and its ath.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    assert target_uri("HTTP://Host:8080") == "http://host:8080/"


def test_only_private_p256_keys_are_device_keys() -> None:
    with pytest.raises(ValueError, match="not a device key"):
        DeviceKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")

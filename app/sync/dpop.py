"""The device key and its DPoP proofs (RFC 9449): how a device proves who it is.

Each device holds an EC P-256 key pair. The device id *is* the key's JWK thumbprint
(RFC 7638, base64url SHA-256, 43 characters), so a device id cannot be presented with
another key: the server binds the id to the thumbprint when the device registers, rejects
a proof whose key does not hash to the id it claims, and revokes by key.

Every authenticated request carries, beside ``Authorization: Bearer <access token>``:

* ``DPoP: <proof>``: a compact JWS, header ``{"typ": "dpop+jwt", "alg": "ES256", "jwk":
  <public key>}``, claims ``jti`` (random, 128 bits), ``htm`` (the method), ``htu`` (the URL
  without query and fragment), ``iat`` (seconds) and ``ath`` (base64url SHA-256 of the
  access token);
* ``X-Hushchat-Device: <thumbprint>`` (kept so logs and rate limits can name the device
  before the proof is checked).

The private key is stored by the caller (in the vault: it never leaves the device and is
never synced); this module only makes, loads and uses it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey

__all__ = ["DPOP_HEADER", "DeviceKey", "access_token_hash", "target_uri"]

DPOP_HEADER: Final = "DPoP"
PROOF_TYPE: Final = "dpop+jwt"
ALGORITHM: Final = "ES256"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """The ``ath`` claim: base64url SHA-256 of the access token's ASCII bytes."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


def target_uri(url: str) -> str:
    """The ``htu`` claim for ``url``: scheme, host and path; no query, no fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", "", ""))


class DeviceKey:
    """One device's key pair."""

    def __init__(self, key: ECKey) -> None:
        if key.curve_name != "P-256" or not key.is_private:
            raise ValueError("a device key is a private EC P-256 key")
        self._key = key
        self.device_id: Final = key.thumbprint()

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(ECKey.generate_key("P-256", auto_kid=False))

    @classmethod
    def from_pem(cls, pem: bytes) -> DeviceKey:
        """Load a key saved with :meth:`to_pem` (ValueError if it is not one)."""
        try:
            key = ECKey.import_key(pem)
        except (ValueError, TypeError) as error:
            raise ValueError("not a device key (PKCS#8 PEM of an EC P-256 key)") from error
        return cls(key)

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM: store it only inside the vault."""
        pem = self._key.as_pem(private=True)
        return pem if isinstance(pem, bytes) else pem.encode("ascii")

    @property
    def public_jwk(self) -> dict[str, str]:
        return {k: str(v) for k, v in self._key.as_dict(private=False).items()}

    def proof(
        self, method: str, url: str, access_token: str | None = None, *, now: float | None = None
    ) -> str:
        """A fresh DPoP proof for one request."""
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": target_uri(url),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        header = {"typ": PROOF_TYPE, "alg": ALGORITHM, "jwk": self.public_jwk}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM])

    def __repr__(self) -> str:
        return f"DeviceKey({self.device_id})"

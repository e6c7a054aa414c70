"""DPoP proofs (RFC 9449): every authenticated request proves the device's key.

A device holds an EC P-256 key pair; its device id *is* the key's RFC 7638 thumbprint
(base64url SHA-256, 43 characters). Each authenticated request carries, beside the bearer
token and ``X-Hushchat-Device``, a ``DPoP`` header: a compact JWS with header ``typ``
``dpop+jwt``, ``alg`` ``ES256`` and the public ``jwk``, and claims ``jti``, ``htm``,
``htu``, ``iat`` and ``ath``. :meth:`DpopVerifier.verify` checks, in order:

1. the proof is present and not absurdly long; its header parses, ``typ`` is
   ``dpop+jwt``, ``alg`` is on the allow-list (ES256 only) and ``jwk`` is a public P-256
   key (no ``d``);
2. the key's thumbprint equals the claimed device id;
3. the signature verifies with that key (the key parsed by PyJWT's JWK support; the
   compact JWS itself is checked here: three strict base64url segments, a 64-byte raw
   ES256 signature verified by ``cryptography`` — PyJWT's general decoder cost a tenth of
   the server's CPU time per request);
4. ``htm`` is the request method, ``htu`` the request URL without query and fragment
   (scheme and host compared case-insensitively, default ports dropped; behind a proxy
   the configured ``PUBLIC_URL`` replaces scheme, host and a path prefix);
5. ``iat`` is at most ``DPOP_MAX_AGE_SECONDS`` old and ``DPOP_CLOCK_SKEW_SECONDS`` ahead;
6. ``ath`` is the base64url SHA-256 of the access token;
7. ``jti`` has not been seen with this key inside the window (:class:`MemoryReplayCache`
   per process, or the rate-limit storage when that is shared, e.g. Redis).

Failures raise :class:`DpopError` with a message safe to send to the client (it never
contains the proof or the token).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from limits.aio.storage import Storage

from sync_server.errors import SyncServerError

log = logging.getLogger(__name__)

__all__ = [
    "ALGORITHMS",
    "DPOP_HEADER",
    "DpopError",
    "DpopVerifier",
    "MemoryReplayCache",
    "ReplayCache",
    "StorageReplayCache",
    "access_token_hash",
    "jwk_thumbprint",
    "normalise_uri",
]

DPOP_HEADER: Final = "DPoP"
PROOF_TYPE: Final = "dpop+jwt"
#: Accepted proof algorithms (advertised in ``WWW-Authenticate: DPoP algs=…``).
ALGORITHMS: Final = ("ES256",)
#: Longest proof accepted (a P-256 proof is about 600 characters).
MAX_PROOF_LENGTH: Final = 4096
#: Longest ``jti`` accepted (the client sends 22 characters).
MAX_JTI_LENGTH: Final = 256
#: Parsed device public keys kept per process.
KEY_CACHE_SIZE: Final = 10_000
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DpopError(SyncServerError):
    """The DPoP proof is missing or not acceptable; the message is safe for the client."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """The ``ath`` claim: base64url SHA-256 of the access token."""
    return _b64url(hashlib.sha256(token.encode("utf-8")).digest())


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public JWK: SHA-256 of its required members, base64url."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _origin(uri: str | None) -> str | None:
    if uri is None:
        return None
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _log_origins(claimed: str | None, expected: str | None) -> None:
    """Say which origins differ (a proxy without PUBLIC_URL shows up here); no paths."""
    if _origin(claimed) != _origin(expected):
        log.info(
            "dpop_origin_mismatch",
            extra={"claimed_origin": _origin(claimed), "expected_origin": _origin(expected)},
        )


_SEGMENT = re.compile(r"([A-Za-z0-9_-]*)={0,2}")
_ES256 = ec.ECDSA(hashes.SHA256())


def _segment(text: str) -> bytes:
    """One base64url segment of a compact JWS; ``ValueError`` for anything else."""
    match = _SEGMENT.fullmatch(text)
    if match is None:
        raise ValueError("not base64url")
    body = match.group(1)
    if len(body) % 4 == 1 or (body != text and len(text) % 4):
        raise ValueError("bad base64url padding")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def verified_payload(proof: str, key: ec.EllipticCurvePublicKey) -> bytes:
    """The payload of an ES256 compact JWS once its signature verifies with ``key``.

    Raises ``ValueError`` for a malformed JWS and ``InvalidSignature`` for a wrong
    signature. The header is the caller's to check (:meth:`DpopVerifier._checked_header`,
    once per header): its ``alg``, and that it is strict base64url.
    """
    parts = proof.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header, payload, signature = parts
    raw = _segment(signature)
    if len(raw) != 64:
        raise InvalidSignature("an ES256 signature has 64 bytes")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(der, f"{header}.{payload}".encode("ascii"), _ES256)
    return _segment(payload)


def _header(proof: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified."""
    encoded, dot, _ = proof.partition(".")
    try:
        if not dot:
            raise ValueError("not a compact JWS")
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError included
        raise DpopError("Malformed DPoP proof.") from exc
    if not isinstance(header, dict):
        raise DpopError("Malformed DPoP proof.")
    return header


@functools.lru_cache(maxsize=1024)
def normalise_uri(url: str) -> str | None:
    """``url`` as ``htu`` values are compared, or None when it is not an http(s) URL.

    Scheme and host lower-cased, the default port dropped, user info, query and fragment
    left out, the path percent-decoded ("/" when empty) (RFC 9449 §4.3, RFC 3986 §6).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{unquote(parts.path) or '/'}"


class ReplayCache(Protocol):
    """Remembers the proofs (by key thumbprint and ``jti``) seen inside the window."""

    async def first_use(self, key: str, issued_at: int) -> bool:
        """True the first time ``key`` is seen; False for a replay (or one it cannot rule out)."""
        ...


class MemoryReplayCache:
    """A bounded in-process replay cache.

    Entries live for ``ttl`` seconds (the whole ``iat`` window). When more than
    ``capacity`` proofs arrive within one window, the oldest entry is dropped and every
    proof issued at or before its ``iat`` is refused from then on: the window narrows
    instead of letting a dropped proof be replayed. Per process: several processes share
    no memory, so a proof replayed to another process is caught only with a shared
    storage (:class:`StorageReplayCache`).
    """

    def __init__(self, capacity: int, ttl: float) -> None:
        self._capacity = capacity
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._floor = -1  # proofs issued at or before this were possibly forgotten

    def __len__(self) -> int:
        return len(self._entries)

    async def first_use(self, key: str, issued_at: int) -> bool:
        """See :meth:`ReplayCache.first_use`."""
        moment = time.time()
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest[0] > moment:
                break
            entries.popitem(last=False)
        if issued_at <= self._floor or key in entries:
            return False
        entries[key] = (moment + self._ttl, issued_at)
        if len(entries) > self._capacity:
            _, (_, dropped_iat) = entries.popitem(last=False)
            self._floor = max(self._floor, dropped_iat)
        return True


class StorageReplayCache:
    """A replay cache in the rate-limit storage (shared by every process with Redis)."""

    def __init__(self, storage: Storage, ttl: int) -> None:
        self._storage = storage
        self._ttl = ttl

    async def first_use(self, key: str, issued_at: int) -> bool:
        """See :meth:`ReplayCache.first_use`."""
        del issued_at
        return int(await self._storage.incr("dpop-jti:" + key, self._ttl)) == 1


class DpopVerifier:
    """Checks DPoP proofs against one request (see the module docstring)."""

    def __init__(
        self,
        replay: ReplayCache,
        *,
        max_age: int,
        clock_skew: int,
        public_url: str | None = None,
    ) -> None:
        self._replay = replay
        # Public keys parsed from their JWK, by thumbprint (a device sends the same key on
        # every call; parsing it is a third of the cost of a check).
        self._keys: OrderedDict[str, ec.EllipticCurvePublicKey] = OrderedDict()
        # Proof headers that passed every check, as sent (base64url), with their key's
        # thumbprint and key: a device sends the same header on every call, and what the
        # checks conclude from it depends on nothing else.
        self._headers: OrderedDict[str, tuple[str, ec.EllipticCurvePublicKey]] = OrderedDict()
        self._max_age = max_age
        self._clock_skew = clock_skew
        self._public: str | None = None
        if public_url:
            base = normalise_uri(public_url)
            if base is None:
                raise ValueError("PUBLIC_URL must be an http(s) URL")
            self._public = base.rstrip("/")

    def expected_uri(self, request_url: str, path: str) -> str | None:
        """The ``htu`` this request must carry, normalised.

        ``request_url`` is the URL as the server sees it; with ``PUBLIC_URL`` configured,
        its scheme and host (and path prefix, if any) are used instead, followed by
        ``path`` (the request path within the app).
        """
        if self._public is None:
            # Without query and fragment (normalise_uri leaves them out): one cached entry
            # per path, whatever a pull's cursor.
            return normalise_uri(request_url.partition("?")[0].partition("#")[0])
        return self._public + (unquote(path) or "/")

    def _key(self, thumbprint: str, jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
        key = self._keys.get(thumbprint)
        if key is None:
            key = jwt.PyJWK(jwk, algorithm="ES256").key
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                raise ValueError("not an EC P-256 public key")
            self._keys[thumbprint] = key
            if len(self._keys) > KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(thumbprint)
        return key

    async def verify(
        self,
        proof: str | None,
        *,
        method: str,
        expected_uri: str | None,
        access_token: str,
        device_id: str,
    ) -> str:
        """Check ``proof`` for this request; return the key's thumbprint (= ``device_id``)."""
        if not proof:
            raise DpopError("A DPoP proof is required.")
        if len(proof) > MAX_PROOF_LENGTH:
            raise DpopError("DPoP proof too long.")
        encoded = proof.partition(".")[0]
        known = self._headers.get(encoded)
        if known is not None:
            self._headers.move_to_end(encoded)
            thumbprint, key = known
            if not hmac.compare_digest(thumbprint, device_id):
                raise DpopError("The DPoP key does not match the device id.")
        else:
            thumbprint, key = self._checked_header(encoded, proof, device_id)
        try:
            claims = json.loads(verified_payload(proof, key))
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise DpopError("DPoP proof signature invalid.") from exc
        return await self._check_claims(
            claims, thumbprint, method=method, expected_uri=expected_uri, access_token=access_token
        )

    def _checked_header(
        self, encoded: str, proof: str, device_id: str
    ) -> tuple[str, ec.EllipticCurvePublicKey]:
        """The thumbprint and key of a proof header not seen before, once it checks out."""
        try:
            _segment(encoded)  # strict base64url, as the other segments
        except ValueError as exc:
            raise DpopError("Malformed DPoP proof.") from exc
        header = _header(proof)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
            raise DpopError("DPoP proof typ must be dpop+jwt.")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise DpopError("DPoP proof algorithm not allowed (ES256 only).")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or "d" in jwk:
            raise DpopError("DPoP proof jwk must be a public key.")
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise DpopError("DPoP proof jwk must be an EC P-256 key.")
        if not all(isinstance(jwk.get(name), str) for name in ("x", "y")):
            raise DpopError("DPoP proof jwk must be an EC P-256 key.")
        thumbprint = jwk_thumbprint(jwk)
        if not hmac.compare_digest(thumbprint, device_id):
            raise DpopError("The DPoP key does not match the device id.")
        try:
            key = self._key(thumbprint, jwk)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise DpopError("DPoP proof signature invalid.") from exc
        self._headers[encoded] = (thumbprint, key)
        if len(self._headers) > KEY_CACHE_SIZE:
            self._headers.popitem(last=False)
        return thumbprint, key

    async def _check_claims(
        self,
        claims: Any,
        thumbprint: str,
        *,
        method: str,
        expected_uri: str | None,
        access_token: str,
    ) -> str:
        """The rest of :meth:`verify` once the signature checks out: the claims."""
        if not isinstance(claims, dict):
            raise DpopError("DPoP proof claims must be a JSON object.")
        for name in ("jti", "htm", "htu", "iat", "ath"):
            if name not in claims:
                raise DpopError(f"DPoP proof lacks the {name} claim.")
        if claims["htm"] != method:
            raise DpopError("DPoP proof htm does not match the request method.")
        htu = claims["htu"]
        claimed = normalise_uri(htu) if isinstance(htu, str) else None
        if claimed is None or expected_uri is None or claimed != expected_uri:
            _log_origins(claimed, expected_uri)
            raise DpopError("DPoP proof htu does not match the request URL.")
        issued_at = claims["iat"]
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            raise DpopError("DPoP proof iat must be a number.")
        now = time.time()
        if issued_at > now + self._clock_skew:
            raise DpopError("DPoP proof issued in the future; check the device clock.")
        if issued_at < now - self._max_age:
            raise DpopError("DPoP proof too old; check the device clock.")
        ath = claims["ath"]
        if not isinstance(ath, str) or not hmac.compare_digest(
            ath.encode("utf-8", "replace"), access_token_hash(access_token).encode("ascii")
        ):
            raise DpopError("DPoP proof ath does not match the access token.")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise DpopError("DPoP proof jti invalid.")
        replay_key = hashlib.sha256(f"{thumbprint}:{jti}".encode()).hexdigest()[:32]
        if not await self._replay.first_use(replay_key, int(issued_at)):
            raise DpopError("DPoP proof already used.")
        return thumbprint

"""OIDC access-token validation against the issuer's JWKS (async, cached, rotation-aware).

Checks, in order: the token parses; ``alg`` is on the allow-list (``none`` and HMAC never
are); the signing key is found by ``kid`` in the issuer's JWKS (an unknown ``kid`` triggers
at most one refetch per ``min_refresh`` seconds, which is how key rotation is picked up);
the key type fits the algorithm; then signature, ``iss``, ``aud``, ``exp``, ``nbf`` and
``iat`` via PyJWT with a small leeway. ``email`` is only trusted with ``email_verified``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from sync_server.errors import SyncServerError

log = logging.getLogger(__name__)

_KEY_TYPES = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
}


class TokenError(SyncServerError):
    """The bearer token is not acceptable; the message is safe to show to the client."""


class IssuerUnavailableError(SyncServerError):
    """The issuer's discovery document or JWKS could not be fetched."""


@dataclass(frozen=True)
class VerifiedToken:
    """What the server uses from a validated access token."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    auth_time: datetime | None
    expires_at: datetime
    token_hash: str


@dataclass(frozen=True)
class SigningKey:
    """A published signing key and the ``alg`` the JWK declares (if any)."""

    jwk: PyJWK
    declared_alg: str | None


def token_hash(token: str) -> str:
    """SHA-256 hex of a bearer token (tokens are never stored or logged in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()


class JwksCache:
    """Signing keys of one issuer, fetched with httpx and cached.

    Keys are kept ``ttl`` seconds; a token with an unknown ``kid`` causes a refetch unless
    the last fetch was less than ``min_refresh`` seconds ago (so garbage kids cannot make us
    hammer the issuer).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        issuer: str,
        jwks_url: str | None,
        *,
        ttl: float,
        min_refresh: float,
    ) -> None:
        self._http = http
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        if document.get("issuer") != self._issuer:
            raise IssuerUnavailableError(
                f"discovery document of {self._issuer} names issuer {document.get('issuer')!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerUnavailableError("discovery document has no jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, timeout=10.0)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailableError(f"cannot fetch {url}: {exc}") from exc
        if not isinstance(data, dict):
            raise IssuerUnavailableError(f"{url} did not return a JSON object")
        return data

    async def _refresh(self) -> None:
        if self._jwks_url is None:
            self._jwks_url = await self._discover()
        data = await self._get_json(self._jwks_url)
        raw_keys = data.get("keys")
        if not isinstance(raw_keys, list):
            raise IssuerUnavailableError(f"JWKS at {self._jwks_url} has no keys list")
        keys: dict[str | None, SigningKey] = {}
        for raw in raw_keys:
            if not isinstance(raw, dict) or raw.get("use") not in (None, "sig"):
                continue
            if raw.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # never symmetric ("oct") keys
            try:
                key = PyJWK(raw)
            except jwt.PyJWTError as exc:
                log.warning("jwks_key_skipped", extra={"reason": str(exc)})
                continue
            declared = raw.get("alg")
            keys[key.key_id] = SigningKey(key, declared if isinstance(declared, str) else None)
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("jwks_fetched", extra={"keys": len(keys), "issuer": self._issuer})

    async def get(self, kid: str | None) -> SigningKey | None:
        """The key for ``kid``; refetches on expiry or (rate-limited) on a miss."""
        async with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > self._ttl
            if stale:
                await self._refresh()
            elif self._lookup(kid) is None:
                assert self._fetched_at is not None
                if now - self._fetched_at >= self._min_refresh:
                    await self._refresh()
            return self._lookup(kid)

    def _lookup(self, kid: str | None) -> SigningKey | None:
        if kid is None:
            # Only unambiguous without a kid: exactly one signing key published.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


class OidcVerifier:
    """Validates access tokens of one issuer for one audience."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        algorithms: list[str],
        leeway: int,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._algorithms = [a for a in algorithms if a in _KEY_TYPES]
        self._leeway = leeway

    async def verify(self, token: str) -> VerifiedToken:
        """Validate ``token``; raises :class:`TokenError` with a client-safe reason."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError("token algorithm not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("malformed token")
        key = await self._jwks.get(kid)
        if key is None:
            raise TokenError("unknown signing key")
        if _KEY_TYPES[alg] != key.jwk.key_type or key.declared_alg not in (None, alg):
            raise TokenError("token algorithm does not match the signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.jwk.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer not accepted") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("token not valid yet") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("token signature or claims invalid") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise TokenError("token has no usable subject")
        email = claims.get("email")
        verified = claims.get("email_verified") in (True, "true")
        auth_time = claims.get("auth_time")
        return VerifiedToken(
            issuer=self._issuer,
            subject=subject,
            email=email if isinstance(email, str) and len(email) <= 320 else None,
            email_verified=verified and isinstance(email, str),
            auth_time=(
                datetime.fromtimestamp(auth_time, UTC)
                if isinstance(auth_time, int | float)
                else None
            ),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_hash=token_hash(token),
        )

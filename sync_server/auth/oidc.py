"""OIDC access-token validation against the issuer's JWKS (async, cached, rotation-aware).

Checks, in order: the token parses; ``alg`` is on the allow-list (``none`` and HMAC never
are); ``typ`` is the required one when ``OIDC_REQUIRE_TOKEN_TYPE`` is set (``at+jwt``,
RFC 9068, keeps ID tokens and other JWTs of the issuer out); the signing key is found by
``kid`` in the issuer's JWKS (an unknown ``kid`` triggers at most one refetch per
``min_refresh`` seconds, which is how key rotation is picked up); the key type fits the
algorithm; then signature, ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` via PyJWT with a
small leeway; ``exp - iat`` is at most ``OIDC_MAX_TOKEN_LIFETIME_SECONDS``. ``email`` is
only trusted with ``email_verified``. :class:`JwksCache` describes the fetching: shared,
backing off after failures, with a grace period for cached keys.

A token that passed is remembered by its SHA-256 (never in clear) until it expires, at
most :data:`VERIFIED_TOKEN_TTL` seconds (or the JWKS cache time if shorter), so a device's
calls do not redo the signature check each time. Revocation is not cached: the device and
the token's binding are looked up in the database on every request
(:mod:`sync_server.accounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from sync_server.errors import SyncServerError
from sync_server.settings import normalise_token_type

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


#: Longest time a verified token is trusted without checking it again (a signing key that
#: the issuer withdraws stops being honoured within this, or the JWKS cache time).
VERIFIED_TOKEN_TTL = 300
#: Verified tokens remembered per process.
VERIFIED_TOKEN_CACHE_SIZE = 10_000


class TokenError(SyncServerError):
    """The bearer token is not acceptable; the message is safe to show to the client."""


class IssuerUnavailableError(SyncServerError):
    """The issuer's discovery document or JWKS could not be fetched."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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

    * Keys are trusted ``ttl`` seconds. A token with an unknown ``kid`` causes a refetch
      unless the last fetch was less than ``min_refresh`` seconds ago (so garbage kids
      cannot make us hammer the issuer).
    * A fetch is one shared task: concurrent callers that need it await the same fetch,
      and callers whose key is cached never wait for it (there is no lock around the
      network).
    * A failed fetch backs off: no new fetch for 1 s, doubling after each further failure
      up to ``retry_max`` seconds; meanwhile callers that need a fetch get
      :class:`IssuerUnavailableError` at once.
    * Grace: after ``ttl``, cached keys are still used for up to ``grace`` more seconds
      while they are being refetched in the background, and so while the issuer cannot be
      reached; a successful fetch replaces them (a key the issuer dropped stops working).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        issuer: str,
        jwks_url: str | None,
        *,
        ttl: float,
        min_refresh: float,
        grace: float = 0.0,
        retry_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._grace = grace
        self._retry_max = retry_max
        self._clock = clock
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at: float | None = None
        self._fetch: asyncio.Task[None] | None = None
        self._failures = 0
        self._retry_at: float | None = None

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

    async def _download(self) -> dict[str | None, SigningKey]:
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
        return keys

    async def _refresh(self) -> None:
        """One fetch; records success (new keys) or failure (the next backoff step)."""
        try:
            keys = await self._download()
        except IssuerUnavailableError as exc:
            self._failures += 1
            delay = min(self._retry_max, 2.0 ** min(self._failures - 1, 30))
            self._retry_at = self._clock() + delay
            log.warning(
                "jwks_fetch_failed",
                extra={
                    "issuer": self._issuer,
                    "reason": str(exc),
                    "failures": self._failures,
                    "retry_in_s": delay,
                    "cached_keys": len(self._keys),
                },
            )
            raise
        finally:
            self._fetch = None
        self._keys = keys
        self._fetched_at = self._clock()
        self._failures = 0
        self._retry_at = None
        log.info("jwks_fetched", extra={"keys": len(keys), "issuer": self._issuer})

    def _start_fetch(self) -> asyncio.Task[None]:
        """The running fetch, or a new one; raises while backing off after failures."""
        if self._fetch is not None:
            return self._fetch
        now = self._clock()
        if self._retry_at is not None and now < self._retry_at:
            wait = math.ceil(self._retry_at - now)
            raise IssuerUnavailableError(
                f"the last fetch from {self._issuer} failed; next attempt in {wait} s",
                retry_after=wait,
            )
        task = asyncio.create_task(self._refresh(), name="jwks-fetch")
        # Nobody may be left to await it (cancelled requests, background refresh).
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._fetch = task
        return task

    async def _fetched(self) -> None:
        """Wait for the shared fetch (a cancelled caller does not cancel it)."""
        await asyncio.shield(self._start_fetch())

    async def get(self, kid: str | None) -> SigningKey | None:
        """The key for ``kid``; fetches when stale or (rate-limited) on a miss."""
        now = self._clock()
        key = self._lookup(kid)
        age = None if self._fetched_at is None else now - self._fetched_at
        if age is not None and age <= self._ttl:
            if key is not None:
                return key
            if age < self._min_refresh:
                return None  # unknown kid, and the keys were fetched a moment ago
        elif key is not None and age is not None and age <= self._ttl + self._grace:
            # Stale but within the grace period: answer now, refresh in the background.
            with contextlib.suppress(IssuerUnavailableError):
                self._start_fetch()
            return key
        await self._fetched()
        return self._lookup(kid)

    @property
    def ttl(self) -> float:
        """How long fetched keys are trusted (seconds)."""
        return self._ttl

    async def aclose(self) -> None:
        """Cancel a fetch in progress (app shutdown)."""
        task = self._fetch
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, IssuerUnavailableError):
                await task

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
        required_type: str | None = None,
        max_lifetime: int = 0,
        cache_size: int = VERIFIED_TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks = jwks
        self._cache: OrderedDict[str, tuple[float, VerifiedToken]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._algorithms = [a for a in algorithms if a in _KEY_TYPES]
        self._leeway = leeway
        self._required_type = normalise_token_type(required_type) if required_type else None
        self._max_lifetime = max_lifetime

    async def aclose(self) -> None:
        """Stop a JWKS fetch in progress (app shutdown)."""
        await self._jwks.aclose()

    async def verify(self, token: str) -> VerifiedToken:
        """Validate ``token``; raises :class:`TokenError` with a client-safe reason.

        A token verified before is answered from the cache until it expires (at most
        ``VERIFIED_TOKEN_TTL`` seconds after its check); failures are never cached.
        """
        hashed = token_hash(token)
        now = self._clock()
        cached = self._cache.get(hashed)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(hashed)
                return cached[1]
            del self._cache[hashed]
        verified = await self._verify(token, hashed)
        # Not beyond the keys' own freshness either: with OIDC_JWKS_GRACE_SECONDS=0 an
        # issuer that cannot be reached makes cached tokens fail as the keys go stale.
        trusted_for = min(VERIFIED_TOKEN_TTL, self._jwks.ttl)
        until = min(verified.expires_at.timestamp(), now + trusted_for)
        if self._cache_size and until > now:
            self._cache[hashed] = (until, verified)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verified

    async def _verify(self, token: str, hashed: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError("token algorithm not allowed")
        if self._required_type is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or normalise_token_type(typ) != self._required_type:
                raise TokenError("token type not accepted")
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
        lifetime = int(claims["exp"]) - int(claims["iat"])
        if self._max_lifetime and lifetime > self._max_lifetime:
            raise TokenError("token lifetime longer than this server accepts")
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
            token_hash=hashed,
        )

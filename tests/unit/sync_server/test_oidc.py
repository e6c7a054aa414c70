"""OIDC token validation: the issuer's documents, the JWKS cache and the token checks."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from sync_server.auth.oidc import (
    IssuerUnavailableError,
    JwksCache,
    OidcVerifier,
    TokenError,
    token_hash,
)

ISSUER = "https://issuer.test/realms/hushchat"
AUDIENCE = "hushchat-sync"
JWKS_URL = ISSUER + "/certs"

Handler = Callable[[httpx.Request], httpx.Response]


class Issuer:
    """Signing keys (EC P-256: quick to make) served as a JWKS, and a token minter."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.extra_jwks: list[Any] = []
        self.fetches = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        keys: list[Any] = list(self.extra_jwks)
        for kid, key in self.keys.items():
            jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig")
            keys.append(jwk)
        return {"keys": keys}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        return httpx.Response(200, json=self.jwks())

    def mint(self, kid: str | None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        body.update(claims)
        signer = self.keys[kid] if kid is not None else next(iter(self.keys.values()))
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(body, signer, algorithm="ES256", headers=headers)


def cache(
    handler: Handler, *, jwks_url: str | None = JWKS_URL, min_refresh: float = 60
) -> JwksCache:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return JwksCache(http, ISSUER, jwks_url, ttl=3600, min_refresh=min_refresh)


def verifier(jwks: JwksCache) -> OidcVerifier:
    return OidcVerifier(
        jwks, issuer=ISSUER, audience=AUDIENCE, algorithms=["ES256", "RS256", "HS256"], leeway=0
    )


@pytest.fixture
def issuer() -> Issuer:
    fake = Issuer()
    fake.add_key("key-1")
    return fake


# --- discovery and fetching ---------------------------------------------------------------


def discovery(document: Any) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=document)
        return httpx.Response(404)

    return handle


async def test_discovery_finds_the_jwks(issuer: Issuer) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": JWKS_URL})
        assert str(request.url) == JWKS_URL
        return issuer.handler(request)

    key = await cache(handle, jwks_url=None).get("key-1")
    assert key is not None
    assert key.jwk.key_type == "EC"
    assert key.declared_alg is None


async def test_discovery_naming_another_issuer_is_refused() -> None:
    jwks = cache(discovery({"issuer": "https://evil.test", "jwks_uri": JWKS_URL}), jwks_url=None)
    with pytest.raises(IssuerUnavailableError, match=r"names issuer 'https://evil\.test'"):
        await jwks.get("key-1")


async def test_discovery_without_jwks_uri_is_refused() -> None:
    jwks = cache(discovery({"issuer": ISSUER}), jwks_url=None)
    with pytest.raises(IssuerUnavailableError, match="no jwks_uri"):
        await jwks.get("key-1")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(503), "cannot fetch"),
        (httpx.Response(200, text="<html>"), "cannot fetch"),
        (httpx.Response(200, json=["not", "an", "object"]), "did not return a JSON object"),
        (httpx.Response(200, json={"keys": "none"}), "has no keys list"),
    ],
)
async def test_an_unusable_jwks_makes_the_issuer_unavailable(
    response: httpx.Response, message: str
) -> None:
    with pytest.raises(IssuerUnavailableError, match=message):
        await cache(lambda request: response).get("key-1")


async def test_an_unreachable_issuer_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(IssuerUnavailableError, match="cannot fetch"):
        await cache(refuse).get("key-1")


async def test_only_usable_signing_keys_are_kept(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    rsa_key = json.loads(
        jwt.algorithms.RSAAlgorithm.to_jwk(
            rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        )
    )
    issuer.extra_jwks = [
        "not an object",
        {**rsa_key, "kid": "encryption", "use": "enc"},
        {"kty": "oct", "kid": "symmetric", "k": "c2VjcmV0"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {**rsa_key, "kid": "rsa", "alg": "RS256"},
    ]
    jwks = cache(issuer.handler)
    with caplog.at_level(logging.WARNING, logger="sync_server.auth.oidc"):
        assert await jwks.get("key-1") is not None
    for kid in ("encryption", "symmetric", "broken"):
        assert await jwks.get(kid) is None
    rsa_entry = await jwks.get("rsa")
    assert rsa_entry is not None
    assert rsa_entry.declared_alg == "RS256"
    assert [r.message for r in caplog.records] == ["jwks_key_skipped"]


async def test_a_token_without_kid_needs_exactly_one_published_key(issuer: Issuer) -> None:
    jwks = cache(issuer.handler)
    assert (await verifier(jwks).verify(issuer.mint(None))).subject == "alice"
    issuer.add_key("key-2")
    ambiguous = cache(issuer.handler)
    with pytest.raises(TokenError, match="unknown signing key"):
        await verifier(ambiguous).verify(issuer.mint(None))


async def test_an_unknown_kid_refetches_at_most_once_per_min_refresh(issuer: Issuer) -> None:
    patient = cache(issuer.handler, min_refresh=3600)
    assert await patient.get("key-1") is not None
    issuer.add_key("rotated")
    assert await patient.get("rotated") is None  # too soon to ask the issuer again
    assert issuer.fetches == 1

    eager = cache(issuer.handler, min_refresh=0)
    assert await eager.get("nobody") is None
    issuer.add_key("rotated-again")
    assert await eager.get("rotated-again") is not None
    assert issuer.fetches == 3


# --- the token checks -----------------------------------------------------------------------


async def test_a_valid_token_yields_its_identity(issuer: Issuer) -> None:
    token = issuer.mint(
        "key-1", email="alice@example.org", email_verified="true", auth_time=1_700_000_000
    )
    verified = await verifier(cache(issuer.handler)).verify(token)
    assert (verified.issuer, verified.subject) == (ISSUER, "alice")
    assert verified.email == "alice@example.org"
    assert verified.email_verified is True
    assert verified.auth_time is not None and int(verified.auth_time.timestamp()) == 1_700_000_000
    assert verified.token_hash == token_hash(token)


async def test_an_unverified_or_oversized_email_is_not_trusted(issuer: Issuer) -> None:
    check = verifier(cache(issuer.handler))
    unverified = await check.verify(issuer.mint("key-1", email="a@example.org"))
    assert (unverified.email, unverified.email_verified) == ("a@example.org", False)
    huge = await check.verify(issuer.mint("key-1", email="a" * 321, email_verified=True))
    assert huge.email is None
    assert huge.auth_time is None


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": 1}, "token expired"),
        ({"aud": "someone-else"}, "audience not accepted"),
        ({"iss": "https://evil.test"}, "issuer not accepted"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iat": "yesterday"}, "signature or claims invalid"),
        ({"sub": ""}, "no usable subject"),
        ({"sub": "x" * 256}, "no usable subject"),
    ],
)
async def test_claims_that_are_not_acceptable(
    issuer: Issuer, claims: dict[str, Any], message: str
) -> None:
    with pytest.raises(TokenError, match=message):
        await verifier(cache(issuer.handler)).verify(issuer.mint("key-1", **claims))


async def test_malformed_and_disallowed_headers(issuer: Issuer) -> None:
    check = verifier(cache(issuer.handler))
    with pytest.raises(TokenError, match="malformed token"):
        await check.verify("not-a-jwt")
    unsigned = jwt.encode({"sub": "alice"}, "", algorithm="none")
    with pytest.raises(TokenError, match="algorithm not allowed"):
        await check.verify(unsigned)
    # HS256 was configured, but symmetric algorithms are never accepted.
    with pytest.raises(TokenError, match="algorithm not allowed"):
        await check.verify(jwt.encode({"sub": "alice"}, "s" * 32, algorithm="HS256"))
    token = issuer.mint("key-1")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": 7}).encode())
    numeric_kid = header.decode().rstrip("=") + token[token.index(".") :]
    with pytest.raises(TokenError, match="malformed token"):
        await check.verify(numeric_kid)
    assert issuer.fetches == 0  # refused before any key was needed


async def test_the_algorithm_must_fit_the_signing_key(issuer: Issuer) -> None:
    rsa_signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # An RS256 token naming the EC key's kid: refused on the key type, not tried.
    token = jwt.encode({"sub": "alice"}, rsa_signer, algorithm="RS256", headers={"kid": "key-1"})
    with pytest.raises(TokenError, match="does not match the signing key"):
        await verifier(cache(issuer.handler)).verify(token)


async def test_a_forged_signature_is_refused(issuer: Issuer) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, forger, algorithm="ES256", headers={"kid": "key-1"})
    with pytest.raises(TokenError, match="signature or claims invalid"):
        await verifier(cache(issuer.handler)).verify(token)


# --- the verified-token cache ---------------------------------------------------------------


def _counting(check: OidcVerifier, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every token the verifier really checks (cache misses)."""
    checked: list[str] = []
    real = check._verify

    async def counting(token: str, hashed: str) -> Any:
        checked.append(token)
        return await real(token, hashed)

    monkeypatch.setattr(check, "_verify", counting)
    return checked


async def test_a_verified_token_is_remembered_until_it_expires(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    check = OidcVerifier(
        cache(issuer.handler),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["ES256"],
        leeway=0,
        clock=lambda: now[0],
    )
    checked = _counting(check, monkeypatch)
    token = issuer.mint("key-1", exp=int(now[0]) + 120)
    first = await check.verify(token)
    assert await check.verify(token) == first
    assert len(checked) == 1  # the second answer came from the cache
    # Failures are not cached: a bad token is checked (and refused) every time.
    wrong = issuer.mint("key-1", aud="another-api")
    for _ in range(2):
        with pytest.raises(TokenError):
            await check.verify(wrong)
    assert len(checked) == 3
    # Past its expiry (by the verifier's clock) the token is checked again.
    now[0] += 121
    await check.verify(token)
    assert len(checked) == 4


async def test_the_cache_trusts_a_token_no_longer_than_its_ttl_and_stays_bounded(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync_server.auth import oidc

    now = [time.time()]
    check = OidcVerifier(
        cache(issuer.handler),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["ES256"],
        leeway=0,
        cache_size=2,
        clock=lambda: now[0],
    )
    checked = _counting(check, monkeypatch)
    long_lived = issuer.mint("key-1", exp=int(time.time()) + 3600)
    await check.verify(long_lived)
    now[0] += oidc.VERIFIED_TOKEN_TTL - 1
    await check.verify(long_lived)
    assert len(checked) == 1
    now[0] += 2
    await check.verify(long_lived)
    assert len(checked) == 2  # checked again after VERIFIED_TOKEN_TTL
    tokens = [issuer.mint("key-1", sub=f"u{n}", exp=int(now[0]) + 600) for n in range(3)]
    for token in tokens:
        await check.verify(token)
    assert len(check._cache) == 2

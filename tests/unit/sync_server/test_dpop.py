"""The server's DPoP checks against proofs made by the desktop client's own device key."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from limits.storage import storage_from_string

from app.sync.dpop import DeviceKey
from sync_server.auth.dpop import (
    DpopError,
    DpopVerifier,
    MemoryReplayCache,
    StorageReplayCache,
    access_token_hash,
    jwk_thumbprint,
    normalise_uri,
)

URL = "https://sync.example.org/v1/sync/changes"
TOKEN = "access-token-1"


def _verifier(**kw: object) -> DpopVerifier:
    options: dict[str, object] = {"max_age": 60, "clock_skew": 5}
    options.update(kw)
    return DpopVerifier(MemoryReplayCache(1000, 70), **options)  # type: ignore[arg-type]


async def _verify(verifier: DpopVerifier, proof: str, key: DeviceKey, **kw: str) -> str:
    return await verifier.verify(
        proof,
        method=kw.get("method", "GET"),
        expected_uri=normalise_uri(kw.get("url", URL)),
        access_token=kw.get("token", TOKEN),
        device_id=kw.get("device", key.device_id),
    )


def test_the_thumbprint_is_the_clients_device_id() -> None:
    for _ in range(5):
        key = DeviceKey.generate()
        assert jwk_thumbprint(key.public_jwk) == key.device_id
    # RFC 9449 §7.1's example token and its ath, as the client computes it too.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_uris_are_compared_as_rfc_3986_normalises_them() -> None:
    assert (
        normalise_uri("HTTPS://Sync.Example.ORG:443/v1/x?q=1#f") == "https://sync.example.org/v1/x"
    )
    assert normalise_uri("http://h:8080") == "http://h:8080/"
    assert normalise_uri("http://h:80/a%2Db") == "http://h/a-b"
    assert normalise_uri("http://[::1]:8080/p") == "http://[::1]:8080/p"
    assert normalise_uri("http://user:pw@h/p") == "http://h/p"
    for bad in ("ftp://h/p", "/v1/x", "http://h:99999/", "https:///p"):
        assert normalise_uri(bad) is None, bad


async def test_a_client_proof_verifies() -> None:
    key = DeviceKey.generate()
    verifier = _verifier()
    proof = key.proof("GET", URL + "?cursor=5", TOKEN)
    assert await _verify(verifier, proof, key) == key.device_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "POST"}, "htm"),
        ({"url": "https://sync.example.org/v1/sync/push"}, "htu"),
        ({"url": "http://sync.example.org/v1/sync/changes"}, "htu"),
        ({"token": "another-token"}, "ath"),
        ({"device": "A" * 43}, "device id"),
    ],
)
async def test_a_proof_for_another_request_is_refused(change: dict[str, str], message: str) -> None:
    key = DeviceKey.generate()
    with pytest.raises(DpopError, match=message):
        await _verify(_verifier(), key.proof("GET", URL, TOKEN), key, **change)


async def test_replays_are_refused() -> None:
    key = DeviceKey.generate()
    verifier = _verifier()
    proof = key.proof("GET", URL, TOKEN)
    await _verify(verifier, proof, key)
    with pytest.raises(DpopError, match="already used"):
        await _verify(verifier, proof, key)


async def test_iat_window() -> None:
    key = DeviceKey.generate()
    verifier = _verifier()
    now = time.time()
    await _verify(verifier, key.proof("GET", URL, TOKEN, now=now - 50), key)
    await _verify(verifier, key.proof("GET", URL, TOKEN, now=now + 3), key)
    with pytest.raises(DpopError, match="too old"):
        await _verify(verifier, key.proof("GET", URL, TOKEN, now=now - 120), key)
    with pytest.raises(DpopError, match="future"):
        await _verify(verifier, key.proof("GET", URL, TOKEN, now=now + 30), key)


async def test_malformed_proofs() -> None:
    key = DeviceKey.generate()
    verifier = _verifier()
    for proof, message in [
        (None, "required"),
        ("", "required"),
        ("x" * 5000, "too long"),
        ("not-a-jws", "Malformed"),
    ]:
        with pytest.raises(DpopError, match=message):
            await _verify(verifier, proof, key)  # type: ignore[arg-type]
    # Proof signed by another key than the jwk in its header.
    other = DeviceKey.generate()
    header, _, _ = key.proof("GET", URL, TOKEN).partition(".")
    _, body, signature = other.proof("GET", URL, TOKEN).split(".")
    with pytest.raises(DpopError, match="signature"):
        await _verify(verifier, f"{header}.{body}.{signature}", key)


async def test_public_url_replaces_what_the_server_sees() -> None:
    key = DeviceKey.generate()
    verifier = _verifier(public_url="https://Sync.Example.org/hushchat/")
    expected = verifier.expected_uri("http://10.0.0.5:8080/v1/me?x=1", "/v1/me")
    assert expected == "https://sync.example.org/hushchat/v1/me"
    proof = key.proof("GET", "https://sync.example.org/hushchat/v1/me", TOKEN)
    assert await verifier.verify(
        proof, method="GET", expected_uri=expected, access_token=TOKEN, device_id=key.device_id
    )
    assert _verifier().expected_uri("HTTP://Host:80/v1/me", "/v1/me") == "http://host/v1/me"


async def test_memory_replay_cache_narrows_the_window_instead_of_forgetting() -> None:
    cache = MemoryReplayCache(capacity=3, ttl=60)
    assert await cache.first_use("a", 100)
    assert not await cache.first_use("a", 100)
    assert await cache.first_use("b", 101)
    assert await cache.first_use("c", 102)
    assert await cache.first_use("d", 103)  # "a" is dropped: nothing issued at or before 100
    assert len(cache) == 3
    assert not await cache.first_use("a", 100)
    assert not await cache.first_use("e", 100)
    assert await cache.first_use("f", 104)


async def test_memory_replay_cache_forgets_after_its_ttl() -> None:
    cache = MemoryReplayCache(capacity=10, ttl=0.05)
    assert await cache.first_use("a", 1)
    await asyncio.sleep(0.06)
    assert await cache.first_use("b", 2)
    assert len(cache) == 1


async def test_storage_replay_cache() -> None:
    storage = storage_from_string("async+memory://")
    cache = StorageReplayCache(storage, 60)  # type: ignore[arg-type]
    assert await cache.first_use("a", 1)
    assert not await cache.first_use("a", 1)
    assert await cache.first_use("b", 1)


async def test_the_compact_jws_is_checked_strictly() -> None:
    """The server's own JWS check (not PyJWT's) refuses what a strict decoder refuses."""
    key = DeviceKey.generate()
    header, body, signature = key.proof("GET", URL, TOKEN).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    short = signature[:-4]
    for proof in [
        f"{header}.{body}.{flipped}",  # another signature
        f"{header}.{body}.{short}",  # not 64 bytes
        f"{header}.{body}.{signature}.x",  # four segments
        f"{header}.{body}",  # two
        f"{header}.{body}!.{signature}",  # junk in the payload (a lax decoder drops it)
        f"{header}.{body}.{signature[:-1]}+",  # base64, not base64url
        f"{header}.{body}x.{signature}",  # payload changed
    ]:
        with pytest.raises(DpopError, match=r"signature|Malformed"):
            await _verify(_verifier(), proof, key)


def _signed(key: DeviceKey, header: str, body: str) -> str:
    """``header.body`` signed with ``key`` as ES256, whatever the two segments hold."""
    private = serialization.load_pem_private_key(key.to_pem(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    der = private.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{header}.{body}." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_a_header_is_checked_strictly_once_even_when_signed() -> None:
    """A header a lax decoder would take (junk it drops) is refused on its first proof,
    signature valid or not, and is not remembered, so later proofs are refused too."""
    key = DeviceKey.generate()
    header, body, _ = key.proof("GET", URL, TOKEN).split(".")
    verifier = _verifier()
    assert await _verify(verifier, _signed(key, header, body), key) == key.device_id
    for junk in (f"{header}!", f"{header}=", f"{header}\n"):
        for _attempt in range(2):
            fresh_body = key.proof("GET", URL, TOKEN).split(".")[1]
            with pytest.raises(DpopError, match="Malformed"):
                await _verify(verifier, _signed(key, junk, fresh_body), key)


async def test_a_known_header_still_gets_every_other_check() -> None:
    """After a device's first proof its header is not parsed again (the verifier keeps what
    it concluded from it); signature, device id, claims and replay are still checked."""
    key = DeviceKey.generate()
    verifier = _verifier()
    await _verify(verifier, key.proof("GET", URL, TOKEN), key)
    header, body, signature = key.proof("GET", URL, TOKEN).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for proof in [
        f"{header}.{body}.{flipped}",
        f"{header}.{body}.{signature[:-4]}",
        f"{header}.{body}x.{signature}",
        f"{header}.{body}!.{signature}",
        f"{header}.{body}",
    ]:
        with pytest.raises(DpopError, match=r"signature|Malformed"):
            await _verify(verifier, proof, key)
    # The known header with another device's id, and a proof for another request.
    with pytest.raises(DpopError, match="device id"):
        await _verify(verifier, f"{header}.{body}.{signature}", key, device="A" * 43)
    with pytest.raises(DpopError, match="htm"):
        await _verify(verifier, key.proof("GET", URL, TOKEN), key, method="POST")
    # Another device's body and signature under this device's known header.
    other = DeviceKey.generate()
    _, other_body, other_signature = other.proof("GET", URL, TOKEN).split(".")
    with pytest.raises(DpopError, match="signature"):
        await _verify(verifier, f"{header}.{other_body}.{other_signature}", key)
    proof = f"{header}.{body}.{signature}"
    assert await _verify(verifier, proof, key) == key.device_id
    with pytest.raises(DpopError, match="already used"):
        await _verify(verifier, proof, key)


def test_the_expected_uri_leaves_out_query_and_fragment() -> None:
    """Cut before normalising (one cached entry per path): the same as normalising whole."""
    verifier = _verifier()
    for url in (
        "http://Sync.Example.org:80/v1/sync/changes?cursor=5&limit=3",
        "http://sync.example.org/v1/sync/changes#part?x=1",
        "https://sync.example.org:8443/v1/%73ync/push?wait=30#f",
        "http://[::1]:8080/v1/sync/changes?cursor=1",
        "http://sync.example.org:99999/v1/sync/changes?cursor=1",
        "ftp://sync.example.org/v1?x",
    ):
        assert verifier.expected_uri(url, "/ignored") == normalise_uri(url)

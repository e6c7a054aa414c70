"""Unauthenticated load: failed authentications are limited per address, bodies are not
read before the caller is known, and a request without credentials is always 401."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sync_server.app import create_app
from tests.integration.sync_server.support import (
    FakeIssuer,
    auth_headers,
    client_from,
    make_settings,
    running,
)

PROBLEM = "application/problem+json"
DEVICE = {"X-Hushchat-Device": "device-0001"}


def _bad(n: int, method: str = "GET", path: str = "/v1/me") -> dict[str, str]:
    """A well-formed request (with a valid DPoP proof) whose token is wrong."""
    return auth_headers(f"not-a-token-{n}", method, path, "device-0001")


async def test_failed_authentications_end_in_429_per_address(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    # The default limit (30 a minute): of 40 bad tokens, 30 get 401 and 10 get 429.
    app = create_app(make_settings(tmp_path), http_transport=issuer.transport())
    async with running(app) as api:
        statuses = [(await api.get("/v1/me", headers=_bad(n))) for n in range(40)]
        assert [r.status_code for r in statuses] == [401] * 30 + [429] * 10
        limited = statuses[-1]
        assert limited.headers["content-type"] == PROBLEM
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert "failed authentications" in limited.json()["detail"]
        # The address is refused before any token check, even with a valid token ...
        alice = issuer.mint("alice")
        valid = auth_headers(alice, "GET", "/v1/me", "device-0001")
        assert (await api.get("/v1/me", headers=valid)).status_code == 429
        # ... and so is a request without credentials; other addresses are not affected.
        assert (await api.get("/v1/me", headers=DEVICE)).status_code == 429
        async with client_from(app, "192.0.2.7") as other:
            valid = auth_headers(alice, "GET", "/v1/me", "device-0001")
            assert (await other.get("/v1/me", headers=valid)).status_code == 200
            # Unauthenticated endpoints keep their own (anonymous) limit.
        assert (await api.get("/v1/meta")).status_code == 200


async def test_addresses_are_counted_per_ipv6_64_and_per_ipv4_address(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    settings = make_settings(tmp_path, rate_limit_auth_failures="3/minute")
    app = create_app(settings, http_transport=issuer.transport())

    async def failures(host: str, count: int) -> list[int]:
        async with client_from(app, host) as client:
            return [(await client.get("/v1/me", headers=_bad(n))).status_code for n in range(count)]

    async with running(app):
        # Three addresses of one /64 share its budget.
        assert await failures("2001:db8:1:2::1", 2) == [401, 401]
        assert await failures("2001:db8:1:2:ffff:ffff:ffff:fffe", 1) == [401]
        assert await failures("2001:db8:1:2::9", 1) == [429]
        # The next /64 and IPv4 neighbours are separate.
        assert await failures("2001:db8:1:3::1", 4) == [401, 401, 401, 429]
        assert await failures("198.51.100.1", 4) == [401, 401, 401, 429]
        assert await failures("198.51.100.2", 1) == [401]
        # An IPv4-mapped IPv6 peer is its IPv4 address.
        assert await failures("::ffff:198.51.100.1", 1) == [429]


async def test_prefix_length_is_configurable(tmp_path: Path, issuer: FakeIssuer) -> None:
    settings = make_settings(
        tmp_path, rate_limit_auth_failures="1/minute", rate_limit_ipv6_prefix=56
    )
    app = create_app(settings, http_transport=issuer.transport())
    async with running(app):
        async with client_from(app, "2001:db8:0:1::1") as first:
            assert (await first.get("/v1/me", headers=_bad(1))).status_code == 401
        async with client_from(app, "2001:db8:0:ff::1") as same_56:
            assert (await same_56.get("/v1/me", headers=_bad(2))).status_code == 429


async def test_no_credentials_is_401_whatever_else_is_missing(api: httpx.AsyncClient) -> None:
    calls = [
        api.get("/v1/me"),  # neither token nor device header
        api.get("/v1/me", headers={"X-Hushchat-Device": "no"}),  # invalid device header
        api.get("/v1/sync/changes", params={"cursor": "-5"}),  # invalid query too
        api.post("/v1/sync/push", content=b"{not json"),  # invalid body too
        api.put("/v1/escrow", json={}),
        api.get("/v1/me", headers={"Authorization": "Basic Zm9vOmJhcg==", **DEVICE}),
        api.get("/v1/me", headers={"Authorization": "Bearer ", **DEVICE}),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.headers["content-type"] == PROBLEM
    # With a token, a bad device header is a validation error naming the header.
    invalid = await api.get(
        "/v1/me", headers={"Authorization": "Bearer x", "X-Hushchat-Device": "bad id!"}
    )
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["loc"] == ["header", "X-Hushchat-Device"]


class CountingBody:
    """A valid JSON request body of ``total`` bytes, streamed in chunks, that counts
    how much of it the server pulled."""

    HEAD, TAIL = b'{"records": [], "padding": "', b'"}'

    def __init__(self, total: int, chunk: int = 64 << 10) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        padding = self.total - len(self.HEAD) - len(self.TAIL)
        data = memoryview(self.HEAD + b"x" * padding + self.TAIL)
        while self.sent < self.total:
            size = min(self.chunk, self.total - self.sent)
            yield bytes(data[self.sent : self.sent + size])
            self.sent += size


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_large_body_with_bad_token_is_not_read(
    api: httpx.AsyncClient, declare_length: bool
) -> None:
    body = CountingBody(8 << 20)  # under MAX_REQUEST_BYTES (16 MiB): only the token is wrong
    headers = {**_bad(0, "POST", "/v1/sync/push"), "Content-Type": "application/json"}
    if declare_length:
        headers["Content-Length"] = str(body.total)
    response = await api.post("/v1/sync/push", content=body, headers=headers)
    assert response.status_code == 401
    assert body.sent <= body.chunk  # nothing, or at most what the transport prefetched
    assert response.headers["connection"] == "close"


async def test_large_body_without_token_is_not_read(api: httpx.AsyncClient) -> None:
    body = CountingBody(8 << 20)
    response = await api.post(
        "/v1/sync/push", content=body, headers={"Content-Length": str(body.total)}
    )
    assert response.status_code == 401
    assert body.sent <= body.chunk


async def test_unauthenticated_endpoints_take_small_bodies_only(api: httpx.AsyncClient) -> None:
    # Declared too large: refused before reading.
    declared = CountingBody(1 << 20)
    response = await api.post(
        "/v1/account/token",
        content=declared,
        headers={"Content-Length": str(declared.total), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["type"].endswith("request-too-large")
    assert declared.sent <= declared.chunk
    # Streamed without a length: refused once it passes the limit (64 KiB by default).
    streamed = CountingBody(1 << 20, chunk=16 << 10)
    response = await api.post(
        "/v1/account/signup", content=streamed, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert streamed.sent <= (64 << 10) + 2 * streamed.chunk


async def test_authenticated_large_bodies_still_work(tmp_path: Path, issuer: FakeIssuer) -> None:
    settings = make_settings(tmp_path, max_request_bytes=256 << 10)
    app = create_app(settings, http_transport=issuer.transport())
    token = issuer.mint("alice")

    def headers() -> dict[str, str]:
        return auth_headers(token, "POST", "/v1/sync/push", "device-0001")

    payload = "QUJD" * (40 << 10)  # 160 KiB of base64 (120 KiB decoded): over the 64 KiB
    record = {"id": "big", "kind": "message", "revision": 1, "key_id": "k", "payload": payload}
    async with running(app) as api:
        pushed = await api.post("/v1/sync/push", json={"records": [record]}, headers=headers())
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["applied"]
        # Over MAX_REQUEST_BYTES: 413, declared or streamed.
        too_big = {**record, "payload": "QUJD" * (80 << 10)}
        refused = await api.post("/v1/sync/push", json={"records": [too_big]}, headers=headers())
        assert refused.status_code == 413
        streamed = CountingBody(1 << 20, chunk=32 << 10)
        refused = await api.post("/v1/sync/push", content=streamed, headers=headers())
        assert refused.status_code == 413
        assert refused.json()["type"].endswith("request-too-large")
        assert streamed.sent <= (256 << 10) + 2 * streamed.chunk

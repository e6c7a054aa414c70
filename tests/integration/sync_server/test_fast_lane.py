"""The fast lane (:mod:`sync_server.fastlane`) answers exactly as the FastAPI path does.

Every scenario runs twice on the same app: once with the lane in front, once with
``app.fast_lane = None`` (every request through FastAPI), each time with its own
accounts (so sequence numbers match). Status, headers and body must be the same, up to
values that differ by nature (device ids, timestamps, seconds left in a rate-limit
window). Each scenario also states whether the lane answered or handed the request on.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_server.app import SyncServerApp, create_app
from sync_server.fastlane import FastLane
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    auth_headers,
    make_settings,
    record,
    running,
)

#: A scenario: given the client and a tag for its accounts, the response to compare.
Scenario = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]
USER_LIMIT = 4
REQUEST_ID = {"X-Request-ID": "lane-compare-1"}
_VARYING_KEYS = {"device_id", "updated_at", "created_at"}
_SECONDS = re.compile(r"[0-9]+ s\b")


@pytest.fixture
async def served(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> AsyncIterator[tuple[SyncServerApp, httpx.AsyncClient]]:
    settings = make_settings(
        tmp_path,
        database_url,
        rate_limit_user=f"{USER_LIMIT}/minute",
        max_record_bytes=1024,
        max_request_bytes=100_000,
        max_unauthenticated_body_bytes=10_000,
    )
    app = create_app(settings, http_transport=issuer.transport())
    assert isinstance(app, SyncServerApp) and app.fast_lane is not None
    async with running(app) as client:
        yield app, client


def _varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in _VARYING_KEYS else _varying(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_varying(v) for v in value]
    if isinstance(value, str):
        return _SECONDS.sub("N s", value)
    return value


def _seen(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """What must match: status, headers (in order) and body, without natural variation."""
    headers = []
    for name, value in response.headers.multi_items():
        if name == "date":
            continue
        if name == "content-length":
            assert int(value) == len(response.content)
            value = "*"
        elif name in ("ratelimit-remaining", "ratelimit-reset", "retry-after"):
            assert value.isdigit(), (name, value)
            value = "*"
        headers.append((name, value))
    body: Any = response.content
    if response.headers.get("content-type", "").endswith("json"):
        body = _varying(json.loads(response.content))
    return response.status_code, headers, body


async def _compare(
    app: SyncServerApp, client: httpx.AsyncClient, scenario: Scenario, *, handed: bool
) -> httpx.Response:
    """Run ``scenario`` with and without the lane; assert the same answer; the lane's."""
    lane = app.fast_lane
    assert isinstance(lane, FastLane)
    fallback = lane._fallback
    handed_on: list[str] = []

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope["path"])
        await fallback(scope, receive, send)

    lane._fallback = watched
    try:
        fast = await scenario(client, "lane")
    finally:
        lane._fallback = fallback
    app.fast_lane = None
    try:
        reference = await scenario(client, "ref")
    finally:
        app.fast_lane = lane
    assert _seen(fast) == _seen(reference)
    assert bool(handed_on) == handed, handed_on
    return fast


def _user(client: httpx.AsyncClient, issuer: FakeIssuer, name: str, device: int = 1) -> ApiUser:
    return ApiUser(client, issuer.mint(name), f"{name}-device-{device}")


async def _warm(user: ApiUser) -> None:
    """One request, so that the credential is known (the lane's single transaction)."""
    response = await user.get("/v1/sync/changes", params={"cursor": 0})
    assert response.status_code == 200, response.text


async def test_push_and_pull_answer_the_same(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served

    async def push(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-push")
        await _warm(user)
        body = {"records": [record("a1"), record("a2", payload=b"x" * 10)]}
        return await user.post("/v1/sync/push", json=body, headers=REQUEST_ID)

    answer = await _compare(app, client, push, handed=False)
    assert answer.status_code == 200 and int(answer.headers["RateLimit-Limit"]) == USER_LIMIT

    async def pull(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-pull")
        await user.push(record("b1"), record("b2"), record("b3"))
        return await user.get(
            "/v1/sync/changes", params={"cursor": 1, "limit": 1}, headers=REQUEST_ID
        )

    answer = await _compare(app, client, pull, handed=False)
    assert answer.json()["has_more"] is True and len(answer.json()["changes"]) == 1

    async def first_request(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        # An unknown credential: looked up (and registered) first, then the pull.
        user = _user(client, issuer, f"{tag}-first")
        return await user.get("/v1/sync/changes", headers=REQUEST_ID)

    await _compare(app, client, first_request, handed=False)


async def test_unknown_query_parameters_are_ignored_alike(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served

    async def pull(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-query")
        await user.push(record("c1"))
        url = "/v1/sync/changes?cursor=0&colour=blue&limit=5&x="
        return await user.get(url, headers=REQUEST_ID)

    answer = await _compare(app, client, pull, handed=False)
    assert answer.status_code == 200 and len(answer.json()["changes"]) == 1

    async def odd(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-odd")
        return await user.get("/v1/sync/changes?cursor=-1&limit=abc", headers=REQUEST_ID)

    answer = await _compare(app, client, odd, handed=True)
    assert answer.status_code == 422


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (json.dumps({"records": [{"id": "x"}]}).encode(), "application/json"),
        (json.dumps(["not", "an", "object"]).encode(), "application/json"),
        (json.dumps({"records": [record("t1")]}).encode(), "text/plain"),
    ],
    ids=["malformed-json", "not-utf8", "schema-invalid", "not-an-object", "wrong-type"],
)
async def test_invalid_push_bodies_get_fastapis_422(
    served: tuple[SyncServerApp, httpx.AsyncClient],
    issuer: FakeIssuer,
    content: bytes,
    content_type: str,
) -> None:
    app, client = served

    async def push(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-invalid")
        await _warm(user)
        headers = {**REQUEST_ID, "Content-Type": content_type}
        return await user.post("/v1/sync/push", content=content, headers=headers)

    answer = await _compare(app, client, push, handed=True)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_oversized_bodies_and_records_are_refused_alike(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served

    async def huge(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-huge")
        await _warm(user)
        body = {"records": [record(f"h{n}", payload=b"y" * 40) for n in range(2000)]}
        return await user.post("/v1/sync/push", json=body, headers=REQUEST_ID)

    answer = await _compare(app, client, huge, handed=True)
    assert answer.status_code == 413 and answer.headers["connection"] == "close"

    async def large_record(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-large")
        await _warm(user)
        body = {"records": [record("ok"), record("big", payload=b"z" * 2000)]}
        return await user.post("/v1/sync/push", json=body, headers=REQUEST_ID)

    answer = await _compare(app, client, large_record, handed=False)
    assert answer.status_code == 413 and answer.json()["record_id"] == "big"


async def test_authentication_failures_are_fastapis_answers(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served
    body = json.dumps({"records": [record("p1")]}).encode()
    json_type = {"Content-Type": "application/json"}

    async def no_token(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-none")
        headers = {**user.headers("POST", "/v1/sync/push"), **REQUEST_ID, **json_type}
        del headers["Authorization"]
        return await client.post("/v1/sync/push", content=body, headers=headers)

    answer = await _compare(app, client, no_token, handed=True)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["connection"] == "close"  # the body was not read

    async def bad_token(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = ApiUser(client, "not-a-token", f"{tag}-bad-device")
        return await user.get("/v1/sync/changes", headers=REQUEST_ID)

    answer = await _compare(app, client, bad_token, handed=True)
    assert answer.status_code == 401

    async def bad_proof(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-proof")
        await _warm(user)
        headers = {**user.headers("POST", "/v1/sync/push"), **REQUEST_ID, **json_type}
        headers["DPoP"] = "e30.e30.c2ln"
        return await client.post("/v1/sync/push", content=body, headers=headers)

    answer = await _compare(app, client, bad_proof, handed=True)
    assert answer.status_code == 401 and "DPoP" in answer.headers["www-authenticate"]

    async def replayed(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-replay")
        await _warm(user)
        headers = {**user.headers("POST", "/v1/sync/push"), **REQUEST_ID, **json_type}
        first = await client.post("/v1/sync/push", content=body, headers=headers)
        assert first.status_code == 200, first.text
        return await client.post("/v1/sync/push", content=body, headers=headers)

    answer = await _compare(app, client, replayed, handed=True)
    assert answer.status_code == 401 and "already used" in answer.json()["detail"]

    async def wrong_url(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-url")
        await _warm(user)
        headers = {**auth_headers(user.token, "GET", "/v1/me", user.key), **REQUEST_ID}
        return await client.get("/v1/sync/changes", headers=headers)

    answer = await _compare(app, client, wrong_url, handed=True)
    assert answer.status_code == 401


async def test_a_revoked_device_is_refused_alike(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served

    async def revoked(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        token = issuer.mint(f"{tag}-revoked")
        old = ApiUser(client, token, f"{tag}-revoked-1")
        await _warm(old)  # known credential: the lane checks it in its transaction
        laptop = ApiUser(client, issuer.mint(f"{tag}-revoked"), f"{tag}-revoked-2")
        assert (await laptop.delete(f"/v1/devices/{old.device}")).status_code == 204
        return await old.post("/v1/sync/push", json={"records": [record("r1")]}, headers=REQUEST_ID)

    answer = await _compare(app, client, revoked, handed=False)
    assert answer.status_code in (401, 403), answer.text


async def test_a_rate_limited_caller_gets_the_same_429(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served

    async def limited(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-limited")
        for n in range(USER_LIMIT):
            await user.push(record(f"l{n}"))
        return await user.post(
            "/v1/sync/push", json={"records": [record("over")]}, headers=REQUEST_ID
        )

    answer = await _compare(app, client, limited, handed=False)
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit-Limit"] == str(USER_LIMIT)
    assert answer.headers["RateLimit-Remaining"] == "0"

    async def limited_pull(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-limited-pull")
        for _ in range(USER_LIMIT):
            assert (await user.get("/v1/sync/changes")).status_code == 200
        return await user.get("/v1/sync/changes", headers=REQUEST_ID)

    answer = await _compare(app, client, limited_pull, handed=False)
    assert answer.status_code == 429 and "Retry-After" in answer.headers


async def test_long_poll_and_other_methods_go_to_fastapi(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    app, client = served

    async def waiting(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-wait")
        await user.push(record("w1"))
        return await user.get("/v1/sync/changes?cursor=0&wait=1", headers=REQUEST_ID)

    answer = await _compare(app, client, waiting, handed=True)
    assert answer.status_code == 200 and len(answer.json()["changes"]) == 1

    async def wrong_method(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-method")
        return await user.request("PUT", "/v1/sync/push", json={}, headers=REQUEST_ID)

    answer = await _compare(app, client, wrong_method, handed=True)
    assert answer.status_code == 405


async def test_the_lane_writes_the_access_log_line(
    served: tuple[SyncServerApp, httpx.AsyncClient],
    issuer: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, client = served
    user = _user(client, issuer, "logged")
    await _warm(user)
    caplog.set_level("INFO", logger="sync_server.access")
    caplog.clear()
    response = await user.get("/v1/sync/changes?cursor=0", headers=REQUEST_ID)
    assert response.status_code == 200
    lines = [r for r in caplog.records if r.name == "sync_server.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.path, line.status) == ("GET", "/v1/sync/changes", 200)  # type: ignore[attr-defined]
    assert "cursor" not in line.getMessage()


async def test_an_unexpected_error_is_a_logged_500_alike(
    served: tuple[SyncServerApp, httpx.AsyncClient],
    issuer: FakeIssuer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sync_server import records

    app, client = served

    async def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("boom")

    async def push(client: httpx.AsyncClient, tag: str) -> httpx.Response:
        user = _user(client, issuer, f"{tag}-broken")
        await _warm(user)
        with monkeypatch.context() as patch:
            patch.setattr(records, "push", broken)
            return await user.post(
                "/v1/sync/push", json={"records": [record("e1")]}, headers=REQUEST_ID
            )

    caplog.set_level("ERROR")
    answer = await _compare(app, client, push, handed=False)
    assert answer.status_code == 500 and answer.json()["request_id"] == REQUEST_ID["X-Request-ID"]
    errors = [r for r in caplog.records if r.getMessage() == "unhandled_error"]
    assert len(errors) == 2 and all(r.exc_info for r in errors)


async def test_a_generated_request_id_is_the_one_in_the_problem(
    served: tuple[SyncServerApp, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    _, client = served
    user = _user(client, issuer, "generated-id")
    await _warm(user)
    body = {"records": [record("big", payload=b"z" * 2000)]}
    answer = await user.post("/v1/sync/push", json=body)  # answered by the lane: 413
    assert answer.status_code == 413
    assert answer.json()["request_id"] == answer.headers["X-Request-ID"]
    assert len(answer.headers["X-Request-ID"]) == 16

"""A sync request is one database transaction once its credential is known.

The token/device lookup runs inside the push's or pull's own transaction
(:func:`sync_server.deps.settle`); a credential's first request, a device row that needs a
write and a body larger than an unauthenticated one may be take the separate lookup.
Revocation stays immediate: the check is in the same transaction as the work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sync_server.app import create_app
from sync_server.db import Database
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    b64,
    make_settings,
    record,
    running,
)


class _Counted:
    """Counts the transactions the app's :class:`Database` runs."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("run", "run_write", "run_short", "run_write_short", "write", "read"):
            original = getattr(db, name)
            monkeypatch.setattr(db, name, self._counting(original))

    def _counting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        return counted

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
async def served(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(make_settings(tmp_path, database_url), http_transport=issuer.transport())
    async with running(app) as client:
        yield app, client


async def test_a_known_credential_costs_one_transaction_per_sync_request(
    served: tuple[FastAPI, httpx.AsyncClient], issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = served
    alice = ApiUser(client, issuer.mint("alice"), "alice-device-1")
    counted = _Counted(app.state.server.db, monkeypatch)
    # First request of this credential: account, binding and device are created first.
    assert (await alice.push(record("m1")))["results"][0]["seq"] == 1
    assert counted.take() >= 2
    assert (await alice.push(record("m2")))["results"][0]["seq"] == 2
    assert counted.take() == 1
    changes, cursor = await alice.pull_all()
    assert cursor == 2 and [c["payload"] for c in changes] == [b64(b"m1@1"), b64(b"m2@1")]
    assert counted.take() == 1
    # A second token of the same account and device: its binding needs a write once.
    again = ApiUser(client, issuer.mint("alice"), alice.key)
    assert (await again.get("/v1/sync/changes", params={"cursor": 2})).status_code == 200
    assert counted.take() >= 2
    assert (await again.get("/v1/sync/changes", params={"cursor": 2})).status_code == 200
    assert counted.take() == 1


async def test_a_large_push_is_looked_up_before_its_body_is_read(
    served: tuple[FastAPI, httpx.AsyncClient], issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = served
    limit = app.state.server.settings.max_unauthenticated_body_bytes
    alice = ApiUser(client, issuer.mint("alice"), "alice-device-1")
    await alice.push(record("warm"))
    counted = _Counted(app.state.server.db, monkeypatch)
    big = [record(f"big-{n}", payload=b"x" * 1024) for n in range((limit // 1024) + 8)]
    answer = await alice.push(*big)
    assert all(result["status"] == "saved" for result in answer["results"])
    assert counted.take() == 2  # the lookup, then the push


async def test_revocation_is_seen_by_the_next_request_of_a_known_credential(
    served: tuple[FastAPI, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    _, client = served
    phone = ApiUser(client, issuer.mint("alice"), "alice-phone")
    laptop = ApiUser(client, issuer.mint("alice"), "alice-laptop")
    await phone.push(record("p1"))
    await phone.push(record("p2"))  # the credential is known: one transaction
    await laptop.pull_all()
    revoked = await laptop.delete(f"/v1/devices/{phone.device}")
    assert revoked.status_code == 204, revoked.text
    for attempt in (
        phone.post("/v1/sync/push", json={"records": [record("p3")]}),
        phone.get("/v1/sync/changes", params={"cursor": 0}),
    ):
        response = await attempt
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("device-revoked")
    changes, _ = await laptop.pull_all()
    assert [c["id"] for c in changes] == ["p1", "p2"]


async def test_a_forged_token_on_a_fast_path_request_is_still_refused(
    served: tuple[FastAPI, httpx.AsyncClient], issuer: FakeIssuer
) -> None:
    _, client = served
    alice = ApiUser(client, issuer.mint("alice"), "alice-device-1")
    await alice.push(record("a1"))
    other_device = ApiUser(client, alice.token, "alice-device-2")
    response = await other_device.get("/v1/sync/changes", params={"cursor": 0})
    assert response.status_code == 401, response.text
    assert "another device" in response.json()["detail"]


async def test_plain_sync_requests_skip_fastapi_and_odd_ones_get_its_answers(
    served: tuple[FastAPI, httpx.AsyncClient], issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync_server import fastlane
    from sync_server.deps import caller_limits, count_caller
    from sync_server.routers import sync

    _, client = served
    alice = ApiUser(client, issuer.mint("alice"), "alice-device-1")
    await alice.push(record("warm"))
    fast: list[str] = []
    routed: list[str] = []
    limits = caller_limits
    counted = count_caller

    async def lane_spy(state: Any, caller: Any) -> dict[str, str]:
        fast.append(caller.device_id)
        return await limits(state, caller)

    async def route_spy(state: Any, response: Any, caller: Any) -> None:
        routed.append(caller.device_id)
        await counted(state, response, caller)

    monkeypatch.setattr(fastlane, "caller_limits", lane_spy)
    monkeypatch.setattr(sync, "count_caller", route_spy)
    plain = await alice.get("/v1/sync/changes", params={"cursor": 0, "limit": 5, "wait": 0})
    pushed = await alice.post("/v1/sync/push", json={"records": [record("m1")]})
    assert plain.status_code == 200 and pushed.status_code == 200, (plain.text, pushed.text)
    assert fast == [alice.device, alice.device]  # answered by sync_server.fastlane
    assert routed == []
    for answer in (plain, pushed):
        assert int(answer.headers["RateLimit-Limit"]) > 0
        assert "RateLimit-Remaining" in answer.headers and "X-Request-ID" in answer.headers
    # Anything unusual is FastAPI's to answer, after the same (not repeated) DPoP check.
    odd_queries: list[dict[str, Any]] = [
        {"cursor": -1},
        {"cursor": "abc"},
        {"limit": 0},
        {"wait": 31},
        {"cursor": 2**53},
    ]
    for params in odd_queries:
        response = await alice.get("/v1/sync/changes", params=params)
        assert response.status_code == 422, (params, response.text)
        problem = response.json()
        assert problem["errors"][0]["loc"][0] == "query", problem
    twice = await alice.get("/v1/sync/changes?cursor=1&cursor=0")
    assert twice.status_code == 200, twice.text  # FastAPI's reading: the last value
    bodies: list[dict[str, Any]] = [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": {"records": [{"id": "x"}]}},
        {"json": ["not", "an", "object"]},
        {"content": b'{"records": []}', "headers": {"content-type": "text/plain"}},
    ]
    for kwargs in bodies:
        response = await alice.post("/v1/sync/push", **kwargs)
        assert response.status_code == 422, (kwargs, response.text)
        assert response.json()["errors"][0]["loc"][0] == "body", response.text
    assert fast == [alice.device, alice.device]  # none of the odd ones took the fast lane

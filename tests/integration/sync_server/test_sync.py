"""Sync semantics: CAS conflicts, idempotent re-push, tombstones, paging, cursor, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.integration.sync_server.support import ApiUser, b64, record

UserFactory = Callable[..., ApiUser]


async def test_push_then_pull_round_trip(user: UserFactory) -> None:
    alice = user("alice")
    answer = await alice.push(record("m1"), record("m2", kind="chat"))
    assert answer["applied"] is True
    assert [r["status"] for r in answer["results"]] == ["saved", "saved"]
    assert [r["seq"] for r in answer["results"]] == [1, 2]
    changes, cursor = await alice.pull_all()
    assert cursor == 2
    assert [(c["id"], c["kind"], c["seq"], c["device_id"]) for c in changes] == [
        ("m1", "message", 1, alice.device),
        ("m2", "chat", 2, alice.device),
    ]
    assert changes[0]["payload"] == b64(b"m1@1")
    assert changes[0]["size"] == len(b"m1@1")


async def test_compare_and_swap_conflict_returns_server_copy(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(record("chat", 1, kind="chat"))
    ok = await alice.push(record("chat", 2, 1, kind="chat", payload=b"from laptop"))
    assert ok["results"][0]["status"] == "saved"
    stale = await alice.push(record("chat", 2, 1, kind="chat", payload=b"from phone"))
    result = stale["results"][0]
    assert result["status"] == "conflict"
    assert result["server_record"]["revision"] == 2
    assert result["server_record"]["payload"] == b64(b"from laptop")
    merged = await alice.push(record("chat", 3, 2, kind="chat", payload=b"merged"))
    assert merged["results"][0]["status"] == "saved"


async def test_conflict_on_unknown_parent_and_stale_parent(user: UserFactory) -> None:
    alice = user("alice")
    answer = await alice.push(record("ghost", 2, 1))
    assert answer["results"][0]["status"] == "conflict"
    assert answer["results"][0]["server_record"] is None
    await alice.push(record("x", 1), record("x", 2, 1), record("x", 3, 2))
    stale = await alice.push(record("x", 5, 2))
    assert stale["results"][0]["status"] == "conflict"
    assert stale["results"][0]["server_record"]["revision"] == 3


async def test_same_revision_twice_is_a_no_op(user: UserFactory) -> None:
    alice = user("alice")
    first = await alice.push(record("m1"))
    again = await alice.push(record("m1"))
    assert again["results"][0] == {
        **again["results"][0],
        "status": "saved",
        "duplicate": True,
        "seq": first["results"][0]["seq"],
    }
    assert again["cursor"] == first["cursor"]
    changes, _ = await alice.pull_all()
    assert len(changes) == 1
    different = await alice.push(record("m1", payload=b"other bytes"))
    assert different["results"][0]["status"] == "conflict"


async def test_tombstones_are_pulled_and_final(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(record("m1"))
    deleted = await alice.push(record("m1", 2, 1, deleted=True, payload=b""))
    assert deleted["results"][0]["status"] == "saved"
    changes, _ = await alice.pull_all()
    assert changes == [changes[0]]
    assert changes[0]["deleted"] is True and changes[0]["revision"] == 2
    revive = await alice.push(record("m1", 3, 2, deleted=False))
    assert revive["results"][0]["status"] == "rejected"
    assert "tombstone" in revive["results"][0]["reason"]


async def test_rejected_records(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(record("m1"))
    answer = await alice.push(record("m1", 2, 1, kind="chat"), record("m2", 3, 3))
    assert [r["status"] for r in answer["results"]] == ["rejected", "rejected"]


async def test_atomic_batch_all_or_nothing(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(record("a"))
    answer = await alice.push(record("b"), record("a", 8, 7), atomic=True)
    assert answer["applied"] is False
    assert [r["status"] for r in answer["results"]] == ["aborted", "conflict"]
    changes, cursor = await alice.pull_all()
    assert [c["id"] for c in changes] == ["a"] and cursor == 1
    answer = await alice.push(record("b"), record("a", 2, 1), atomic=True)
    assert answer["applied"] is True
    assert [r["status"] for r in answer["results"]] == ["saved", "saved"]


async def test_same_record_twice_in_one_batch(user: UserFactory) -> None:
    alice = user("alice")
    answer = await alice.push(record("r"), record("r", 2, 1), record("r", 3, 2))
    assert [r["seq"] for r in answer["results"]] == [1, 2, 3]
    changes, cursor = await alice.pull_all()
    assert [(c["id"], c["revision"], c["seq"]) for c in changes] == [("r", 3, 3)]
    assert cursor == 3


async def test_paging_and_monotonic_cursor(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(*[record(f"m{i:03}") for i in range(25)])
    seen: list[int] = []
    cursor = 0
    pages = 0
    while True:
        response = await alice.get("/v1/sync/changes", params={"cursor": cursor, "limit": 10})
        page = response.json()
        pages += 1
        assert page["cursor"] >= cursor
        seen.extend(change["seq"] for change in page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert pages == 3
    assert seen == list(range(1, 26))
    # Updating an old record moves it to the end; the cursor never goes back.
    await alice.push(record("m000", 2, 1))
    response = await alice.get("/v1/sync/changes", params={"cursor": cursor})
    assert [(c["id"], c["seq"]) for c in response.json()["changes"]] == [("m000", 26)]
    empty = await alice.get("/v1/sync/changes", params={"cursor": 1000})
    assert empty.json() == {"changes": [], "cursor": 1000, "has_more": False, "recoveries": []}


async def test_concurrent_pushes_get_distinct_gapless_sequence(user: UserFactory) -> None:
    alice = user("alice")
    await asyncio.gather(*[alice.push(*[record(f"c{n}-{i}") for i in range(10)]) for n in range(8)])
    changes, cursor = await alice.pull_all()
    assert cursor == 80
    assert sorted(c["seq"] for c in changes) == list(range(1, 81))


async def test_concurrent_cas_on_one_record_has_one_winner(user: UserFactory) -> None:
    alice = user("alice")
    await alice.push(record("doc", 1, kind="chat"))
    answers = await asyncio.gather(
        *[alice.push(record("doc", 2, 1, kind="chat", payload=f"v{n}".encode())) for n in range(6)]
    )
    statuses = sorted(a["results"][0]["status"] for a in answers)
    assert statuses == ["conflict"] * 5 + ["saved"]


async def test_size_limits(api: httpx.AsyncClient, user: UserFactory) -> None:
    alice = user("alice")
    big = record("big", payload=b"x" * ((1 << 20) + 1))
    response = await alice.post("/v1/sync/push", json={"records": [big]})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["record_id"] == "big"
    too_many = [record(f"n{i}") for i in range(501)]
    response = await alice.post("/v1/sync/push", json={"records": too_many})
    assert response.status_code == 413
    huge = b'{"records": [' + b" " * (17 << 20) + b"]}"
    response = await alice.post(
        "/v1/sync/push", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["title"] == "Request too large"
    changes, _ = await alice.pull_all()
    assert changes == []


async def test_invalid_bodies_are_problem_422(user: UserFactory) -> None:
    alice = user("alice")
    for body in (
        {"records": []},
        {"records": [{**record("a"), "payload": "not base64!"}]},
        {"records": [{**record("a"), "revision": 0}]},
        {"records": [{**record("a"), "surprise": 1}]},
        {"records": [{**record("a"), "id": "bad id with spaces"}]},
    ):
        response = await alice.post("/v1/sync/push", json=body)
        assert response.status_code == 422, body
        problem = response.json()
        assert problem["status"] == 422 and problem["errors"]
        assert "not base64!" not in response.text


async def test_sync_answers_carry_the_rate_limit_headers(user: UserFactory) -> None:
    alice = user("alice")
    pushed = await alice.post("/v1/sync/push", json={"records": [record("m1")]})
    pulled = await alice.get("/v1/sync/changes")
    for response in (pushed, pulled):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["RateLimit-Limit"]) > 0
        assert "RateLimit-Remaining" in response.headers
        assert "RateLimit-Reset" in response.headers

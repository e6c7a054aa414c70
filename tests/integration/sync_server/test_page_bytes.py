"""A pull page stays within ``MAX_PAGE_BYTES`` of payloads (large attachment parts come a
few per page), yet always carries at least one record and pages through everything.
(The budget is made small here so the test stays quick.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sync_server import records
from tests.integration.sync_server.support import ApiUser, record

UserFactory = Callable[..., ApiUser]
BUDGET = 100 * 1024
PART = 30 * 1024


async def test_large_records_come_a_few_per_page(
    user: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert records.MAX_PAGE_BYTES == 8 << 20
    monkeypatch.setattr(records, "MAX_PAGE_BYTES", BUDGET)
    alice = user("alice")
    count = 10
    parts = [
        record(f"attpart:a:{n}", kind="attachment_part", payload=bytes([n]) * PART)
        for n in range(count)
    ]
    assert (await alice.push(*parts, record("m1")))["applied"] is True
    response = await alice.get("/v1/sync/changes", params={"cursor": 0, "limit": 500})
    first = response.json()
    assert first["has_more"] is True
    sizes = [change["size"] for change in first["changes"]]
    assert sizes == [PART] * (BUDGET // PART)
    changes, cursor = await alice.pull_all(limit=500)
    assert [c["id"] for c in changes] == [*(f"attpart:a:{n}" for n in range(count)), "m1"]
    assert cursor == count + 1


async def test_a_record_larger_than_the_page_budget_still_comes(
    user: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "MAX_PAGE_BYTES", 100)
    alice = user("alice")
    await alice.push(*(record(f"r{n}", payload=bytes(1000)) for n in range(3)))
    response = await alice.get("/v1/sync/changes", params={"cursor": 0, "limit": 500})
    first = response.json()
    assert [c["id"] for c in first["changes"]] == ["r0"] and first["has_more"] is True
    changes, _ = await alice.pull_all(limit=500)
    assert [c["id"] for c in changes] == ["r0", "r1", "r2"]

"""The engine against the real sync server app, in process (``httpx.ASGITransport``):
the records it makes pass the server's validation and its push rules, and two devices
meet through it. (The loopback test with the real client transport is separate.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.store.models import Tier
from app.sync.protocol import ChangesResponse, PushResponse, RecordIn
from tests.unit.sync.devices import PASSPHRASE, Device
from tests.unit.sync.fake_server import FakeServer

support = pytest.importorskip("tests.integration.sync_server.support")
server_app = pytest.importorskip("sync_server.app")


class ApiTransport:
    """A ``SyncTransport`` over the test API client of the server tests."""

    def __init__(self, user: object) -> None:
        self.user = user

    async def push(self, records: list[RecordIn], *, atomic: bool = False) -> PushResponse:
        body = {"records": [r.model_dump(mode="json") for r in records], "atomic": atomic}
        response = await self.user.post("/v1/sync/push", json=body)  # type: ignore[attr-defined]
        assert response.status_code == 200, response.text
        return PushResponse.model_validate(response.json())

    async def changes(
        self, cursor: int, *, limit: int | None = None, wait: float = 0.0
    ) -> ChangesResponse:
        params: dict[str, int | float] = {"cursor": cursor}
        if limit is not None:
            params["limit"] = limit
        response = await self.user.get("/v1/sync/changes", params=params)  # type: ignore[attr-defined]
        assert response.status_code == 200, response.text
        return ChangesResponse.model_validate(response.json())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[object]:
    issuer = support.FakeIssuer()
    issuer.add_key("key-1")
    settings = support.make_settings(tmp_path)
    app = server_app.create_app(settings, http_transport=issuer.transport())
    async with support.running(app) as client:
        yield client, issuer


async def test_two_devices_meet_through_the_real_server(api: tuple[object, object]) -> None:
    client, issuer = api
    users = [
        support.ApiUser(client, issuer.mint("alice"), f"alice-{name}")  # type: ignore[attr-defined]
        for name in ("a", "b")
    ]
    me = await users[0].get("/v1/me")
    assert me.status_code == 200, me.text
    account = me.json()["id"]
    devices = []
    for name, user in zip(("a", "b"), users, strict=True):
        device = Device(FakeServer(), name)
        device.transport = ApiTransport(user)  # type: ignore[assignment]
        device.account = account
        device.open(private=True)
        devices.append(device)
    a, b = devices
    store = a.library.store(Tier.PRIVATE)
    chat = store.create_chat(title="Across")
    question = store.add_message(chat.id, "user", "sentinel", parent_id=None)
    store.add_message(chat.id, "assistant", "answer", parent_id=question.id)
    await a.setup()
    await a.engine.sync_once()
    await b.engine.join_with_passphrase(PASSPHRASE)
    assert b.dump() == a.dump()
    store.purge(chat.id)
    await a.engine.sync_once()
    await b.engine.sync_once()
    assert b.dump() == a.dump() == {}
    for device in devices:
        device.runner.shutdown()

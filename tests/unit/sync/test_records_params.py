"""Chat records carry the chat's model parameters, readable both ways between versions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from app.store.models import ChatParams, Tier
from app.sync import records
from app.sync.records import REQUIRED_CHAT_FIELDS, ChatState, Hlc
from tests.unit.sync.devices import PASSPHRASE, Device
from tests.unit.sync.fake_server import FakeServer

PARAMS = {"max_tokens": 64, "stop": ["END"], "temperature": 0.3}


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "c1",
        "title": "Trip",
        "title_source": "user",
        "system_prompt": "",
        "memory": "",
        "provider": "local",
        "model": "m",
        "pinned": 0,
        "active_leaf_id": None,
        "created_at": 1.0,
        "updated_at": 2.0,
        "move_state": None,
        "params": "{}",
    }
    base.update(fields)
    return base


@pytest.fixture
def older_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This module as a version-4 client ran it: only the fields it knew."""
    monkeypatch.setattr(records, "CHAT_FIELDS", REQUIRED_CHAT_FIELDS)
    monkeypatch.setattr(records, "OPTIONAL_CHAT_FIELDS", {})
    yield


def old_record_body() -> dict[str, Any]:
    """A chat record exactly as a version-4 client wrote it (no params)."""
    return {
        "chat_id": "c1",
        "values": {
            "title": ["Trip", "user"],
            "system_prompt": "Be brief.",
            "memory": "",
            "provider": "local",
            "model": "m",
            "pinned": False,
            "active_leaf_id": None,
        },
        "clocks": {name: "000000000000005:000000:old" for name in REQUIRED_CHAT_FIELDS},
        "created_at": 1.0,
        "updated_at": 2.0,
    }


def test_a_new_client_reads_an_old_record_as_default_parameters() -> None:
    remote = ChatState.from_json(old_record_body())
    assert remote.values["params"] == {}
    assert "params" not in remote.clocks
    assert remote.row_values("c1")["params"] == {}


def test_parameters_set_here_win_over_an_old_record_that_lacks_them() -> None:
    local = ChatState()
    local.fold_local(row(params='{"max_tokens":64,"stop":["END"],"temperature":0.3}'), Hlc("new"))
    taken, local_ahead = local.merge(ChatState.from_json(old_record_body()))
    assert local.values["params"] == PARAMS
    assert "params" not in taken
    assert local_ahead  # the server copy lacks them: this side pushes


def test_an_upgraded_state_without_parameters_is_not_a_change() -> None:
    state = ChatState.from_json(old_record_body())
    stored = state.to_json()
    del stored["values"]["params"]  # as a version-4 client stored its merged state
    upgraded = ChatState.from_json(stored)
    assert not upgraded.fold_local(
        row(system_prompt="Be brief.", updated_at=2.0), Hlc("new", clock=lambda: 0.0)
    )


def test_an_old_client_reads_a_new_record_and_keeps_its_parameters(older_client: None) -> None:
    # Written by a new client (before the fixture patched the module, the shape is the same).
    body = {
        "chat_id": "c1",
        "values": {**old_record_body()["values"], "params": PARAMS},
        "clocks": {
            **old_record_body()["clocks"],
            "params": "000000000000009:000000:new",
        },
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    state = ChatState.from_json(body)  # no RecordTamperedError
    # The old client renames the chat and pushes its merged state.
    state.fold_local(row(title="Trip to Lisbon", system_prompt="Be brief."), Hlc("old"))
    pushed = state.to_json()
    assert pushed["values"]["params"] == PARAMS
    assert pushed["clocks"]["params"] == "000000000000009:000000:new"


def test_a_new_client_keeps_newer_parameters_over_an_old_clients_stale_copy() -> None:
    mine = ChatState()
    mine.fold_local(row(params='{"temperature":1.5}'), Hlc("new", clock=lambda: 100.0))
    stale = ChatState.from_json(
        {
            **old_record_body(),
            "values": {**old_record_body()["values"], "params": {"temperature": 0.1}},
            "clocks": {**old_record_body()["clocks"], "params": "000000000000009:000000:x"},
        }
    )
    mine.merge(stale)
    assert mine.values["params"] == {"temperature": 1.5}


def test_extra_parameters_from_a_newer_device_are_not_a_local_change() -> None:
    state = ChatState.from_json(
        {
            **old_record_body(),
            "values": {**old_record_body()["values"], "params": {"temperature": 1, "seed": 3}},
        }
    )
    assert not state.fold_local(
        row(system_prompt="Be brief.", params='{"temperature":1.0}'), Hlc("new")
    )
    assert state.values["params"] == {"temperature": 1, "seed": 3}


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Device, Device]]:
    server = FakeServer()
    a, b = Device(server, "a"), Device(server, "b")
    await a.setup()
    await a.engine.sync_once()
    await b.engine.join_with_passphrase(PASSPHRASE)
    yield a, b
    for device in (a, b):
        device.runner.shutdown()


async def test_parameters_reach_the_other_device(pair: tuple[Device, Device]) -> None:
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    for _ in range(2):
        for device in (a, b):
            await device.engine.sync_once()
    params = ChatParams(temperature=0.2, max_tokens=128, stop=("###",))
    store.update_chat(chat.id, params=params)
    for _ in range(2):
        for device in (a, b):
            await device.engine.sync_once()
    assert b.library.store(Tier.STANDARD).chat(chat.id).params == params


async def test_reading_answers_aloud_reaches_the_other_device(pair: tuple[Device, Device]) -> None:
    """The window's auto-read is kept in the parameters: it syncs with them."""
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    for _ in range(2):
        for device in (a, b):
            await device.engine.sync_once()
    store.update_chat(chat.id, params=ChatParams(read_aloud=True))
    for _ in range(2):
        for device in (a, b):
            await device.engine.sync_once()
    assert b.library.store(Tier.STANDARD).chat(chat.id).params.read_aloud is True

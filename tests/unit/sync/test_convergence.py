"""Convergence: any interleaving of edits and syncs on two devices ends, once both have
synced, in the same chats on both, with no message lost that was not deleted."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.store.models import Tier
from app.sync.errors import SyncOfflineError
from tests.unit.sync.devices import PASSPHRASE, Device
from tests.unit.sync.fake_server import FakeServer

WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta"])
DEVICE = st.integers(0, 1)
CHAT = st.integers(0, 3)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("new_chat"), DEVICE, st.sampled_from([Tier.STANDARD, Tier.PRIVATE])),
        st.tuples(st.just("rename"), DEVICE, CHAT, WORDS),
        st.tuples(st.just("auto_title"), DEVICE, CHAT, WORDS),
        st.tuples(st.just("ask"), DEVICE, CHAT, WORDS),
        st.tuples(st.just("prompt"), DEVICE, CHAT, WORDS),
        st.tuples(st.just("pin"), DEVICE, CHAT),
        st.tuples(st.just("delete_message"), DEVICE, CHAT),
        st.tuples(st.just("select_first"), DEVICE, CHAT),
        st.tuples(st.just("purge"), DEVICE, CHAT),
        st.tuples(st.just("move"), DEVICE, CHAT),
        st.tuples(st.just("sync"), DEVICE),
        st.tuples(st.just("sync_answer_lost"), DEVICE),
        st.tuples(st.just("restart"), DEVICE, st.booleans()),
    ),
    max_size=14,
)


def _apply(device: Device, chat_ids: list[str], op: tuple[Any, ...]) -> None:
    name = op[0]
    library = device.library
    if name == "new_chat":
        if op[2] in library.tiers:
            chat_ids.append(library.store(op[2]).create_chat().id)
        return
    if name in {"sync", "sync_answer_lost", "restart"}:
        return
    if op[2] >= len(chat_ids):
        return
    chat_id = chat_ids[op[2]]
    store = next(
        (library.store(t) for t in library.tiers if library.store(t).has_chat(chat_id)),
        None,
    )
    if store is None:
        return  # not here (yet, or any more)
    chat = store.chat(chat_id, include_deleted=True)
    if name == "rename":
        store.rename(chat_id, op[3])
    elif name == "auto_title":
        store.set_auto_title(chat_id, op[3].upper())
    elif name == "ask":
        question = store.add_message(chat_id, "user", op[3], parent_id=chat.active_leaf_id)
        store.add_message(chat_id, "assistant", op[3] + "!", parent_id=question.id)
    elif name == "prompt":
        store.update_chat(chat_id, system_prompt=op[3])
    elif name == "pin":
        store.update_chat(chat_id, pinned=not chat.pinned)
    elif name == "delete_message" and chat.active_leaf_id is not None:
        store.delete_message(chat.active_leaf_id)
    elif name == "select_first":
        messages = store.all_messages(chat_id)
        if messages:
            store.select_version(messages[0].id)
    elif name == "purge":
        store.purge(chat_id)
    elif name == "move":
        other = Tier.PRIVATE if store.tier is Tier.STANDARD else Tier.STANDARD
        if other in library.tiers:
            library.move(chat_id, other)


async def _run(operations: list[tuple[Any, ...]]) -> None:
    server = FakeServer()
    devices = [Device(server, "a"), Device(server, "b")]
    try:
        await devices[0].setup()
        await devices[0].engine.sync_once()
        await devices[1].engine.join_with_passphrase(PASSPHRASE)
        chat_ids: list[str] = []
        for op in operations:
            device = devices[op[1]]
            if op[0] == "sync":
                await device.engine.sync_once()
            elif op[0] == "sync_answer_lost":
                device.transport.lose_next_response = True
                with contextlib.suppress(SyncOfflineError):
                    await device.engine.sync_once()
                device.transport.lose_next_response = False
            elif op[0] == "restart":  # a new engine; Private open or not (keychain unlock)
                device.open(private=op[2])
            else:
                _apply(device, chat_ids, op)
            device.clock.now += 0.5
        for device in devices:
            device.open(private=True)
        for _ in range(3):
            for device in devices:
                await device.engine.sync_once()
        first, second = devices[0].dump(), devices[1].dump()
        assert first == second
        # The server agrees: a chat both show has a live record, a chat gone a tombstone.
        live = {
            record.id.removeprefix("chat:")
            for record in server.records.values()
            if record.kind == "chat" and not record.deleted
        }
        assert live == set(first)
        for device in devices:
            waiting = [
                device.library.store(t).sync_state().counts()[0]
                for t in (Tier.STANDARD, Tier.PRIVATE)
            ]
            assert waiting == [0, 0]
    finally:
        for device in devices:
            device.runner.shutdown()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(OPERATIONS)
def test_two_devices_converge_after_any_interleaving(operations: list[tuple[Any, ...]]) -> None:
    asyncio.run(_run(operations))

"""The sync engine between devices through an in-memory server with the real push rules:
new devices, offline edits that converge, merge rules, deletes and crypto-shredding,
crash-safe pushes, tampering, Ephemeral and locked-Private chats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from app.chat.events import ChangeBus, ChatChanged, ChatCreated, ChatPurged, MessagesChanged
from app.errors import UsageError
from app.store.models import MessageStatus, Tier, TitleSource
from app.sync.crypto import (
    RecordHeader,
    RecordTamperedError,
    WrongKeySecretError,
    open_record,
)
from app.sync.engine import (
    EngineStatus,
    SyncKeysExistError,
    SyncNotSetUpError,
    SyncStatus,
)
from app.sync.errors import SyncError, SyncOfflineError, SyncRetryLaterError
from tests.unit.sync.devices import ACCOUNT, KDF, PASSPHRASE, RECOVERY, Device
from tests.unit.sync.fake_server import FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def pair(server: FakeServer) -> AsyncIterator[tuple[Device, Device]]:
    """Device A set up, device B joined with the passphrase; both in sync."""
    a, b = Device(server, "a"), Device(server, "b")
    await a.setup()
    await a.engine.sync_once()
    await b.engine.join_with_passphrase(PASSPHRASE)
    yield a, b
    for device in (a, b):
        device.runner.shutdown()


async def settle(*devices: Device) -> None:
    """Sync every device until nobody has anything left to say (twice round)."""
    for _ in range(2):
        for device in devices:
            await device.engine.sync_once()


def chat_with_answer(device: Device, tier: Tier, title: str, question: str, reply: str) -> str:
    store = device.library.store(tier)
    chat = store.create_chat(title=title, title_source=TitleSource.USER)
    user = store.add_message(chat.id, "user", question, parent_id=None)
    store.add_message(chat.id, "assistant", reply, parent_id=user.id)
    return chat.id


async def test_a_new_device_gets_standard_and_private_chats(server: FakeServer) -> None:
    a = Device(server, "a")
    standard = chat_with_answer(a, Tier.STANDARD, "Plans", "sentinel-std-q", "sentinel-std-a")
    private = chat_with_answer(a, Tier.PRIVATE, "Diary", "sentinel-prv-q", "sentinel-prv-a")
    await a.setup()
    report = await a.engine.sync_once()
    assert report.pushed == 8  # twice (chatkey, chat, 2 messages); setup pushed the keys
    for record in server.records.values():
        assert b"sentinel" not in record.payload and b"Diary" not in record.payload

    b = Device(server, "b")
    with pytest.raises(SyncNotSetUpError):
        await b.engine.sync_once()
    await b.engine.join_with_passphrase(PASSPHRASE)
    assert b.dump() == a.dump()
    assert b.dump()[standard]["tier"] == "standard"
    assert b.dump()[private]["tier"] == "private"

    c = Device(server, "c")
    with pytest.raises(WrongKeySecretError):
        await c.engine.join_with_passphrase("not it")
    await c.engine.join_with_recovery(RECOVERY)
    assert c.dump() == a.dump()


async def test_a_second_setup_of_the_account_is_refused(pair: tuple[Device, Device]) -> None:
    a, _b = pair
    other = Device(a.server, "other")
    with pytest.raises(SyncKeysExistError, match="join it"):
        await other.setup()
    assert not await other.engine.is_set_up()


async def test_offline_edits_on_both_devices_converge_without_losing_a_message(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    chat_id = chat_with_answer(a, Tier.STANDARD, "Trip", "Where to?", "Lisbon.")
    await settle(a, b)
    a_store, b_store = a.library.store(Tier.STANDARD), b.library.store(Tier.STANDARD)
    leaf = a_store.chat(chat_id).active_leaf_id
    # Offline: A renames and asks on; B asks something else and changes the system prompt.
    a_store.rename(chat_id, "Trip to Lisbon")
    q1 = a_store.add_message(chat_id, "user", "When?", parent_id=leaf)
    a_store.add_message(chat_id, "assistant", "In May.", parent_id=q1.id)
    q2 = b_store.add_message(chat_id, "user", "How?", parent_id=leaf)
    b_store.add_message(chat_id, "assistant", "By train.", parent_id=q2.id)
    b_store.update_chat(chat_id, system_prompt="Be brief.")
    await settle(a, b)
    assert a.dump() == b.dump()
    chat = a.dump()[chat_id]
    assert chat["title"] == "Trip to Lisbon" and chat["system_prompt"] == "Be brief."
    contents = {m[3] for m in chat["messages"]}
    assert contents == {"Where to?", "Lisbon.", "When?", "In May.", "How?", "By train."}


async def test_a_user_title_beats_a_later_automatic_title(pair: tuple[Device, Device]) -> None:
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    await settle(a, b)
    b.library.store(Tier.STANDARD).rename(chat.id, "Named by me")
    b.clock.now -= 1000  # B's clock is behind: its edit still wins, a user title beats auto
    assert store.set_auto_title(chat.id, "Generated title")
    await settle(a, b)
    for device in (a, b):
        shown = device.dump()[chat.id]
        assert (shown["title"], shown["title_source"]) == ("Named by me", "user")


async def test_the_later_of_two_user_titles_wins(pair: tuple[Device, Device]) -> None:
    a, b = pair
    chat = a.library.store(Tier.STANDARD).create_chat()
    await settle(a, b)
    a.library.store(Tier.STANDARD).rename(chat.id, "First")
    b.clock.now = a.clock.now + 5
    b.library.store(Tier.STANDARD).rename(chat.id, "Second")
    await settle(a, b)
    assert a.dump()[chat.id]["title"] == b.dump()[chat.id]["title"] == "Second"


async def test_a_delete_beats_an_edit_and_reaches_the_other_device(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    doomed = chat_with_answer(a, Tier.STANDARD, "Doomed", "q", "a")
    kept = chat_with_answer(a, Tier.STANDARD, "Kept", "q2", "a2")
    await settle(a, b)
    a.library.store(Tier.STANDARD).purge(doomed)
    b_store = b.library.store(Tier.STANDARD)
    b_store.rename(doomed, "Edited meanwhile")
    b_store.add_message(doomed, "user", "late message", parent_id=None)
    await a.engine.sync_once()
    await b.engine.sync_once()
    await settle(a, b)
    assert doomed not in a.dump() and doomed not in b.dump()
    assert a.dump() == b.dump() and kept in a.dump()
    assert server_record(a.server, f"chat:{doomed}").deleted
    assert server_record(a.server, f"chatkey:{doomed}").deleted


def server_record(server: FakeServer, record_id: str) -> object:
    return server.records[record_id]


async def test_deleting_a_chat_shreds_it_from_earlier_server_backups(
    pair: tuple[Device, Device],
) -> None:
    """A copy of the server taken before the delete opens with no key any device holds
    after it; the remaining chats still open, and a device joining later sees them."""
    a, b = pair
    doomed = chat_with_answer(a, Tier.PRIVATE, "Doomed", "shred-me", "shredded")
    kept = chat_with_answer(a, Tier.PRIVATE, "Kept", "keep-me", "kept")
    await settle(a, b)
    backup = a.server.snapshot()
    doomed_ids = {f"chatkey:{doomed}", f"chat:{doomed}"} | {
        f"msg:{message[0]}" for message in a.dump()[doomed]["messages"]
    }
    epochs_before = {k[2] for k in b.library.store(Tier.PRIVATE).sync_state().sync_keys()}

    b.library.store(Tier.PRIVATE).purge(doomed)
    await settle(b, a)
    assert doomed not in a.dump() and kept in a.dump() and a.dump() == b.dump()
    for device in (a, b):
        (key,) = device.library.store(Tier.PRIVATE).sync_state().sync_keys()
        assert key[2] == max(epochs_before) + 1 and key[4] == "current"

    for device in (a, b):  # nothing of it is left in either database, sync state included
        rows = device.database_text(device.private)
        assert "shred-me" not in rows and "Doomed" not in rows and "keep-me" in rows
    held = a.held_keys() + b.held_keys()
    assert doomed_ids <= set(backup)  # chatkey, chat, two messages
    for record in backup.values():
        if record.kind in {"keys", "rotation"}:
            continue
        header = RecordHeader(
            ACCOUNT, record.id, record.kind, record.revision, record.deleted, record.key_id
        )
        opened = [key for key in held if _opens(key, header, record.payload)]
        if record.id in doomed_ids:
            assert opened == [], record.id
        elif record.kind != "chatkey":
            assert opened, record.id  # the kept chat's records open with its chat key
    # The keys record of the backup is sealed to a key no device stores.
    for device in (a, b):
        stored = json.loads(
            device.library.store(Tier.STANDARD).sync_state().setting("account_keys")
        )
        assert set(stored) == {"public_key", "verify_key", "signing_key", "slots"}

    # The kept chat still reaches a device that joins after the delete.
    c = Device(a.server, "c")
    await c.engine.join_with_passphrase(PASSPHRASE)
    assert c.dump() == a.dump()


def _opens(key: bytes, header: RecordHeader, payload: bytes) -> bool:
    try:
        open_record(key, header, payload)
    except RecordTamperedError:
        return False
    return True


async def test_a_push_whose_answer_was_lost_is_not_duplicated(pair: tuple[Device, Device]) -> None:
    a, b = pair
    chat_id = chat_with_answer(a, Tier.STANDARD, "Crash", "before", "the crash")
    a.transport.lose_next_response = True
    with pytest.raises(SyncOfflineError):
        await a.engine.sync_once()
    saved = {r.id: (r.revision, r.payload) for r in a.server.records.values()}
    # The app dies; a new engine over the same databases pushes again.
    a.open(private=True)
    report = await a.engine.sync_once()
    assert report.pushed == 0  # every record was already there: duplicates, no new rows
    assert {r.id: (r.revision, r.payload) for r in a.server.records.values()} == saved
    await b.engine.sync_once()
    assert b.dump() == a.dump()
    assert len(b.dump()[chat_id]["messages"]) == 2


async def test_a_crash_after_sealing_and_before_pushing_resends_the_same_bytes(
    pair: tuple[Device, Device],
) -> None:
    a, _b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat(title="Sealed")
    a.transport.offline = True
    with pytest.raises(SyncOfflineError):
        await a.engine.sync_once()  # sealed and saved, not pushed
    state = store.sync_state()
    pending = {r.record_id: r.payload for r in state.pending()}
    assert f"chat:{chat.id}" in pending
    a.transport.offline = False
    a.open(private=True)
    await a.engine.sync_once()
    assert a.server.records[f"chat:{chat.id}"].payload == pending[f"chat:{chat.id}"]


async def test_a_tampered_or_swapped_record_is_refused(pair: tuple[Device, Device]) -> None:
    a, b = pair
    first = chat_with_answer(a, Tier.STANDARD, "One", "sentinel-1", "x")
    second = chat_with_answer(a, Tier.STANDARD, "Two", "sentinel-2", "y")
    await a.engine.sync_once()
    records = a.server.records
    one, two = records[f"chat:{first}"], records[f"chat:{second}"]
    one.payload, two.payload = two.payload, one.payload  # the server swaps two records
    leaf = a.library.store(Tier.STANDARD).chat(first).active_leaf_id
    flipped = records[f"msg:{leaf}"]
    flipped.payload = flipped.payload[:-1] + bytes([flipped.payload[-1] ^ 1])
    report = await b.engine.sync_once()
    assert report.tampered == 3
    shown = b.dump()
    assert first not in shown and second not in shown  # no chat record opened
    assert not any(leaf in str(chat) for chat in shown.values())


async def test_ephemeral_chats_never_leave_the_device(pair: tuple[Device, Device]) -> None:
    a, b = pair
    store = a.library.store(Tier.EPHEMERAL)
    chat = store.create_chat(title="Ephemeral")
    store.add_message(chat.id, "user", "sentinel-ephemeral", parent_id=None)
    await settle(a, b)
    assert not any(chat.id in record_id for record_id in a.server.records)
    assert chat.id not in b.dump()


async def test_a_partial_answer_waits_while_it_streams_here(pair: tuple[Device, Device]) -> None:
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    user = store.add_message(chat.id, "user", "q", parent_id=None)
    answer = store.add_message(
        chat.id, "assistant", "stream", parent_id=user.id, status=MessageStatus.PARTIAL
    )
    a.engine._streaming = {answer.id}.__contains__  # as ChatService.streaming does
    await settle(a, b)
    assert f"msg:{answer.id}" not in a.server.records
    store.update_message(answer.id, content="streamed", status=MessageStatus.COMPLETE)
    await settle(a, b)
    assert b.dump() == a.dump()


async def test_an_interrupted_answer_syncs_and_its_final_version_replaces_it(
    pair: tuple[Device, Device],
) -> None:
    """The app stopped mid-answer: nobody streams it any more, so it is sent as it is
    (partial); if its device finishes it later, the final version replaces it."""
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    user = store.add_message(chat.id, "user", "q", parent_id=None)
    answer = store.add_message(
        chat.id, "assistant", "half an an", parent_id=user.id, status=MessageStatus.PARTIAL
    )
    await settle(a, b)
    received = b.library.store(Tier.STANDARD).message(answer.id)
    assert (received.content, received.status) == ("half an an", MessageStatus.PARTIAL)

    store.update_message(answer.id, content="half an answer", status=MessageStatus.COMPLETE)
    await settle(a, b)
    received = b.library.store(Tier.STANDARD).message(answer.id)
    assert (received.content, received.status) == ("half an answer", MessageStatus.COMPLETE)
    assert b.dump() == a.dump()

    # A final message does not change any more: a later revision cannot rewrite it.
    b_state = b.library.store(Tier.STANDARD).sync_state()
    assert not b_state.replace_partial_message(
        {**b_state.message_row(answer.id), "content": "rewritten"}  # type: ignore[dict-item]
    )


async def test_private_records_wait_while_private_is_locked(pair: tuple[Device, Device]) -> None:
    a, b = pair
    # B unlocked with the keychain: Standard only.
    b.open(private=False)
    private_chat = chat_with_answer(a, Tier.PRIVATE, "Locked", "p-q", "p-a")
    standard_chat = chat_with_answer(a, Tier.STANDARD, "Open", "s-q", "s-a")
    await a.engine.sync_once()
    report = await b.engine.sync_once()
    assert report.deferred == 4  # the Private chat's chatkey, chat and two messages
    assert await b.engine.backlog() == (0, 4)
    assert standard_chat in b.dump() and private_chat not in b.dump()
    # B has a Private chat of its own from before: it is not pushed while locked.
    b_private = b.library  # the Private database is closed: nothing to read or push
    assert Tier.PRIVATE not in b_private.tiers
    b.open(private=True)
    await b.engine.sync_once()
    assert b.dump() == a.dump()
    assert b.dump()[private_chat]["tier"] == "private"


async def test_a_private_chat_made_while_standard_only_is_not_pushed(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    chat_id = chat_with_answer(b, Tier.PRIVATE, "Mine", "q", "a")
    b.open(private=False)
    await b.engine.sync_once()
    assert not any(chat_id in record_id for record_id in a.server.records)
    b.open(private=True)
    await settle(b, a)
    assert a.dump()[chat_id]["tier"] == "private"


async def test_moving_a_chat_to_private_rekeys_it_and_moves_it_everywhere(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    chat_id = chat_with_answer(a, Tier.STANDARD, "Move me", "q", "a")
    await settle(a, b)
    old_standard_keys = [k for k in a.library.store(Tier.STANDARD).sync_state().sync_keys()]
    a.library.move(chat_id, Tier.PRIVATE)
    await settle(a, b)
    assert a.dump() == b.dump()
    assert b.dump()[chat_id]["tier"] == "private"
    # Every current record of the chat is sealed with a key only Private holders have.
    private_keys = {k for _c, k, _s, _h in a.library.store(Tier.PRIVATE).sync_state().chat_keys()}
    for record in a.server.records.values():
        if chat_id in record.id and record.kind != "chatkey":
            assert record.key_id in private_keys
    # The Standard key moved to a new epoch: the old one no longer opens anything new.
    new_standard = a.library.store(Tier.STANDARD).sync_state().sync_keys()
    assert [k[0] for k in new_standard] != [k[0] for k in old_standard_keys]
    assert not b.library.store(Tier.STANDARD).sync_state().chat_key(chat_id)


async def test_remote_changes_are_announced_on_the_service_bus(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    bus = ChangeBus()
    seen: list[ChatChanged] = []
    bus.subscribe(seen.append)
    b.engine._bus = bus  # what attach(service) sets
    chat_id = chat_with_answer(a, Tier.STANDARD, "News", "q", "a")
    await a.engine.sync_once()
    await b.engine.sync_once()
    assert ChatCreated(chat_id) in seen and MessagesChanged(chat_id) in seen
    a.library.store(Tier.STANDARD).purge(chat_id)
    await a.engine.sync_once()
    await b.engine.sync_once()
    assert ChatPurged(chat_id) in seen


async def test_the_background_loop_brings_changes_over_and_reports_its_status(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    for device in (a, b):
        device.engine._long_poll = 2.0
        device.engine._debounce = 0.01
    statuses: list[SyncStatus] = []
    b.engine.add_status_listener(lambda status: statuses.append(status.state))
    stop = asyncio.Event()
    loops = [asyncio.create_task(d.engine.run(stop)) for d in (a, b)]
    try:
        await asyncio.sleep(0.1)
        chat_id = chat_with_answer(a, Tier.STANDARD, "Live", "q", "a")
        a.engine.notify_local_change()
        for _ in range(200):
            if chat_id in b.dump():
                break
            await asyncio.sleep(0.02)
        assert chat_id in b.dump()
        b.transport.offline = True
        for _ in range(200):
            if b.engine.status.state is SyncStatus.OFFLINE:
                break
            await asyncio.sleep(0.02)
        assert b.engine.status.state is SyncStatus.OFFLINE
        b.transport.offline = False
        b.transport.signed_out = True
        b.engine.notify_local_change()
        await asyncio.wait_for(loops[1], 10)
        assert b.engine.status.state is SyncStatus.SIGNED_OUT
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops, return_exceptions=True), 10)
    assert SyncStatus.SYNCING in statuses and SyncStatus.IDLE in statuses


async def test_changing_the_passphrase_reaches_a_device_joining_later(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    with pytest.raises(WrongKeySecretError):
        await b.engine.change_passphrase("wrong", "new passphrase here", KDF)
    await b.engine.change_passphrase(PASSPHRASE, "new passphrase here", KDF)
    await settle(b, a)
    c = Device(a.server, "c")
    with pytest.raises(WrongKeySecretError):
        await c.engine.join_with_passphrase(PASSPHRASE)
    await c.engine.join_with_passphrase("new passphrase here")
    assert c.dump() == a.dump()


async def test_a_deleted_message_goes_everywhere_and_a_reply_to_it_moves_up(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    question = store.add_message(chat.id, "user", "q", parent_id=None)
    answer = store.add_message(chat.id, "assistant", "a", parent_id=question.id)
    await settle(a, b)
    store.delete_message(answer.id)  # A deletes the answer ...
    reply = b.library.store(Tier.STANDARD).add_message(
        chat.id, "user", "thanks", parent_id=answer.id
    )  # ... while B, offline, replies to it
    await settle(a, b)
    assert a.dump() == b.dump()
    messages = {m[0]: m for m in a.dump()[chat.id]["messages"]}
    assert answer.id not in messages
    assert messages[reply.id][1] == question.id


async def test_attach_pushes_after_service_changes_and_not_after_its_own(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair

    class Service:
        changes = ChangeBus()
        runner = b.runner
        streaming: ClassVar[set[str]] = set()

    service = Service()
    b.engine.attach(service)  # type: ignore[arg-type]
    service.changes.emit(ChatCreated("x"))
    assert b.engine._local_change.is_set()
    b.engine._local_change.clear()
    chat_with_answer(a, Tier.STANDARD, "From A", "q", "a")
    await a.engine.sync_once()
    await b.engine.sync_once()  # emits ChatCreated on the service's bus
    assert not b.engine._local_change.is_set()
    b.engine.detach()
    service.changes.emit(ChatCreated("y"))
    assert not b.engine._local_change.is_set()


async def test_records_of_an_unexpected_kind_or_a_forged_keys_record_are_ignored(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    chat_id = chat_with_answer(a, Tier.STANDARD, "Kind", "q", "a")
    await a.engine.sync_once()
    record = a.server.records[f"chat:{chat_id}"]
    record.kind = "message"  # the server relabels it
    keys = a.server.records["keys"]
    body = json.loads(keys.payload)
    body["entries"] = body["entries"][:1]  # drops a key: the signature no longer holds
    a.server.seq += 1
    keys.payload, keys.revision, keys.seq = (
        json.dumps(body).encode(),
        keys.revision + 1,
        a.server.seq,
    )
    report = await b.engine.sync_once()
    assert chat_id not in b.dump()
    assert report.tampered == 1  # the keys record; the relabelled one is skipped by kind
    assert b.library.store(Tier.STANDARD).sync_state().row("keys").server_revision < keys.revision


async def test_setting_up_or_joining_needs_private_open(server: FakeServer) -> None:
    device = Device(server, "a")
    device.open(private=False)
    with pytest.raises(UsageError, match="Private"):
        await device.setup()
    with pytest.raises(UsageError, match="Private"):
        await device.engine.join_with_passphrase(PASSPHRASE)


async def test_deletes_in_both_tiers_on_two_devices_at_once_keep_the_keys_record_whole(
    pair: tuple[Device, Device],
) -> None:
    """A moves Standard to a new epoch while B moves Private: the keys record ends with
    one current key per tier, and a device joining afterwards reads everything."""
    a, b = pair
    standard = chat_with_answer(a, Tier.STANDARD, "S", "s", "s")
    private = chat_with_answer(a, Tier.PRIVATE, "P", "p", "p")
    kept = [chat_with_answer(a, tier, "K", "k", "k") for tier in (Tier.STANDARD, Tier.PRIVATE)]
    await settle(a, b)
    a.library.store(Tier.STANDARD).purge(standard)
    b.library.store(Tier.PRIVATE).purge(private)
    await a.engine.sync_once()
    await b.engine.sync_once()
    await settle(a, b)
    assert a.dump() == b.dump() and set(a.dump()) == set(kept)
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        ids = {tuple(k[0] for k in d.library.store(tier).sync_state().sync_keys()) for d in (a, b)}
        assert len(ids) == 1  # both devices on the same single key
    c = Device(a.server, "c")
    await c.engine.join_with_passphrase(PASSPHRASE)
    assert c.dump() == a.dump()


async def test_the_loop_waits_as_told_and_survives_a_bug(
    pair: tuple[Device, Device], caplog: pytest.LogCaptureFixture
) -> None:
    _a, b = pair
    calls: list[float] = []
    real_changes = b.transport.changes

    async def changes(cursor: int, *, limit: int | None = None, wait: float = 0.0) -> Any:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            raise SyncRetryLaterError("The sync server is busy.", retry_after=0.3)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return await real_changes(cursor, limit=limit, wait=min(wait, 0.05))

    b.transport.changes = changes  # type: ignore[method-assign]
    seen: list[EngineStatus] = []
    b.engine.add_status_listener(seen.append)
    stop = asyncio.Event()
    loop = asyncio.create_task(b.engine.run(stop))
    for _ in range(300):
        if len(calls) >= 4:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert calls[1] - calls[0] >= 0.3  # Retry-After honoured
    assert EngineStatus(SyncStatus.OFFLINE, "The sync server is busy.") in seen
    assert any(s.state is SyncStatus.ERROR for s in seen)  # the bug: logged, loop goes on
    assert "unexpected error" in caplog.text and "Traceback" in caplog.text
    assert len(calls) >= 4


async def test_a_profile_set_up_for_one_account_refuses_another(
    pair: tuple[Device, Device],
) -> None:
    _a, b = pair
    b.account = "someone-else"
    b.open(private=True)
    with pytest.raises(SyncError, match="another account"):
        await b.engine.sync_once()


async def test_a_delete_beats_an_edit_that_reached_the_server_first(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    doomed = chat_with_answer(a, Tier.STANDARD, "Doomed", "q", "a")
    await settle(a, b)
    b_store = b.library.store(Tier.STANDARD)
    b_store.rename(doomed, "Edited first")
    b_store.add_message(doomed, "user", "late message", parent_id=None)
    await b.engine.sync_once()  # the edit is on the server ...
    a.library.store(Tier.STANDARD).purge(doomed)  # ... when A, offline, deletes the chat
    await a.engine.sync_once()
    await settle(b, a)
    assert doomed not in a.dump() and doomed not in b.dump()
    assert a.server.records[f"chat:{doomed}"].deleted


async def test_a_message_too_large_for_the_server_is_cut_and_the_thread_stays_whole(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    a.engine._record_bytes = 4096
    a.engine._request_bytes = 6000  # about one large record per request
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    question = store.add_message(chat.id, "user", "q", parent_id=None)
    huge = store.add_message(chat.id, "assistant", "é" * 20_000, parent_id=question.id)
    store.add_message(chat.id, "user", "after", parent_id=huge.id)
    pushes = a.server.pushes
    await settle(a, b)
    assert a.server.pushes - pushes >= 3
    assert max(len(r.payload) for r in a.server.records.values()) <= 4096
    messages = {m[0]: m for m in b.dump()[chat.id]["messages"]}
    assert len(messages) == 3
    assert messages[huge.id][3].endswith(
        "[Truncated for sync: the whole message is on the device that wrote it.]"
    )
    assert messages[huge.id][3].startswith("é" * 100)


async def test_edits_from_a_device_with_private_locked_never_reexpose_a_chat_moved_to_private(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    chat_id = chat_with_answer(a, Tier.STANDARD, "Becomes private", "q", "a")
    await settle(a, b)
    a.library.move(chat_id, Tier.PRIVATE)
    await a.engine.sync_once()
    new_key = a.library.store(Tier.PRIVATE).sync_state().chat_key(chat_id)
    assert new_key is not None
    # B opened with the keychain (Standard only) still has the chat as Standard, edits it.
    b.open(private=False)
    b_store = b.library.store(Tier.STANDARD)
    b.clock.now = a.clock.now + 10
    b_store.rename(chat_id, "Renamed on B")
    leaf = b_store.chat(chat_id).active_leaf_id
    b_store.add_message(chat_id, "user", "from B", parent_id=leaf)
    await b.engine.sync_once()
    assert a.server.records[f"chat:{chat_id}"].key_id == new_key[0]
    assert (
        a.server.records[f"chatkey:{chat_id}"].key_id
        != b.library.store(Tier.STANDARD).sync_state().sync_keys()[0][0]
    )
    # With Private open again, B follows the move and its edits are merged.
    b.open(private=True)
    await settle(b, a)
    assert a.dump() == b.dump()
    shown = a.dump()[chat_id]
    assert shown["tier"] == "private" and shown["title"] == "Renamed on B"
    assert "from B" in {m[3] for m in shown["messages"]}
    chat_records = [r for r in a.server.records.values() if r.kind in {"chat", "message"}]
    assert {r.key_id for r in chat_records} == {new_key[0]}


async def test_a_chat_wrapped_under_the_old_epoch_before_hearing_of_the_new_one_is_rewrapped(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    doomed = chat_with_answer(a, Tier.STANDARD, "Doomed", "q", "a")
    await settle(a, b)
    a.library.store(Tier.STANDARD).purge(doomed)
    await a.engine.sync_once()  # new Standard epoch; A no longer holds the old key
    fresh = chat_with_answer(b, Tier.STANDARD, "Made on B", "q", "a")
    await b.engine.sync_once()  # pushed under the old key, then B hears of the new one
    await settle(a, b)
    assert fresh in a.dump() and a.dump() == b.dump()
    assert await a.engine.backlog() == (0, 0)
    c = Device(a.server, "c")
    await c.engine.join_with_passphrase(PASSPHRASE)
    assert c.dump() == a.dump()

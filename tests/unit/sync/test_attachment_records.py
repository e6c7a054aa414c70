"""Attachments as sync records: the metadata and part encodings, and two devices
exchanging an attachment's bytes through the fake server (parts, tombstones, a refused
part, a checksum mismatch)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.store.models import Tier
from app.sync.crypto import RecordTamperedError
from app.sync.records import (
    attachment_values,
    decode_part,
    encode_part,
    kind_of,
    part_record_id,
    split_part_record_id,
)
from tests.unit.sync.devices import PASSPHRASE, Device
from tests.unit.sync.fake_server import FakeServer

META = {
    "chat_id": "c1", "message_id": "m1", "name": "report.pdf", "media_type": "application/pdf",
    "size": 2500, "sha256": "ab" * 32, "position": 0, "created_at": 1.5, "parts": 3,
    "part_size": 1000,
}  # fmt: skip
MAX = 64 * 1024 * 1024


def test_record_ids_name_no_content() -> None:
    record_id = part_record_id("0123abcd", 7)
    assert record_id == "attpart:0123abcd:7"
    assert split_part_record_id(record_id) == ("0123abcd", 7)
    assert kind_of(record_id) == "attachment_part"
    assert kind_of("att:0123abcd") == "attachment"
    with pytest.raises(RecordTamperedError):
        split_part_record_id("attpart:0123abcd")


def test_a_part_holds_its_bytes_raw() -> None:
    data = bytes(range(256)) * 4 + b"\n\n"
    plaintext = encode_part("c1", data)
    assert plaintext.endswith(data)  # no base64: a part fits the record limit
    assert decode_part(plaintext, "p") == ({"chat_id": "c1"}, data)
    for bad in (b'{"chat_id":"c1"}', b'{"chat_id":"c1"}\n', b"[1]\nxx", b"\xff\nxx"):
        with pytest.raises(RecordTamperedError):
            decode_part(bad, "p")


def test_metadata_is_checked() -> None:
    assert attachment_values(META)["parts"] == 3
    for change in (
        {"sha256": "AB" * 32},
        {"sha256": "ab"},
        {"size": 0},
        {"parts": 2},  # 2500 bytes in parts of 1000 are 3 parts
        {"position": -1},
        {"name": ""},
        {"size": True},
        {"media_type": None},
    ):
        with pytest.raises(RecordTamperedError):
            attachment_values({**META, **change})
    with pytest.raises(RecordTamperedError):
        attachment_values({k: v for k, v in META.items() if k != "part_size"})


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


async def _round(*devices: Device) -> None:
    for _ in range(2):
        for device in devices:
            await device.engine.sync_once()


def _small_parts(device: Device, part_size: int) -> None:
    """An engine whose attachments travel in parts of ``part_size`` bytes."""
    device.engine._part_size = part_size


def _attach(device: Device, tier: Tier, data: bytes, name: str) -> tuple[str, str, str]:
    store = device.library.store(tier)
    chat = store.create_chat()
    message = store.add_message(chat.id, "user", "see the file", parent_id=None)
    attachment = store.add_attachment(message.id, io.BytesIO(data), max_size=MAX, name=name)
    return chat.id, message.id, attachment.id


def _files(device: Device, tier: Tier, message_id: str) -> list[tuple[str, str, bytes]]:
    store = device.library.store(tier)
    return [
        (a.name, a.media_type, b"".join(store.read_attachment(a.id)))
        for a in store.attachments(message_id)
    ]


async def test_an_attachment_crosses_in_parts(pair: tuple[Device, Device]) -> None:
    a, b = pair
    _small_parts(a, 4096)
    data = os.urandom(10_000) + b"SENTINEL-att-5d1e"
    chat_id, message_id, attachment_id = _attach(a, Tier.PRIVATE, data, "notes.txt")
    await _round(a, b)
    assert _files(b, Tier.PRIVATE, message_id) == [("notes.txt", "text/plain", data)]
    # Three parts of 4096 bytes and one more, plus the metadata, under the chat's key.
    ids = {row.record_id for row in _rows(b, Tier.PRIVATE, chat_id)}
    assert {f"att:{attachment_id}", *(part_record_id(attachment_id, n) for n in range(3))} <= ids
    assert not _staged(b, Tier.PRIVATE)


def _rows(device: Device, tier: Tier, chat_id: str) -> list[Any]:
    state = device.library.store(tier).sync_state()
    rows = state._conn.execute(
        "SELECT record_id FROM sync_records WHERE chat_id = ?", (chat_id,)
    ).fetchall()
    return [state.row(r[0]) for r in rows]


def _staged(device: Device, tier: Tier) -> list[Any]:
    conn = device.library.store(tier).sync_state()._conn
    return list(conn.execute("SELECT attachment_id, idx FROM sync_attachment_parts"))


async def test_an_incomplete_attachment_is_not_shown(pair: tuple[Device, Device]) -> None:
    a, b = pair
    _small_parts(a, 4096)
    data = os.urandom(12_000)
    _chat_id, message_id, attachment_id = _attach(a, Tier.STANDARD, data, "photo.bin")
    await a.engine.sync_once()
    # The server loses part 1 (as if it had not arrived yet).
    missing = part_record_id(attachment_id, 1)
    server = a.transport.server
    held = server.records.pop(missing)
    await b.engine.sync_once()
    assert _files(b, Tier.STANDARD, message_id) == []
    assert [row[1] for row in _staged(b, Tier.STANDARD)] == [0, 2]
    server.seq += 1
    held.seq = server.seq
    server.records[missing] = held
    await b.engine.sync_once()
    assert [f[2] for f in _files(b, Tier.STANDARD, message_id)] == [data]
    assert not _staged(b, Tier.STANDARD)


async def test_a_checksum_mismatch_is_refused_and_the_rest_applies(
    pair: tuple[Device, Device], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    data = b"the real content " * 100
    _chat_id, message_id, attachment_id = _attach(a, Tier.STANDARD, data, "real.txt")
    # A device that lies about the content: the metadata names another hash.
    conn = a.library.store(Tier.STANDARD).sync_state()._conn
    wrong = hashlib.sha256(b"something else").hexdigest()
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("UPDATE attachments SET sha256 = ? WHERE id = ?", (wrong, attachment_id))
    conn.execute("UPDATE blobs SET sha256 = ?", (wrong,))
    conn.execute("PRAGMA foreign_keys = ON")
    other_chat = a.library.store(Tier.STANDARD).create_chat(title="still applied")
    caplog.set_level(logging.WARNING, logger="app.sync.engine")
    await a.engine.sync_once()
    report = await b.engine.sync_once()
    assert report.tampered == 1
    assert _files(b, Tier.STANDARD, message_id) == []
    assert b.library.store(Tier.STANDARD).chat(other_chat.id).title == "still applied"
    assert not _staged(b, Tier.STANDARD)
    assert f"attachment {attachment_id} does not match its checksum" in caplog.text
    assert "the real content" not in caplog.text


async def test_deleting_the_chat_deletes_its_attachment_records(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    _small_parts(a, 4096)
    data = os.urandom(9000)
    chat_id, message_id, attachment_id = _attach(a, Tier.STANDARD, data, "gone.bin")
    await _round(a, b)
    assert _files(b, Tier.STANDARD, message_id)
    a.library.store(Tier.STANDARD).purge(chat_id)
    await _round(a, b)
    store = b.library.store(Tier.STANDARD)
    assert store.chat_attachments(chat_id) == []
    assert store.sync_state()._conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0
    # On the server every record of the attachment is a tombstone.
    records = a.transport.server.records
    parts = [part_record_id(attachment_id, n) for n in range(3)]
    for record_id in (f"att:{attachment_id}", *parts):
        assert records[record_id].deleted, record_id


async def test_ephemeral_attachments_never_sync(pair: tuple[Device, Device]) -> None:
    a, _b = pair
    store = a.library.store(Tier.EPHEMERAL)
    chat = store.create_chat()
    message = store.add_message(chat.id, "user", "x", parent_id=None)
    store.add_attachment(message.id, io.BytesIO(b"ephemeral bytes"), max_size=MAX, name="e.txt")
    await a.engine.sync_once()
    assert not any(r.kind.startswith("attachment") for r in a.transport.server.records.values())


def test_attachments_from_before_the_upgrade_are_to_be_synced() -> None:
    from pathlib import Path

    from app.store.library import memory_connection
    from app.store.migrations import migrate

    fixture = Path(__file__).parents[2] / "fixtures" / "store" / "schema_v8.sql"
    conn = memory_connection()
    conn.executescript(fixture.read_text(encoding="utf-8"))
    migrate(conn)
    row = conn.execute(
        "SELECT kind, chat_id, dirty FROM sync_records WHERE record_id = 'att:a1'"
    ).fetchone()
    assert tuple(row) == ("attachment", "c1", 1)


async def test_parts_are_sealed_and_pushed_a_bounded_batch_at_a_time(
    pair: tuple[Device, Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    _small_parts(a, 4096)
    a.engine._request_bytes = 20480  # room for 3 parts of 4096 bytes per round
    assert a.engine._part_budget() == 3
    server = a.transport.server
    pushed: list[int] = []
    push = server.push

    def counting(device_id: str, records: list[Any], atomic: bool) -> Any:
        pushed.append(sum(r.kind == "attachment_part" for r in records))
        return push(device_id, records, atomic)

    monkeypatch.setattr(server, "push", counting)
    data = os.urandom(40_000)  # 10 parts
    _chat_id, message_id, _attachment_id = _attach(a, Tier.STANDARD, data, "big.bin")
    await a.engine.sync_once()
    assert sum(pushed) == 10 and max(pushed) == 3
    await b.engine.sync_once()
    assert [f[2] for f in _files(b, Tier.STANDARD, message_id)] == [data]


async def test_private_parts_wait_for_the_private_key(pair: tuple[Device, Device]) -> None:
    a, b = pair
    _small_parts(a, 4096)
    data = os.urandom(10_000)
    _chat_id, message_id, _attachment_id = _attach(a, Tier.PRIVATE, data, "secret.bin")
    await a.engine.sync_once()
    b.open(private=False)  # Private locked on B: its records wait in the inbox
    report = await b.engine.sync_once()
    assert report.deferred >= 4 and report.tampered == 0
    b.open(private=True)
    await b.engine.sync_once()
    assert [f[2] for f in _files(b, Tier.PRIVATE, message_id)] == [data]
    assert not _staged(b, Tier.PRIVATE)


async def test_a_moved_chat_seals_its_attachment_again_under_the_new_key(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    _small_parts(a, 4096)
    data = os.urandom(9000)
    chat_id, message_id, attachment_id = _attach(a, Tier.STANDARD, data, "moving.bin")
    await _round(a, b)
    a.library.move(chat_id, Tier.PRIVATE)
    await _round(a, b)
    await _round(a, b)
    assert [f[2] for f in _files(b, Tier.PRIVATE, message_id)] == [data]
    assert b.library.store(Tier.STANDARD).chat_attachments(chat_id) == []
    private_keys = {k for _c, k, _s, _h in a.library.store(Tier.PRIVATE).sync_state().chat_keys()}
    ours = [r for r in a.transport.server.records.values() if attachment_id in r.id]
    assert len(ours) == 4  # the metadata and three parts
    for record in ours:
        assert record.key_id in private_keys and not record.deleted, record.id


async def test_metadata_naming_another_chats_message_is_refused(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    other = store.create_chat()
    elsewhere = store.add_message(other.id, "user", "elsewhere", parent_id=None)
    _chat_id, _message_id, attachment_id = _attach(a, Tier.STANDARD, b"planted", "p.txt")
    # A device that files the attachment (sealed under its chat's key) under a message
    # of another chat.
    conn = store.sync_state()._conn
    conn.execute(
        "UPDATE attachments SET message_id = ? WHERE id = ?", (elsewhere.id, attachment_id)
    )
    await a.engine.sync_once()
    report = await b.engine.sync_once()
    assert report.tampered == 1
    assert b.library.store(Tier.STANDARD).attachments(elsewhere.id) == []


async def test_the_same_file_in_two_chats_is_two_sets_of_records_one_blob(
    pair: tuple[Device, Device],
) -> None:
    a, b = pair
    data = os.urandom(5000)
    first = _attach(a, Tier.STANDARD, data, "same.bin")
    second = _attach(a, Tier.STANDARD, data, "same.bin")
    await _round(a, b)
    for _chat_id, message_id, _attachment_id in (first, second):
        assert [f[2] for f in _files(b, Tier.STANDARD, message_id)] == [data]
    conn = b.library.store(Tier.STANDARD).sync_state()._conn
    assert conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
    records = a.transport.server.records
    keys = {records[f"att:{attachment_id}"].key_id for _c, _m, attachment_id in (first, second)}
    assert len(keys) == 2  # each under its own chat's key
    payloads = {records[part_record_id(att, 0)].payload for _c, _m, att in (first, second)}
    assert len(payloads) == 2


async def test_the_sending_device_does_not_download_its_own_parts(
    pair: tuple[Device, Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    await _round(a, b)  # A's cursor is current
    _small_parts(a, 4096)
    a.engine._request_bytes = 20480  # several push rounds
    pulled: list[str] = []
    changes = a.transport.changes

    async def counting(cursor: int, *, limit: int | None = None, wait: float = 0.0) -> Any:
        page = await changes(cursor, limit=limit, wait=wait)
        pulled.extend(record.id for record in page.changes)
        return page

    monkeypatch.setattr(a.transport, "changes", counting)
    _chat_id, message_id, _attachment_id = _attach(a, Tier.STANDARD, os.urandom(40_000), "x")
    report = await a.engine.sync_once()
    assert report.pushed >= 14  # chat key, chat, message, metadata and 10 parts
    assert pulled == []
    # Another device's record after them still arrives (the cursor moved only past ours).
    b.library.store(Tier.STANDARD).create_chat(title="from B")
    await b.engine.sync_once()
    await a.engine.sync_once()
    assert len(pulled) == 2  # B's chat key and chat
    await b.engine.sync_once()
    assert len(_files(b, Tier.STANDARD, message_id)) == 1


async def test_parts_fit_a_server_with_a_lower_record_limit(
    pair: tuple[Device, Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    a, b = pair
    limits = SimpleNamespace(
        max_record_bytes=8192, max_request_bytes=1 << 20, max_batch_records=50,
        max_page_size=100,
    )  # fmt: skip

    async def meta() -> Any:
        return SimpleNamespace(limits=limits)

    monkeypatch.setattr(a.transport, "meta", meta, raising=False)
    data = os.urandom(20_000)
    _chat_id, message_id, _attachment_id = _attach(a, Tier.STANDARD, data, "fits.bin")
    await a.engine.sync_once()
    parts = [r for r in a.transport.server.records.values() if r.kind == "attachment_part"]
    assert len(parts) == 3 and all(len(r.payload) <= 8192 for r in parts)
    await b.engine.sync_once()
    assert [f[2] for f in _files(b, Tier.STANDARD, message_id)] == [data]

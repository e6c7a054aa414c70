"""Attachments cross between two devices through the real sync server on loopback (its
SQLite database): the whole client (session, vault, engine, HTTP client with DPoP) on
both sides, tokens from the fake issuer of the server tests.

A PDF and a PNG attached on A arrive byte-identical on B, where an answer cites the PDF
(B indexes it from its bytes: the index does not sync); a sentinel inside the PDF is never
in the server's files or logs; a 5 MB file crosses as several records within the server's
limits; deleting the chat on A removes the attachment on B; a tampered part is refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.attachments.samples import pdf_bytes
from app.chat.attachments import NewAttachment
from app.chat.events import TurnFinished
from app.config import LoadedConfig, parse_config
from app.session import Session
from app.sync.account import SyncAccount
from app.sync.client import SyncClient
from app.sync.dpop import DeviceKey
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.attachment_files import png_bytes
from tests.integration.sync_client.peers import close_sessions
from tests.integration.sync_client.support import LiveServer
from tests.integration.sync_server.support import FakeIssuer, make_settings
from tests.peers.scripted_provider import ScriptedModel, answer
from tests.unit.vault.fake_store import FakeStore

pytestmark = pytest.mark.slow

PASSPHRASE = "correct horse battery staple orbit"
SENTINEL = "sentinel-attachment-9c41d7"
CONFIG = """
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:9/v1', model_name: m,
     context_size: 32768, vision: true}
attachments: {inline_max_chars: 2000}
"""


@pytest.fixture
def issuer() -> FakeIssuer:
    issuer = FakeIssuer()
    issuer.add_key("key-1")
    return issuer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "server")


@pytest.fixture
def server(issuer: FakeIssuer, settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, http_transport=issuer.transport())) as live:
        yield live


async def _device(tmp_path: Path, name: str) -> tuple[Session, ScriptedModel]:
    model = ScriptedModel()
    model.script = answer(f"answer from {name}")
    session = Session(
        LoadedConfig(parse_config(CONFIG, "test", {}, lambda: ["openai"]), None, {}),
        tmp_path / name,
        secret_store=FakeStore(),
        kdf=FLOOR_PARAMS,
        provider_factory=model,
    )
    await session.create_vault(PASSPHRASE)
    return session, model


async def _account(server: LiveServer, issuer: FakeIssuer) -> SyncAccount:
    account = SyncAccount(
        server_url=server.url, account_id="", email=None, sign_in="oidc",
        device_key=DeviceKey.generate(), access_token=issuer.mint("alice", lifetime=3600),
    )  # fmt: skip
    async with SyncClient(account) as client:
        account.account_id = (await client.me()).id
    return account


@pytest.fixture
async def pair(
    tmp_path: Path, server: LiveServer, issuer: FakeIssuer
) -> AsyncIterator[tuple[Session, Session, ScriptedModel]]:
    (a, _), (b, b_model) = await _device(tmp_path, "a"), await _device(tmp_path, "b")
    try:
        await a.sync.sign_in(await _account(server, issuer))
        await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
        await b.sync.sign_in(await _account(server, issuer))
        await b.sync.join(passphrase=PASSPHRASE)
        yield a, b, b_model
    finally:
        await close_sessions((a, b))


def _report_pdf() -> bytes:
    filler = [
        [f"Chapter {n} describes the weather of region {n} in great detail."] * 40
        for n in range(1, 6)
    ]
    pages = [*filler[:3], [f"The launch code is ZEBRA-42 ({SENTINEL})."], *filler[3:]]
    data = pdf_bytes(pages)
    assert SENTINEL.encode() in data  # the test would prove nothing otherwise
    return data


def _server_bytes(settings: Settings) -> bytes:
    files = sorted(p for p in settings.data_dir.rglob("*") if p.is_file())
    return b"".join(p.read_bytes() for p in files)


def _server_db(settings: Settings) -> Path:
    return settings.data_dir / "hushchat-sync.sqlite3"


async def _attachments(session: Session, chat_id: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for attachments in (await session.service.attachments(chat_id)).values():
        for attachment in attachments:
            data = await session.service.attachment_data(attachment.id, max_bytes=1 << 30)
            found[attachment.name] = data
    return found


async def test_a_pdf_and_a_png_arrive_byte_identical_and_are_cited(
    pair: tuple[Session, Session, ScriptedModel],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b, b_model = pair
    report, image = _report_pdf(), png_bytes(6, 4)
    chat = await a.service.create_chat(Tier.PRIVATE)
    files = [
        NewAttachment.from_bytes("report.pdf", report),
        NewAttachment.from_bytes("dot.png", image),
    ]
    async for _event in a.service.send(chat.id, "Keep these", attachments=files):
        pass
    pushed = await a.sync.sync_now()
    assert pushed.tampered == 0
    pulled = await b.sync.sync_now()
    assert pulled.tampered == 0

    assert await _attachments(b, chat.id) == {"report.pdf": report, "dot.png": image}
    # The server holds them sealed: never the text, the names or the hash of the content.
    stored = _server_bytes(settings)
    assert stored, "the server keeps its database under its data directory"
    for secret in (SENTINEL.encode(), b"report.pdf", hashlib.sha256(report).hexdigest().encode()):
        assert secret not in stored
    assert SENTINEL not in caplog.text

    # B answers from the PDF: it indexes the bytes it received (on first use).
    events = [event async for event in b.service.send(chat.id, "What is the launch code?")]
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.message.sources[0] == "report.pdf, p. 4"
    _, request = b_model.requests[-1]
    assert "[report.pdf, p. 4]\nThe launch code is ZEBRA-42" in request.messages[-1].content
    assert SENTINEL not in caplog.text  # neither side logged the file's text


async def test_a_5_mb_file_crosses_goes_with_its_chat_and_a_changed_part_is_refused(
    pair: tuple[Session, Session, ScriptedModel],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, _ = pair
    data = os.urandom(5 * 1024 * 1024 + 123)
    chat = await a.service.create_chat(Tier.STANDARD)
    async for _event in a.service.send(chat.id, "a big file follows"):
        pass
    store = a.service.library.store(Tier.STANDARD)
    question = (await a.service.full_thread(chat.id))[0]

    def attach() -> None:
        store.add_attachment(question.id, io.BytesIO(data), max_size=1 << 30, name="big.bin")

    await a.service.runner.db(attach)
    report = await a.sync.sync_now()
    assert report.pushed >= 7  # 6 parts within the 1 MiB record limit, and the metadata
    with sqlite3.connect(_server_db(settings)) as conn:
        sizes = [row[0] for row in conn.execute("SELECT size FROM records")]
    assert max(sizes) <= settings.max_record_bytes
    await b.sync.sync_now()
    assert await _attachments(b, chat.id) == {"big.bin": data}

    # Deleted on A (and purged): gone on B, bytes and all.
    await a.service.delete_chat(chat.id)
    await a.service.purge_deleted(older_than=-1)
    await a.sync.sync_now()
    await b.sync.sync_now()
    b_store = b.service.library.store(Tier.STANDARD)

    def leftovers() -> tuple[int, int]:
        conn = b_store.sync_state()._conn
        blobs = conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
        rows = conn.execute("SELECT COUNT(*) FROM attachments").fetchone()[0]
        return int(blobs), int(rows)

    assert await b.service.runner.db(leftovers) == (0, 0)
    with sqlite3.connect(_server_db(settings)) as conn:
        live = conn.execute(
            "SELECT COUNT(*) FROM records WHERE kind LIKE 'attachment%' AND NOT deleted"
        ).fetchone()[0]
    assert live == 0  # every attachment record is a tombstone on the server

    # The same two devices: a part the server changed is refused (one setup, not two).
    await _a_tampered_part_is_refused(a, b, settings, caplog)


async def _a_tampered_part_is_refused(
    a: Session, b: Session, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    chat = await a.service.create_chat(Tier.STANDARD)
    files = [NewAttachment.from_bytes("notes.txt", b"short notes\n")]
    async for _event in a.service.send(chat.id, "two files", attachments=files):
        pass
    question = (await a.service.full_thread(chat.id))[0]
    store = a.service.library.store(Tier.STANDARD)
    await a.service.runner.db(
        lambda: store.add_attachment(question.id, io.BytesIO(data), max_size=1 << 30, name="x.bin")
    )
    await a.sync.sync_now()
    with sqlite3.connect(_server_db(settings)) as conn:
        (record_id, payload) = conn.execute(
            "SELECT record_id, payload FROM records WHERE kind = 'attachment_part' "
            "AND NOT deleted AND record_id LIKE 'attpart:%:1'"  # only x.bin has a 2nd part
        ).fetchone()
        changed = bytes(payload[:-1]) + bytes([payload[-1] ^ 1])
        conn.execute("UPDATE records SET payload = ? WHERE record_id = ?", (changed, record_id))
    caplog.set_level(logging.WARNING, logger="app.sync.engine")
    report = await b.sync.sync_now()
    assert report.tampered == 1
    assert f"record {record_id} does not open" in caplog.text
    shown = await _attachments(b, chat.id)
    # The file with the changed part is not shown; the rest of the pull applied.
    assert "x.bin" not in shown
    assert shown.get("notes.txt") == b"short notes\n"

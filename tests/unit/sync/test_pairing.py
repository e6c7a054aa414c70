"""Linking a new device with a pairing code (``app.sync.pairing``) through the in-memory
server: the right code hands over both tiers' keys, a wrong, expired or reused code and
a server that changes a relay record fail on both sides with nothing installed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from app.store.models import Tier, TitleSource
from app.sync.crypto import AccountKeys, RecordTamperedError, SyncKey, open_keys_with_link
from app.sync.engine import SyncReport
from app.sync.pairing import (
    WORDS_PER_CODE,
    LinkOffer,
    LinkResult,
    PairingCode,
    PairingCodeError,
    PairingError,
    PairingExpiredError,
    WrongPairingCodeError,
    _read_keys,
    join_with_code,
    start_link,
)
from app.sync.pairing_words import WORDS
from app.sync.protocol import PushResponse, RecordIn
from app.sync.records import is_pairing_record
from tests.unit.sync.devices import Device
from tests.unit.sync.fake_server import FakeServer


class RecordingServer(FakeServer):
    """The fake server, keeping every pushed payload and optionally changing one record
    (``tamper``: record id suffix -> function of the stored payload) as it stores it."""

    def __init__(self) -> None:
        super().__init__()
        self.pushed: list[RecordIn] = []
        self.tamper: dict[str, Callable[[bytes], bytes]] = {}

    def push(self, device_id: str, records: list[RecordIn], atomic: bool) -> PushResponse:
        self.pushed += records
        response = super().push(device_id, records, atomic)
        for record in records:
            for suffix, change in self.tamper.items():
                stored = self.records.get(record.id)
                if record.id.endswith(suffix) and stored is not None and not stored.deleted:
                    stored.payload = change(stored.payload)
        return response


@pytest.fixture
def server() -> RecordingServer:
    return RecordingServer()


@pytest.fixture
async def devices(server: RecordingServer) -> AsyncIterator[tuple[Device, Device]]:
    """A (set up, with a Standard and a Private chat) and D (a fresh device)."""
    a, d = Device(server, "a"), Device(server, "d")
    for tier, title in ((Tier.STANDARD, "sentinel-std-title"), (Tier.PRIVATE, "sentinel-prv")):
        store = a.library.store(tier)
        chat = store.create_chat(title=title, title_source=TitleSource.USER)
        user = store.add_message(chat.id, "user", f"{title} question", parent_id=None)
        store.add_message(chat.id, "assistant", f"{title} answer", parent_id=user.id)
    await a.setup()
    await a.engine.sync_once()
    yield a, d
    for device in (a, d):
        device.runner.shutdown()


def other_code(code: PairingCode) -> PairingCode:
    """The same session with one word changed."""
    word = WORDS[(WORDS.index(code.words[-1]) + 1) % len(WORDS)]
    return PairingCode(code.session, (*code.words[:-1], word))


async def run_link(
    offer: LinkOffer, d: Device, code: PairingCode | str
) -> tuple[LinkResult | BaseException, SyncReport | BaseException]:
    results = await asyncio.wait_for(
        asyncio.gather(
            offer.wait(),
            join_with_code(d.engine, code, step_timeout=5),
            return_exceptions=True,
        ),
        timeout=30,
    )
    return results[0], results[1]


def pairing_records(server: FakeServer) -> dict[str, bool]:
    """Every relay record on the server: id -> deleted."""
    return {r.id: r.deleted for r in server.records.values() if is_pairing_record(r.id)}


def assert_nothing_installed(d: Device) -> None:
    assert d.held_keys() == []
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        assert d.library.store(tier).sync_state().setting("account_keys") is None
    assert d.dump() == {}


async def test_the_right_code_gives_the_new_device_both_tiers(
    server: RecordingServer, devices: tuple[Device, Device]
) -> None:
    a, d = devices
    offer = await start_link(a.engine, step_timeout=5)
    assert len(str(offer.code).split("-")) == 1 + WORDS_PER_CODE
    result, report = await run_link(offer, d, str(offer.code))
    assert isinstance(result, LinkResult), result
    assert isinstance(report, SyncReport), report
    assert result.device_id == "device-d"
    assert await d.engine.is_set_up()
    assert d.dump() == a.dump()
    assert {chat["tier"] for chat in d.dump().values()} == {"standard", "private"}
    assert sorted(d.held_keys()) == sorted(a.held_keys())
    # Every relay record is deleted; none ever carried a key, the code or a chat.
    records = pairing_records(server)
    assert set(records) == {f"pair:{offer.code.session}:{step}" for step in (
        "offer", "join", "reply", "confirm", "keys", "done",
    )}  # fmt: skip
    assert all(records.values())
    secrets = [*a.held_keys(), *(w.encode() for w in offer.code.words), b"sentinel"]
    for pushed in server.pushed:
        if is_pairing_record(pushed.id):
            for secret in secrets:
                assert secret not in pushed.payload
                assert base64.b64encode(secret) not in pushed.payload
    # A's later syncs skip the relay records quietly; both stay in sync.
    await a.engine.sync_once()
    await d.engine.sync_once()
    assert d.dump() == a.dump()


async def test_a_wrong_code_fails_on_both_sides_and_installs_nothing(
    server: RecordingServer, devices: tuple[Device, Device]
) -> None:
    a, d = devices
    offer = await start_link(a.engine, step_timeout=5)
    result, report = await run_link(offer, d, other_code(offer.code))
    assert isinstance(result, WrongPairingCodeError), result
    assert isinstance(report, WrongPairingCodeError), report
    assert "nothing was sent" in str(result)
    assert "nothing was received" in str(report)
    assert_nothing_installed(d)
    assert all(pairing_records(server).values())
    assert not any(
        is_pairing_record(p.id) and p.id.endswith(":keys") and not p.deleted for p in server.pushed
    )
    # One attempt per code: the right code afterwards is refused too.
    with pytest.raises(PairingExpiredError):
        await join_with_code(d.engine, offer.code, step_timeout=5)
    assert_nothing_installed(d)


async def test_an_expired_code_is_refused(
    server: RecordingServer, devices: tuple[Device, Device]
) -> None:
    a, d = devices
    offer = await start_link(a.engine, lifetime=0.3, step_timeout=5)
    with pytest.raises(PairingExpiredError, match="ten minutes"):
        await asyncio.wait_for(offer.wait(), timeout=10)
    with pytest.raises(PairingExpiredError, match="expired or was used"):
        await join_with_code(d.engine, offer.code, step_timeout=5)
    assert_nothing_installed(d)
    assert all(pairing_records(server).values())


async def test_an_expired_code_whose_device_still_waits_is_refused(
    devices: tuple[Device, Device],
) -> None:
    """The new device checks the expiry the offer names, even if nothing deleted it."""
    a, d = devices
    now = [1_000.0]
    offer = await start_link(a.engine, lifetime=600, clock=lambda: now[0])
    with pytest.raises(PairingExpiredError, match="expired"):
        await join_with_code(d.engine, offer.code, clock=lambda: now[0] + 601)
    await offer.cancel()
    assert_nothing_installed(d)


async def test_a_code_no_device_offers_is_refused_at_once(devices: tuple[Device, Device]) -> None:
    _, d = devices
    with pytest.raises(PairingExpiredError, match="No device offers"):
        await join_with_code(d.engine, PairingCode.generate(42), step_timeout=5)
    assert_nothing_installed(d)


def _change_field(name: str) -> Callable[[bytes], bytes]:
    def change(payload: bytes) -> bytes:
        body = json.loads(payload)
        raw = bytearray(base64.b64decode(body[name]))
        raw[-1] ^= 1
        body[name] = base64.b64encode(bytes(raw)).decode()
        return json.dumps(body).encode()

    return change


@pytest.mark.parametrize(
    ("suffix", "name", "a_error", "d_error"),
    [
        (":keys", "sealed", PairingError, PairingError),
        (":reply", "pake", PairingError, PairingError),
        (":reply", "confirm", WrongPairingCodeError, WrongPairingCodeError),
        (":join", "pake", PairingError, PairingError),
        (":confirm", "confirm", WrongPairingCodeError, PairingError),
    ],
)
async def test_a_server_that_changes_a_relay_record_gets_nothing_installed(
    server: RecordingServer,
    devices: tuple[Device, Device],
    suffix: str,
    name: str,
    a_error: type[Exception],
    d_error: type[Exception],
) -> None:
    a, d = devices
    server.tamper[suffix] = _change_field(name)
    offer = await start_link(a.engine, step_timeout=3)
    result, report = await run_link(offer, d, offer.code)
    assert isinstance(result, a_error), result
    assert isinstance(report, d_error), report
    assert_nothing_installed(d)
    assert all(pairing_records(server).values())


async def test_the_keys_must_be_those_of_the_keys_record(
    server: RecordingServer, devices: tuple[Device, Device]
) -> None:
    a, _ = devices
    engine = a.engine
    account, keys = await engine.runner.db(_keys_of, a)
    stored = server.records["keys"]
    header = engine._header("keys", "keys", stored.revision, False, stored.key_id)
    opened = open_keys_with_link(header, stored.payload, account, keys)
    assert opened.sync_keys == keys
    for tier in keys:
        swapped = {**keys, tier: SyncKey.generate(tier)}
        with pytest.raises(RecordTamperedError, match="not the ones"):
            open_keys_with_link(header, stored.payload, account, swapped)
    with pytest.raises(RecordTamperedError, match="not the ones"):
        open_keys_with_link(header, stored.payload, account, {Tier.STANDARD: keys[Tier.STANDARD]})
    crossed = {Tier.STANDARD: keys[Tier.PRIVATE], Tier.PRIVATE: keys[Tier.STANDARD]}
    with pytest.raises(RecordTamperedError, match="another tier"):
        open_keys_with_link(header, stored.payload, account, crossed)
    changed = bytearray(stored.payload)
    changed[len(changed) // 2] ^= 1
    with pytest.raises(RecordTamperedError):
        open_keys_with_link(header, bytes(changed), account, keys)


def _keys_of(device: Device) -> tuple[AccountKeys, dict[Tier, SyncKey]]:
    return _read_keys(device.engine)


async def test_relay_records_are_skipped_quietly(
    server: RecordingServer, devices: tuple[Device, Device], caplog: pytest.LogCaptureFixture
) -> None:
    a, d = devices
    offer = await start_link(a.engine, step_timeout=5)
    with caplog.at_level(logging.INFO):
        await run_link(offer, d, offer.code)
        await a.engine.sync_once()  # A pulls the relay records and their tombstones
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    # Another unknown record still warns.
    server.push(
        "device-x",
        [RecordIn(id="future:1", kind="future", revision=1, key_id="k", payload=b"x")],
        False,
    )
    with caplog.at_level(logging.INFO):
        await a.engine.sync_once()
    assert "ignoring record future:1 of unexpected kind" in caplog.text


def test_codes_parse_leniently_and_name_what_is_wrong() -> None:
    code = PairingCode.generate(4127)
    assert PairingCode.parse(str(code)) == code
    assert PairingCode.parse("  " + str(code).upper().replace("-", " ") + "\n") == code
    assert "words=<hidden>" in repr(code)
    assert all(word not in repr(code) for word in code.words)
    with pytest.raises(PairingCodeError, match="a number and 3 words"):
        PairingCode.parse("abacus-nimble-tundra")
    with pytest.raises(PairingCodeError, match="1 to 9999"):
        PairingCode.parse("0-abacus-abdomen-able")
    with pytest.raises(PairingCodeError, match="'qwertz' is not a word"):
        PairingCode.parse("12-abacus-qwertz-able")
    assert len(set(WORDS)) == len(WORDS) == 7772
    assert all(word.isalpha() and word.islower() for word in WORDS)


async def test_an_existing_device_must_hold_both_tiers_keys(
    server: RecordingServer, devices: tuple[Device, Device]
) -> None:
    from app.errors import UsageError

    a, d = devices
    with pytest.raises(UsageError, match="does not hold the account's sync keys"):
        await start_link(d.engine)
    a.open(private=False)
    with pytest.raises(UsageError, match="unlock with the"):
        await start_link(a.engine)
    assert pairing_records(server) == {}

"""Fault campaigns: the client sync engine against the real server, broken on purpose.

The server runs as ``python -m sync_server serve`` (SQLite in a temporary directory) on
loopback; its account and device tokens are seeded in its database (a local account,
no identity provider). Clients reach it through :class:`FaultProxy`, which counts the
requests and breaks them when told. Each campaign ends the same way: the source profile
converges (nothing left to push), a second device joins, and it holds exactly the source's
messages — the same ids with the same text, none twice, none missing — and the server
holds every message record once.

* ``sync now`` (``app.session.Session`` in a subprocess) of a profile with thousands of
  unsynced messages is SIGKILLed 20 times during its push (while the server's answer to
  a saved batch is held back, at the n-th push request the proxy sees, or a random
  50-300 ms after the first), then ``hushchat sync now`` runs to its end;
* a new device is SIGKILLed while it joins (fetching or applying pages), then joins;
* the server is SIGKILLed mid-batch three times and restarted on the same database;
* a push is saved but its answer lost, then both devices change the same chat before
  the retry (the same revision with other bytes: a conflict, merged);
* through the proxy, pushes and then long-poll pulls are cut mid-response, stalled past
  the client's timeout and reset (RST): the running engines back off and converge once
  the proxy heals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import app.sync.engine as engine_module
from app.config import Config, LoadedConfig
from app.session import Session
from app.store.chats import ChatStore
from app.sync.account import SyncAccount
from app.sync.client import SyncClient
from app.sync.dpop import DeviceKey
from app.sync.engine import SyncEngine, SyncStatus
from app.sync.errors import SyncOfflineError
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from sync_server.auth.oidc import token_hash
from sync_server.db import Database
from sync_server.models import Account, LocalToken
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.benchmarks._records import thread_chat
from tests.homes import home_env
from tests.integration.sync_client.fault_proxy import FaultMode, FaultProxy
from tests.integration.sync_client.support import free_port
from tests.unit.vault.fake_store import FakeStore

pytestmark = pytest.mark.slow

HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "correct horse battery staple faults"
ACCOUNT_ID = "f" * 32
PUSH = b"POST /v1/sync/push"
PULL = b"GET /v1/sync/changes"
_READY_SECONDS = 30.0

Messages = dict[str, str]  # message id -> text


# ----------------------------------------------------------------- the server


@dataclass(frozen=True)
class Credentials:
    token: str
    key: DeviceKey


class ServerProcess:
    """``hushchat-sync serve`` on loopback as a subprocess, restartable on its database."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self._env = env
        self._log = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def database(self) -> Path:
        return self.data_dir / "hushchat-sync.sqlite3"

    async def start(self) -> None:
        self.port = free_port()
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "sync_server", "serve", "--port", str(self.port)],
                env=self._env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + _READY_SECONDS
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"the sync server exited: {self._log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{self.port}/readyz")).is_success:
                        return
                await asyncio.sleep(0.05)
        self.stop()
        raise AssertionError("the sync server did not become ready")

    def kill(self) -> None:
        """SIGKILL (TerminateProcess on Windows): no shutdown, whatever it was doing."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def message_records(self) -> tuple[int, int]:
        """(message records, distinct message record ids) in the server's database."""
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            row = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT record_id) FROM records WHERE kind = 'message'"
            ).fetchone()
        return int(row[0]), int(row[1])


async def _seed(settings: Settings, devices: int) -> list[Credentials]:
    """One account with ``devices`` devices, each with an access token (2 h)."""
    db = Database(settings)
    try:
        await db.migrate()
        now = datetime.now(UTC)
        found = []
        async with db.write() as session:
            session.add(
                Account(
                    id=ACCOUNT_ID, issuer="local", subject="faults", email=None,
                    email_verified=False, last_seq=0, created_at=now,
                )
            )  # fmt: skip
            await session.flush()
            for _ in range(devices):
                credentials = Credentials(
                    f"hcl_{uuid.uuid4().hex}{uuid.uuid4().hex}", DeviceKey.generate()
                )
                session.add(
                    LocalToken(
                        token_hash=token_hash(credentials.token), account_id=ACCOUNT_ID,
                        device_id=credentials.key.device_id, kind="access",
                        family_id=uuid.uuid4().hex, auth_time=now,
                        expires_at=now + timedelta(hours=2),
                    )
                )  # fmt: skip
                found.append(credentials)
        return found
    finally:
        await db.close()


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, list[Credentials]]]:
    """A stopped server with one account of three devices; stopped after the test."""
    values = generate_secrets()
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    options: dict[str, Any] = {k.lower(): v for k, v in values.items()}
    settings = Settings(**options, data_dir=data_dir)
    devices = await _seed(settings, 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    env.update({f"HUSHCHAT_SYNC_{k}": v for k, v in values.items()})
    env.update(
        HUSHCHAT_SYNC_DATA_DIR=str(data_dir),
        HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED="true",
        HUSHCHAT_SYNC_SMTP_HOST="127.0.0.1",
        HUSHCHAT_SYNC_RATE_LIMITS_ENABLED="false",
        HUSHCHAT_SYNC_LOG_LEVEL="WARNING",
    )
    server = ServerProcess(data_dir, env)
    try:
        yield server, devices
    finally:
        server.stop()


def _account(url: str, credentials: Credentials, name: str) -> SyncAccount:
    return SyncAccount(
        server_url=url, account_id=ACCOUNT_ID, email=None, sign_in="local",
        device_key=credentials.key, access_token=credentials.token, device_name=name,
    )  # fmt: skip


# ----------------------------------------------------------------- profiles


def _texts(rng: random.Random, count: int, tag: str) -> list[str]:
    """Questions (100-400 characters) and answers (400-3,000), each unique."""
    words = ("sync", "vault", "answer", "model", "token", "offline", "merge", "river")
    out = []
    for n in range(count):
        size = rng.randint(100, 400) if n % 2 == 0 else rng.randint(400, 3000)
        body = " ".join(rng.choice(words) for _ in range(size // 6))
        out.append(f"{tag}-{n}: {body}"[:size])
    return out


def _add_chats(store: ChatStore, rng: random.Random, chats: int, per_chat: int, tag: str) -> None:
    for c in range(chats):
        thread_chat(store, _texts(rng, per_chat, f"{tag}{c}"), title=f"{tag} chat {c}")


def _messages(session: Session) -> Messages:
    """Every message of the Standard and Private chats (on the database thread)."""
    found: Messages = {}
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        store = session.library.store(tier)
        for chat in store.list_chats():
            for message in store.all_messages(chat.id):
                assert message.id not in found, "a message id twice"
                found[message.id] = message.content
    return found


async def _new_profile(path: Path, *, secret_store: bool = True) -> Session:
    session = Session(
        LoadedConfig(Config(), None, {}),
        path,
        secret_store=FakeStore() if secret_store else None,
        kdf=FLOOR_PARAMS,
    )
    await session.create_vault(PASSPHRASE)
    return session


async def _fill(
    session: Session, seed: int, standard: tuple[int, int], private: tuple[int, int]
) -> None:
    rng = random.Random(seed)

    def fill() -> None:
        _add_chats(session.library.store(Tier.STANDARD), rng, *standard, "s")
        _add_chats(session.library.store(Tier.PRIVATE), rng, *private, "p")

    await session.runner.db(fill)


async def _close(session: Session) -> None:
    if session.is_unlocked:
        await session.sync.close()
    await asyncio.get_running_loop().run_in_executor(None, session.close)


@contextlib.asynccontextmanager
async def _sessions() -> AsyncIterator[list[Session]]:
    opened: list[Session] = []
    try:
        yield opened
    finally:
        for session in opened:
            await _close(session)


async def _joined_messages(tmp: Path, url: str, credentials: Credentials) -> Messages:
    """A new device joins the account and fetches everything: its messages."""
    b = await _new_profile(tmp)
    try:
        await b.sync.sign_in(_account(url, credentials, "B"))
        report = await b.sync.join(passphrase=PASSPHRASE)
        assert report.tampered == 0 and report.deferred == 0, report
        return await b.runner.db(_messages, b)
    finally:
        await _close(b)


def _assert_same(source: Messages, copy: Messages) -> None:
    missing = source.keys() - copy.keys()
    extra = copy.keys() - source.keys()
    assert not missing, f"{len(missing)} messages lost"
    assert not extra, f"{len(extra)} messages that the source does not have"
    changed = [m for m in source if source[m] != copy[m]]
    assert not changed, f"{len(changed)} messages with other text"
    assert len(set(copy.values())) == len(copy), "the same text twice"


# ----------------------------------------------------------------- kill -9 of the client


def _cli_env(home: Path, profile: Path) -> dict[str, str]:
    return home_env(home, profile, home / "config.yml")


def _sync_now(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``hushchat sync now`` in the background (output in files: no pipe can fill up)."""
    with (home / "out.txt").open("wb") as out, (home / "err.txt").open("wb") as err:
        process = subprocess.Popen(
            [str(HUSHCHAT), "sync", "now", "--passphrase-stdin"],
            stdin=subprocess.PIPE, stdout=out, stderr=err, env=env,
        )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(PASSPHRASE.encode() + b"\n")
    process.stdin.close()
    return process


async def _exited(process: subprocess.Popen[bytes], seconds: float) -> int:
    """The exit status of ``process``, waiting without blocking the event loop."""
    deadline = time.monotonic() + seconds
    while (status := process.poll()) is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)
            raise AssertionError(f"still running after {seconds} s")
        await asyncio.sleep(0.02)
    return status


async def _kill_during_push(
    process: subprocess.Popen[bytes], proxy: FaultProxy, nth: int, delay: float
) -> bool:
    """SIGKILL ``process`` ``delay`` s after the proxy saw its ``nth`` push (``nth`` 0: once
    the proxy holds back an answer), and at the latest when it sees the push after the
    next (so a fast machine does not finish the push between kills); False when it ended
    by itself first."""
    target = proxy.seen(PUSH) + nth
    held = proxy.answers_held + (nth == 0)
    deadline = time.monotonic() + 60
    while proxy.seen(PUSH) < target or proxy.answers_held < held:
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "no push within 60 s"
        await asyncio.sleep(0.005)
    with contextlib.suppress(TimeoutError):
        await proxy.wait_seen(PUSH, target + 2, delay)
    if process.poll() is not None:
        return False
    process.kill()  # SIGKILL; TerminateProcess on Windows
    process.wait(timeout=10)
    return True


async def test_sync_now_killed_20_times_during_its_push_loses_and_doubles_nothing(
    seeded: tuple[ServerProcess, list[Credentials]], tmp_path: Path
) -> None:
    server, devices = seeded
    await server.start()
    home = tmp_path / "a"
    (home / "tmp").mkdir(parents=True)
    (home / "config.yml").write_text("llms: []\n", encoding="utf-8")
    profile = home / "profile"
    async with FaultProxy(server.port) as proxy:
        proxy.watch(PUSH)
        a = await _new_profile(profile, secret_store=False)
        try:
            await _fill(a, 1, standard=(30, 100), private=(2, 60))
            await a.sync.sign_in(_account(proxy.url, devices[0], "A"))
            await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
        finally:
            await _close(a)

        env = _cli_env(home, profile)
        rng = random.Random(20261130)
        kills = 0
        for attempt in range(20):
            if attempt % 3 == 0:
                # The server saves the batch, its answer is held back: the client dies not
                # knowing, and the next run sends the same batch again.
                proxy.arm(PUSH, "stall", times=1)
                nth, delay = 0, rng.uniform(0.0, 0.05)
            elif attempt % 3 == 1:  # at the 1st, 2nd or 3rd push request, within 30 ms
                nth, delay = 1 + (attempt // 3) % 3, rng.uniform(0.0, 0.03)
            else:  # 50-300 ms into the push
                nth, delay = 1, rng.uniform(0.05, 0.3)
            process = _driver(home, env)
            try:
                killed = await _kill_during_push(process, proxy, nth, delay)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
            proxy.heal()
            assert killed, (
                f"sync now ended before kill {attempt + 1} (exit {process.returncode}): "
                + (home / "err.txt").read_text()[-1500:]
            )
            kills += 1
        assert kills == 20

        clean = _sync_now(home, env)
        # Not Popen.wait: the proxy runs on this event loop.
        assert await _exited(clean, 120) == 0, (home / "err.txt").read_text()[-1500:]

        a = await _reopen(profile)
        try:
            assert await (await a.sync.engine()).backlog() == (0, 0)
            source = await a.runner.db(_messages, a)
        finally:
            await _close(a)
        assert len(source) == 30 * 100 + 2 * 60
        copy = await _joined_messages(tmp_path / "b", proxy.url, devices[1])
    _assert_same(source, copy)
    assert server.message_records() == (len(source), len(source))


async def _reopen(profile: Path) -> Session:
    session = Session(LoadedConfig(Config(), None, {}), profile, secret_store=FakeStore())
    await session.unlock_with_passphrase(PASSPHRASE)
    return session


_SYNC_DRIVER = """
import asyncio, sys
from pathlib import Path
from app.config import Config, LoadedConfig
from app.session import Session

async def main() -> None:
    session = Session(LoadedConfig(Config(), None, {}), Path(sys.argv[1]))
    await session.unlock_with_passphrase(sys.stdin.readline().rstrip("\\n"))
    try:
        if await session.sync.is_set_up():  # what `sync login` does on a joined profile
            await session.sync.sync_now()
        else:
            await session.sync.join(passphrase=sys.argv[2])
    finally:
        await session.sync.close()
        session.close()

asyncio.run(main())
"""


def _driver(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """What ``sync login`` (joined or not) and ``sync now`` do, without the CLI's start-up
    (a second less per run): unlock, then sync now, or join when not joined yet."""
    with (home / "out.txt").open("wb") as out, (home / "err.txt").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", _SYNC_DRIVER, str(home / "profile"), PASSPHRASE],
            stdin=subprocess.PIPE, stdout=out, stderr=err, env=env,
        )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(PASSPHRASE.encode() + b"\n")
    process.stdin.close()
    return process


async def test_a_new_device_killed_while_it_joins_then_joins(
    seeded: tuple[ServerProcess, list[Credentials]], tmp_path: Path
) -> None:
    server, devices = seeded
    await server.start()
    async with FaultProxy(server.port) as proxy, _sessions() as opened:
        proxy.watch(PULL)
        a = await _new_profile(tmp_path / "a")
        opened.append(a)
        await _fill(a, 4, standard=(15, 100), private=(1, 40))
        await a.sync.sign_in(_account(proxy.url, devices[0], "A"))
        await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
        await a.sync.sync_now()
        source = await a.runner.db(_messages, a)

        home = tmp_path / "b"
        (home / "tmp").mkdir(parents=True)
        b = await _new_profile(home / "profile", secret_store=False)
        try:
            await b.sync.sign_in(_account(proxy.url, devices[1], "B"))
        finally:
            await _close(b)
        env = _cli_env(home, home / "profile")
        rng = random.Random(5)
        kills = 0
        for _ in range(4):
            process = _driver(home, env)
            try:
                target, deadline = proxy.seen(PULL) + 1, time.monotonic() + 60
                while proxy.seen(PULL) < target and process.poll() is None:
                    assert time.monotonic() < deadline, "no pull within 60 s"
                    await asyncio.sleep(0.005)
                await asyncio.sleep(rng.uniform(0.0, 0.3))  # fetching or applying a page
                if process.poll() is not None:
                    break  # joined before this kill: a fast machine
                process.kill()  # SIGKILL; TerminateProcess on Windows
                kills += 1
            finally:
                await _exited(process, 30)
        assert kills >= 2, (home / "err.txt").read_text()[-1500:]
        clean = _driver(home, env)
        assert await _exited(clean, 120) == 0, (home / "err.txt").read_text()[-1500:]
        b = await _reopen(home / "profile")
        opened.append(b)
        assert await b.sync.is_set_up()
        copy = await b.runner.db(_messages, b)
    _assert_same(source, copy)


# ----------------------------------------------------------------- kill -9 of the server


async def test_server_killed_mid_batch_and_restarted_on_its_database_converges(
    seeded: tuple[ServerProcess, list[Credentials]], tmp_path: Path
) -> None:
    server, devices = seeded
    await server.start()
    async with FaultProxy(server.port) as proxy, _sessions() as opened:
        a = await _new_profile(tmp_path / "a")
        opened.append(a)
        await _fill(a, 2, standard=(12, 100), private=(1, 40))
        await a.sync.sign_in(_account(proxy.url, devices[0], "A"))
        await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
        for nth, delay in ((1, 0.0), (2, 0.01), (3, 0.03)):
            syncing = asyncio.ensure_future(a.sync.sync_now())
            target = proxy.seen(PUSH) + nth
            await proxy.wait_seen(PUSH, target, 60)
            await asyncio.sleep(delay)
            server.kill()
            with pytest.raises(SyncOfflineError):
                await asyncio.wait_for(syncing, timeout=60)
            await server.start()
            proxy.retarget(server.port)
        report = await a.sync.sync_now()
        assert report.pushed > 0
        assert await (await a.sync.engine()).backlog() == (0, 0)
        source = await a.runner.db(_messages, a)
        copy = await _joined_messages(tmp_path / "b", proxy.url, devices[1])
    _assert_same(source, copy)
    assert server.message_records() == (len(source), len(source))


# ----------------------------------------------------------------- cut, stall, reset


_TIMEOUT = 1.5  # the clients' timeout; the long poll waits 1 s on top
_LONG_POLL = 1.0


@dataclass
class _Device:
    session: Session
    engine: SyncEngine
    client: SyncClient
    proxy: FaultProxy
    states: list[SyncStatus]


@contextlib.asynccontextmanager
async def _running(device: _Device) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(device.engine.run(stop))
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=15)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise AssertionError("the engine did not stop within 15 s") from None


async def _engine_device(
    path: Path, server: ServerProcess, credentials: Credentials, name: str
) -> _Device:
    session = await _new_profile(path)
    proxy = await FaultProxy(server.port).start()
    account = _account(proxy.url, credentials, name)
    client = SyncClient(account, timeout=_TIMEOUT)
    engine = SyncEngine(
        session.library, client, ACCOUNT_ID, runner=session.runner,
        long_poll=_LONG_POLL, debounce=0.05,
    )  # fmt: skip
    engine.attach(session.service)
    states: list[SyncStatus] = []
    engine.add_status_listener(lambda status: states.append(status.state))
    return _Device(session, engine, client, proxy, states)


async def _until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def pair(
    seeded: tuple[ServerProcess, list[Credentials]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[_Device, _Device]]:
    """A (set up, some chats) and B (joined), each through its own proxy."""
    server, devices = seeded
    # Backoff starts at 0.1 s instead of 1 s (same doubling and jitter): the campaign
    # makes a dozen failures and must stay short.
    monkeypatch.setattr(engine_module, "BACKOFF_FIRST", 0.1)
    await server.start()
    made: list[_Device] = []
    try:
        a = await _engine_device(tmp_path / "a", server, devices[0], "A")
        made.append(a)
        await _fill(a.session, 3, standard=(3, 20), private=(1, 10))
        await a.engine.setup_keys(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
        await a.engine.sync_once()
        b = await _engine_device(tmp_path / "b", server, devices[1], "B")
        made.append(b)
        await b.engine.join_with_passphrase(PASSPHRASE)
        yield a, b
    finally:
        for device in made:
            device.engine.detach()
            await device.client.aclose()
            await device.proxy.stop()
            await asyncio.get_running_loop().run_in_executor(None, device.session.close)


_CASES: list[tuple[str, bytes, FaultMode]] = [
    (side, pattern, mode)
    for side, pattern in (("push", PUSH), ("pull", PULL))
    for mode in ("cut", "stall", "reset")
]


async def _break_then_heal(
    a: _Device, b: _Device, side: str, pattern: bytes, mode: FaultMode, tag: str
) -> None:
    """A writes a chat while ``side`` is broken by ``mode``; the broken engine retries
    (backing off), then the proxy heals and both converge."""
    # Pushes break on A's way to the server, pulls (long polls included) on B's.
    broken = a if side == "push" else b
    before = broken.proxy.faults_done[mode]
    broken.states.clear()
    broken.proxy.arm(pattern, mode)
    rng = random.Random(tag)
    store = a.session.library.store(Tier.STANDARD)
    await a.session.runner.db(lambda: thread_chat(store, _texts(rng, 6, tag), title=tag))
    a.engine.notify_local_change()

    async def retried() -> bool:
        return broken.proxy.faults_done[mode] >= before + 2

    # The engine tries, fails, backs off, tries again (and fails again).
    await _until(retried, 30, f"{tag}: a second attempt")
    assert SyncStatus.OFFLINE in broken.states, (tag, broken.states)
    broken.proxy.heal()

    async def converged() -> bool:
        source = await a.session.runner.db(_messages, a.session)
        copy = await b.session.runner.db(_messages, b.session)
        return source == copy and await a.engine.backlog() == (0, 0)

    await _until(converged, 20, f"{tag}: converge after the heal")


async def test_cut_stall_and_reset_exchanges_then_heal_converge(
    pair: tuple[_Device, _Device],
) -> None:
    a, b = pair
    async with _running(a), _running(b):
        for number, (side, pattern, mode) in enumerate(_CASES):
            await _break_then_heal(a, b, side, pattern, mode, f"{side}-{mode}-{number}")
        assert a.engine.status.state in (SyncStatus.IDLE, SyncStatus.SYNCING)
        source = await a.session.runner.db(_messages, a.session)
        copy = await b.session.runner.db(_messages, b.session)
    _assert_same(source, copy)
    assert len(source) == 3 * 20 + 10 + 6 * len(_CASES)


async def _title(device: _Device, chat_id: str) -> str:
    return (await device.session.service.chat(chat_id)).title


async def test_a_lost_answer_then_new_changes_before_the_retry_lose_nothing(
    pair: tuple[_Device, _Device],
) -> None:
    """The server saved A's rename but A never heard (the answer held back past A's
    timeout); A renames again and B renames too before A retries: A's retry carries the
    same revision with other bytes (a conflict, not a duplicate) and both end on the last
    rename."""
    a, b = pair
    chat_id = next(c.id for c in await a.session.service.list_chats() if c.tier is Tier.STANDARD)
    await a.session.service.rename(chat_id, "first title on A")
    a.proxy.arm(PUSH, "stall", times=1)
    with pytest.raises(SyncOfflineError):
        await a.engine.sync_once()
    assert a.proxy.answers_held == 1, "the server answered the push (and saved it)"
    a.proxy.heal()

    await b.engine.sync_once()
    assert await _title(b, chat_id) == "first title on A"
    await asyncio.sleep(0.02)
    await b.session.service.rename(chat_id, "title on B")
    await b.engine.sync_once()
    await asyncio.sleep(0.02)
    await a.session.service.rename(chat_id, "second title on A")
    store = a.session.library.store(Tier.STANDARD)
    await a.session.runner.db(lambda: thread_chat(store, ["late question", "late answer"]))

    await a.engine.sync_once()
    await b.engine.sync_once()
    await a.engine.sync_once()
    assert await a.engine.backlog() == (0, 0)
    assert await b.engine.backlog() == (0, 0)
    assert await _title(a, chat_id) == await _title(b, chat_id) == "second title on A"
    source = await a.session.runner.db(_messages, a.session)
    copy = await b.session.runner.db(_messages, b.session)
    _assert_same(source, copy)
    assert {"late question", "late answer"} <= set(copy.values())

"""Client-side sync figures (DESIGN §8): a new device's first sync, and A→B propagation.

The real server (``python -m sync_server serve``, SQLite in a temporary directory, one
worker) runs on loopback; one account with two devices is seeded in its database (local
access tokens, no identity provider). Both devices are whole profiles (vault, library,
chat service, ``SyncService`` with its default HTTP client and 25 s long poll), in this
process, talking HTTP to the server:

* **Initial sync**: device A holds ``CHATS`` x ``MESSAGES_PER_CHAT`` messages (questions of
  100-400 characters, answers of 400-3,000) and pushes them (its upload is printed, no
  budget). Device B, a new profile, joins with the passphrase (opening the keys record
  with the floor Argon2id parameters, then pulling and applying every record): wall time
  (budget ≤ 10 s) and records/s.
* **Propagation**: both run their background loop (push shortly after a local change,
  long-poll pull). ``PROPAGATION_ROUNDS`` times, A renames a chat; the time from the
  rename to B's chat service announcing that chat's new title (applied in B's database),
  p50 and p99 (budget ≤ 2 s; the 0.3 s push debounce is part of it).

Bounded: fixed sizes, a timeout on every wait, the server stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.chat.events import ChatChanged, ChatRenamed
from app.config import Config, LoadedConfig
from app.session import Session
from app.sync.account import SyncAccount
from app.sync.engine import SyncStatus
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.benchmarks._records import thread_chat
from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.benchmarks.bench_sync import (
    Credentials,
    _percentile,
    _seed,
    _seed_second_device,
    _Server,
)
from tests.unit.vault.fake_store import FakeStore

CHATS = 100
MESSAGES_PER_CHAT = 100
INITIAL_BUDGET_S = 10.0
PROPAGATION_ROUNDS = 30
PROPAGATION_BUDGET_MS = 2000.0
ROUND_TIMEOUT = 15.0
PASSPHRASE = "correct horse battery staple bench"
ACCOUNT_ID = f"{0:032x}"  # the first account _seed makes
_WORDS = ("sync", "vault", "answer", "model", "token", "offline", "merge", "river", "lamp")


def _texts(rng: random.Random, count: int) -> list[str]:
    out = []
    for n in range(count):
        size = rng.randint(100, 400) if n % 2 == 0 else rng.randint(400, 3000)
        out.append(" ".join(rng.choice(_WORDS) for _ in range(size // 6))[:size])
    return out


async def _profile(path: Path) -> Session:
    session = Session(
        LoadedConfig(Config(), None, {}), path, secret_store=FakeStore(), kdf=FLOOR_PARAMS
    )
    await session.create_vault(PASSPHRASE)
    return session


def _account(url: str, credentials: Credentials, name: str) -> SyncAccount:
    token, key = credentials
    return SyncAccount(
        server_url=url, account_id=ACCOUNT_ID, email=None, sign_in="local",
        device_key=key, access_token=token, device_name=name,
    )  # fmt: skip


async def _close(session: Session) -> None:
    if session.is_unlocked:
        await session.sync.close()
    await asyncio.get_running_loop().run_in_executor(None, session.close)


@contextlib.asynccontextmanager
async def _server(workdir: Path) -> AsyncIterator[tuple[str, Credentials, Credentials]]:
    values = generate_secrets()
    options: dict[str, Any] = {k.lower(): v for k, v in values.items()}
    settings = Settings(**options, data_dir=workdir / "server")
    first = (await _seed(settings, 1))[0]
    second = await _seed_second_device(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env.update({f"HUSHCHAT_SYNC_{k}": v for k, v in values.items()})
    env.update(
        HUSHCHAT_SYNC_DATA_DIR=str(settings.data_dir),
        HUSHCHAT_SYNC_LOCAL_ACCOUNTS_ENABLED="true",
        HUSHCHAT_SYNC_SMTP_HOST="127.0.0.1",
        HUSHCHAT_SYNC_RATE_LIMITS_ENABLED="false",
        HUSHCHAT_SYNC_LOG_LEVEL="WARNING",
    )
    server = _Server(env, workdir / "server.log", 1)
    try:
        await server.wait_ready()
        yield server.url, first, second
    finally:
        server.stop()


async def _propagation(a: Session, b: Session) -> list[float]:
    """Seconds from a rename on A to B's service announcing it, per round."""
    chat_id = (await a.service.list_chats())[0].id
    renamed = asyncio.Event()

    def seen(event: ChatChanged) -> None:
        if event == ChatRenamed(chat_id):
            renamed.set()

    unsubscribe = b.service.changes.subscribe(seen)
    delays: list[float] = []
    try:
        for number in range(PROPAGATION_ROUNDS):
            renamed.clear()
            started = time.perf_counter()
            await a.service.rename(chat_id, f"Renamed on A, round {number}")
            try:
                await asyncio.wait_for(renamed.wait(), ROUND_TIMEOUT)
            except TimeoutError:
                raise BenchmarkUnavailableError(
                    f"a rename on A did not reach B within {ROUND_TIMEOUT:.0f} s "
                    f"(A: {a.sync.status.state}, B: {b.sync.status.state})"
                ) from None
            delays.append(time.perf_counter() - started)
            title = next(c.title for c in await b.service.list_chats() if c.id == chat_id)
            if title != f"Renamed on A, round {number}":
                raise BenchmarkUnavailableError("B announced a rename it does not show")
            await asyncio.sleep(0.2)  # B's next long poll is waiting again
    finally:
        unsubscribe()
    return delays


async def _all() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-sync-client-") as tmp:
        workdir = Path(tmp)
        async with _server(workdir) as (url, first, second):
            a = await _profile(workdir / "a")
            b: Session | None = None
            try:
                rng = random.Random(20261130)
                store = a.library.store(Tier.STANDARD)

                def fill() -> None:
                    for n in range(CHATS):
                        thread_chat(store, _texts(rng, MESSAGES_PER_CHAT), title=f"Chat {n}")

                await a.runner.db(fill)
                await a.sync.sign_in(_account(url, first, "A"))
                await a.sync.set_up(passphrase=PASSPHRASE, recovery_secret=None, kdf=FLOOR_PARAMS)
                started = time.perf_counter()
                pushed = await a.sync.sync_now()
                upload = time.perf_counter() - started
                if await (await a.sync.engine()).backlog() != (0, 0):
                    raise BenchmarkUnavailableError("device A did not upload everything")
                messages = CHATS * MESSAGES_PER_CHAT
                rows.append(
                    Row(
                        f"sync client: A uploads {messages:,} messages",
                        pushed.pushed / upload,
                        "records/s",
                        note=f"{pushed.pushed:,} records in {upload:.1f} s",
                    )
                )

                b = new = await _profile(workdir / "b")
                await b.sync.sign_in(_account(url, second, "B"))
                started = time.perf_counter()
                joined = await b.sync.join(passphrase=PASSPHRASE)
                initial = time.perf_counter() - started
                count = await b.runner.db(lambda: new.library.store(Tier.STANDARD).count_messages())
                if count != messages or joined.tampered or joined.deferred:
                    raise BenchmarkUnavailableError(
                        f"device B holds {count} of {messages} messages after joining"
                    )
                tag = f"sync client: new device's initial sync of {messages:,} messages"
                rows += [
                    Row(
                        f"{tag}: wall time",
                        initial,
                        "s",
                        INITIAL_BUDGET_S,
                        note=f"{CHATS} chats x {MESSAGES_PER_CHAT}, join with the passphrase",
                    ),
                    Row(f"{tag}: rate", joined.pulled / initial, "records/s"),
                ]

                if not (await a.sync.start() and await b.sync.start()):
                    raise BenchmarkUnavailableError("the background sync did not start")
                await asyncio.sleep(1.0)  # both are idle, B's long poll is waiting
                if SyncStatus.SIGNED_OUT in (a.sync.status.state, b.sync.status.state):
                    raise BenchmarkUnavailableError("a device was signed out")
                delays = await _propagation(a, new)
                tag = "sync client: A->B propagation, two running engines"
                rows += [
                    Row(f"{tag}: p50", statistics.median(delays) * 1000, "ms"),
                    Row(
                        f"{tag}: p99",
                        _percentile(delays, 0.99) * 1000,
                        "ms",
                        PROPAGATION_BUDGET_MS,
                        note=f"{PROPAGATION_ROUNDS} renames, long poll, 0.3 s debounce",
                    ),
                ]
            finally:
                for session in (a, b):
                    if session is not None:
                        await _close(session)
    return rows


def run() -> list[Row]:
    """A new device's initial sync of 10,000 messages and A→B propagation."""
    return asyncio.run(_all())

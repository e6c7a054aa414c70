"""Password sign-in under attack: backoff per e-mail address, per-address limits keyed on
the IPv6 /64, and a bound on the Argon2 computations running at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from sync_server.app import create_app
from sync_server.auth.local import LocalAccounts
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.ratelimit import RateLimiter, SignInBackoff
from tests.integration.sync_server.support import client_from, make_settings, running
from tests.integration.sync_server.test_local_sign_in import CHEAP, DEVICE, PASSWORD, KeptMail

EMAIL = "alice@example.org"
WRONG = "a wrong password!"
Make = Callable[..., tuple[LocalAccounts, KeptMail]]


@pytest.fixture
async def db(tmp_path: Path, database_url: str | None) -> AsyncIterator[Database]:
    (tmp_path / "data").mkdir()
    database = Database(make_settings(tmp_path, database_url))
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def accounts(tmp_path: Path, database_url: str | None, db: Database) -> Make:
    """``accounts(**settings)`` → LocalAccounts with a backoff on in-memory counters."""

    def make(**overrides: Any) -> tuple[LocalAccounts, KeptMail]:
        settings = make_settings(
            tmp_path, database_url, local_accounts_enabled=True, **{**CHEAP, **overrides}
        )
        backoff = SignInBackoff(
            RateLimiter(settings).storage,
            "a-test-secret-of-at-least-32-characters",
            free_attempts=settings.sign_in_backoff_free_attempts,
            max_seconds=settings.sign_in_backoff_max_seconds,
        )
        mail = KeptMail(settings)
        return LocalAccounts(settings, db, mail, backoff), mail

    return make


class HashCounter:
    """Replaces ``PasswordHasher.verify``: counts calls and the most running at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float = 0.0) -> None:
        self.calls = 0
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._seconds = seconds
        original = PasswordHasher.verify

        def verify(hasher: PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
            with self._lock:
                self.calls += 1
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                time.sleep(self._seconds)
                return original(hasher, stored, password)
            finally:
                with self._lock:
                    self.active -= 1

        monkeypatch.setattr(PasswordHasher, "verify", verify)


async def _outcome(local: LocalAccounts, email: str, password: str) -> tuple[int, str]:
    try:
        await local.sign_in(email, password, DEVICE)
    except ProblemError as exc:
        return exc.status, exc.headers.get("Retry-After", "")
    return 200, ""


async def test_failed_sign_ins_back_off_per_address(
    accounts: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, mail = accounts(sign_in_backoff_free_attempts=3, sign_in_backoff_max_seconds=2)
    await local.signup(EMAIL, PASSWORD)
    await local.verify_email(mail.code("verify"))
    hashes = HashCounter(monkeypatch)
    # Three free failures, and the fourth starts a 1 s wait.
    assert [await _outcome(local, EMAIL, WRONG) for _ in range(4)] == [(401, "")] * 4
    # While it lasts, even the right password is refused, before any hashing.
    calls = hashes.calls
    assert await _outcome(local, EMAIL, PASSWORD) == (429, "1")
    assert hashes.calls == calls
    # Another address is not affected.
    assert await _outcome(local, "bob@example.org", WRONG) == (401, "")
    await asyncio.sleep(1.1)
    assert await _outcome(local, EMAIL, WRONG) == (401, "")  # the next wait doubles ...
    assert await _outcome(local, EMAIL, PASSWORD) == (429, "2")
    await asyncio.sleep(2.1)
    assert await _outcome(local, EMAIL, WRONG) == (401, "")
    assert await _outcome(local, EMAIL, PASSWORD) == (429, "2")  # ... up to the maximum
    await asyncio.sleep(2.1)
    assert await _outcome(local, EMAIL, PASSWORD) == (200, "")
    # Success clears the count: three free failures again.
    assert [await _outcome(local, EMAIL, WRONG) for _ in range(3)] == [(401, "")] * 3


async def test_unknown_addresses_back_off_like_known_ones(accounts: Make) -> None:
    local, mail = accounts(sign_in_backoff_free_attempts=2, sign_in_backoff_max_seconds=60)
    await local.signup(EMAIL, PASSWORD)
    await local.verify_email(mail.code("verify"))
    known = [await _outcome(local, EMAIL, WRONG) for _ in range(4)]
    unknown = [await _outcome(local, "nobody@example.org", WRONG) for _ in range(4)]
    assert known == unknown == [(401, ""), (401, ""), (401, ""), (429, "1")]


async def test_concurrent_sign_ins_never_hash_more_than_the_bound(
    accounts: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, mail = accounts(argon2_max_concurrent=2, argon2_max_waiting=50)
    await local.signup(EMAIL, PASSWORD)
    await local.verify_email(mail.code("verify"))
    hashes = HashCounter(monkeypatch, seconds=0.05)
    outcomes = await asyncio.gather(
        *(_outcome(local, EMAIL if n % 2 else f"u{n}@example.org", PASSWORD) for n in range(16))
    )
    assert sorted(status for status, _ in outcomes) == [200] * 8 + [401] * 8
    assert hashes.calls == 16
    assert hashes.peak == 2


async def test_sign_ins_beyond_the_queue_are_told_to_come_back(
    accounts: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, _ = accounts(argon2_max_concurrent=1, argon2_max_waiting=2)
    hashes = HashCounter(monkeypatch, seconds=0.2)
    outcomes = await asyncio.gather(
        *(_outcome(local, f"u{n}@example.org", WRONG) for n in range(8))
    )
    busy = [outcome for outcome in outcomes if outcome[0] == 503]
    assert busy and all(retry == "1" for _, retry in busy)
    assert len(busy) + outcomes.count((401, "")) == 8
    assert hashes.peak == 1


async def test_sign_in_limit_counts_an_ipv6_64_as_one_address(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        local_accounts_enabled=True,
        smtp_host="127.0.0.1",
        rate_limit_sign_in="2/minute",
        **CHEAP,
    )
    app = create_app(settings)
    body = {"email": "nobody@example.org", "password": WRONG, "device_id": DEVICE}

    async def sign_in(host: str) -> int:
        async with client_from(app, host) as client:
            return (await client.post("/v1/account/token", json=body)).status_code

    async with running(app):
        assert await sign_in("2001:db8:a:b::1") == 401
        assert await sign_in("2001:db8:a:b:1:2:3:4") == 401
        assert await sign_in("2001:db8:a:b::ffff") == 429  # same /64
        assert await sign_in("2001:db8:a:c::1") == 401  # the next /64


async def test_locked_address_gets_429_over_http(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        local_accounts_enabled=True,
        smtp_host="127.0.0.1",
        sign_in_backoff_free_attempts=1,
        **CHEAP,
    )
    body = {"email": "nobody@example.org", "password": WRONG, "device_id": DEVICE}
    async with running(create_app(settings)) as api:
        statuses = [await api.post("/v1/account/token", json=body) for _ in range(3)]
    assert [r.status_code for r in statuses] == [401, 401, 429]
    locked = statuses[-1]
    assert locked.headers["Retry-After"] == "1"
    assert locked.json()["type"].endswith("sign-in-backoff")

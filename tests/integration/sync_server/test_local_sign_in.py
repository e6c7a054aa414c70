"""Local accounts without HTTP: the sign-in refusals, hash upgrades and revoked devices.

``LocalAccounts`` on a real database (SQLite, and PostgreSQL when configured), with
the mails it would send kept in a list instead of going to SMTP.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from sync_server.accounts import now
from sync_server.auth.local import LocalAccounts
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.mailer import Mailer
from sync_server.models import Device, LocalUser
from sync_server.settings import Settings
from tests.integration.sync_server.support import make_settings

EMAIL = "Alice@Example.org"
PASSWORD = "a long enough password"
DEVICE = "device-1"
WRONG = "Wrong e-mail or password, or the address is not verified."


class KeptMail(Mailer):
    """A mailer that keeps what it would send."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: list[tuple[str, str, str]] = []

    def send_later(self, to: str, subject: str, body: str, *, purpose: str) -> None:
        self.sent.append((to, purpose, body))

    def code(self, purpose: str) -> str:
        body = next(body for _, kind, body in reversed(self.sent) if kind == purpose)
        match = re.search(r"^([A-Za-z0-9_-]{40,})$", body, re.MULTILINE)
        assert match, body
        return match.group(1)


CHEAP = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "argon2_parallelism": 1}


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
def accounts(tmp_path: Path, database_url: str | None, db: Database) -> Callable[..., Any]:
    """``accounts(**settings)`` → (LocalAccounts, its mail) on the shared database."""

    def make(**overrides: Any) -> tuple[LocalAccounts, KeptMail]:
        settings = make_settings(
            tmp_path, database_url, local_accounts_enabled=True, **{**CHEAP, **overrides}
        )
        mail = KeptMail(settings)
        return LocalAccounts(settings, db, mail), mail

    return make


async def verified_user(local: LocalAccounts, mail: KeptMail) -> None:
    await local.signup(EMAIL, PASSWORD)
    await local.verify_email(mail.code("verify"))


async def refused(call: Any, status: int, detail: str | None = None) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        await call
    assert caught.value.status == status
    if detail is not None:
        assert caught.value.detail == detail
    return caught.value


async def test_an_invalid_address_cannot_sign_up(accounts: Callable[..., Any]) -> None:
    local, mail = accounts()
    problem = await refused(local.signup("not an address", PASSWORD), 422)
    assert problem.slug == "invalid-email"
    assert mail.sent == []


async def test_every_sign_in_failure_gives_the_same_answer(
    accounts: Callable[..., Any], db: Database
) -> None:
    local, mail = accounts()
    await local.signup(EMAIL, PASSWORD)
    # Not verified yet: the right password is not enough.
    await refused(local.sign_in(EMAIL, PASSWORD, DEVICE), 401, WRONG)
    await local.verify_email(mail.code("verify"))
    await refused(local.sign_in("not an address", PASSWORD, DEVICE), 401, WRONG)
    await refused(local.sign_in(EMAIL, "a wrong password!", DEVICE), 401, WRONG)
    # Unknown addresses (twice: the dummy hash is made once and reused).
    for address in ("bob@example.org", "carol@example.org"):
        await refused(local.sign_in(address, PASSWORD, DEVICE), 401, WRONG)
    tokens = await local.sign_in(EMAIL.lower(), PASSWORD, DEVICE)
    assert tokens.access_token != tokens.refresh_token


async def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(
    accounts: Callable[..., Any], db: Database
) -> None:
    old, mail = accounts()
    await verified_user(old, mail)
    stronger = {"argon2_time_cost": 2, "argon2_memory_kib": 9216, "argon2_parallelism": 1}
    new, _ = accounts(**stronger)
    await new.sign_in(EMAIL, PASSWORD, DEVICE)
    async with db.read() as session:
        stored = (await session.execute(select(LocalUser.password_hash))).scalar_one()
    hasher = PasswordHasher(time_cost=2, memory_cost=9216, parallelism=1)
    assert not hasher.check_needs_rehash(stored)
    assert hasher.verify(stored, PASSWORD)
    # And the upgraded hash still signs in (no second upgrade needed).
    await new.sign_in(EMAIL, PASSWORD, "device-2")


async def test_a_revoked_device_can_neither_sign_in_nor_refresh(
    accounts: Callable[..., Any], db: Database
) -> None:
    local, mail = accounts()
    await verified_user(local, mail)
    tokens = await local.sign_in(EMAIL, PASSWORD, DEVICE)
    async with db.write() as session:
        await session.execute(update(Device).values(revoked_at=now()))
    for call in (local.refresh(tokens.refresh_token), local.sign_in(EMAIL, PASSWORD, DEVICE)):
        problem = await refused(call, 403)
        assert problem.slug == "device-revoked"
    # Another device of the same account still signs in.
    assert (await local.sign_in(EMAIL, PASSWORD, "device-2")).access_token


async def test_a_reset_for_an_unknown_address_sends_nothing(accounts: Callable[..., Any]) -> None:
    local, mail = accounts()
    known = await local.request_reset("nobody@example.org")
    assert mail.sent == []
    await verified_user(local, mail)
    assert await local.request_reset(EMAIL) == known  # the same answer either way
    assert [(to, purpose) for to, purpose, _ in mail.sent][-1] == (EMAIL.lower(), "reset")

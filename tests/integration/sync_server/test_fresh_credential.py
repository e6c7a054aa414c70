"""A pull or push of a known caller checks its credential with the conditions
``accounts.FRESH_LOCAL`` and ``accounts.FRESH_OIDC``, in the statement of the page
(PostgreSQL pulls, ``sync_server.records._changes_checked``), in one of its own (SQLite
pulls) or in the account's (pushes, ``records._push_as``). They must hold exactly when
``accounts.check_credential`` would give the caller's account without a write and
without refusing. Anything else must send the request through ``check_credential``,
which refuses (401/403) or resolves it.

Every way a credential can fail is tried below against both, on SQLite and PostgreSQL,
with the outcome each case must have written down, so that a condition missing from
both would fail too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, delete, insert, select, update

from sync_server import accounts, records
from sync_server.accounts import Credential
from sync_server.auth.oidc import VerifiedToken
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.models import Account, Device, LocalToken, Record, TokenBinding
from sync_server.protocol import PushRequest
from tests.integration.sync_server.support import make_settings

ISSUER = "https://idp.example"
NOW = datetime.now(UTC)


def _seed(connection: Connection) -> None:
    moment = datetime.now(UTC)
    connection.execute(
        insert(Account),
        [
            {
                "id": "a1",
                "issuer": ISSUER,
                "subject": "alice",
                "email": "alice@example.org",
                "email_verified": True,
                "last_seq": 3,
                "created_at": moment,
            },
            {
                "id": "a2",
                "issuer": ISSUER,
                "subject": "bob",
                "email": None,
                "email_verified": False,
                "last_seq": 0,
                "created_at": moment,
            },
        ],
    )
    connection.execute(
        insert(Device),
        [
            {
                "account_id": account,
                "id": device,
                "name": "laptop",
                "created_at": moment,
                "last_seen_at": moment,
                "jkt": jkt,
            }
            for account, device, jkt in (
                ("a1", "dev1", "jkt1"),
                ("a1", "dev2", "jkt2"),
                ("a2", "devx", "jktx"),
            )
        ],
    )
    connection.execute(
        insert(LocalToken),
        [
            {
                "token_hash": token_hash,
                "account_id": account,
                "kind": kind,
                "family_id": "f",
                "device_id": device,
                "expires_at": moment + timedelta(hours=1),
                "auth_time": moment,
            }
            for token_hash, account, device, kind in (
                ("h1", "a1", "dev1", "access"),
                ("r1", "a1", "dev1", "refresh"),
                ("h2", "a1", "dev2", "access"),
                ("h3", "a1", "dev3", "access"),  # its device has no row
                ("hx", "a2", "devx", "access"),
            )
        ],
    )
    connection.execute(
        insert(TokenBinding),
        [
            {
                "token_hash": token_hash,
                "account_id": "a1",
                "device_id": device,
                "expires_at": moment + timedelta(hours=1),
            }
            for token_hash, device in (("t1", "dev1"), ("t2", "dev2"))
        ],
    )
    connection.execute(
        insert(Record),
        [
            {
                "account_id": "a1",
                "record_id": f"r{n}",
                "kind": "message",
                "revision": 1,
                "parent_revision": None,
                "deleted": False,
                "key_id": "k",
                "device_id": "dev1",
                "size": 3,
                "payload": bytes([n, 1, 2]),
                "seq": n + 1,
                "updated_at": moment,
            }
            for n in range(3)
        ],
    )


LOCAL = Credential("local", "h1", "dev1", "jkt1", "laptop", None, account_id="a1")
TOKEN = VerifiedToken(
    ISSUER, "alice", "alice@example.org", True, NOW, NOW + timedelta(hours=1), "t1"
)
OIDC = Credential("oidc", "t1", "dev1", "jkt1", "laptop", TOKEN, account_id="a1")

Change = Callable[[Connection], None]


def _device(**values: Any) -> Change:
    def change(connection: Connection) -> None:
        connection.execute(update(Device).where(Device.id == "dev1").values(**values))

    return change


def _seen(minutes: int) -> Change:
    """The device last seen ``minutes`` before the case runs (not before the module loaded:
    a whole suite may run in between)."""

    def change(connection: Connection) -> None:
        moment = datetime.now(UTC) - timedelta(minutes=minutes)
        connection.execute(update(Device).where(Device.id == "dev1").values(last_seen_at=moment))

    return change


def _account(**values: Any) -> Change:
    def change(connection: Connection) -> None:
        connection.execute(update(Account).where(Account.id == "a1").values(**values))

    return change


def _expired(connection: Connection) -> None:
    connection.execute(
        update(LocalToken)
        .where(LocalToken.token_hash == "h1")
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )


def _unbound(connection: Connection) -> None:
    connection.execute(delete(TokenBinding).where(TokenBinding.token_hash == "t1"))


def _oidc(**token: Any) -> Credential:
    return dataclasses.replace(OIDC, token=dataclasses.replace(TOKEN, **token))


# (name, what changes in the database, the credential, whether it is fresh)
CASES: list[tuple[str, Change | None, Credential, bool]] = [
    ("local: fresh", None, LOCAL, True),
    ("local: no device name sent", None, dataclasses.replace(LOCAL, device_name=None), True),
    ("local: empty device name", None, dataclasses.replace(LOCAL, device_name=""), True),
    ("local: seen 4 minutes ago", _seen(4), LOCAL, True),
    ("local: a new device name", None, dataclasses.replace(LOCAL, device_name="desk"), False),
    ("local: expired", _expired, LOCAL, False),
    ("local: a refresh token", None, dataclasses.replace(LOCAL, token_hash="r1"), False),
    ("local: another device's token", None, dataclasses.replace(LOCAL, token_hash="h2"), False),
    ("local: unknown token", None, dataclasses.replace(LOCAL, token_hash="nope"), False),
    ("local: another account", None, dataclasses.replace(LOCAL, account_id="a2"), False),
    ("local: another key", None, dataclasses.replace(LOCAL, jkt="jkt9"), False),
    ("local: device without a key yet", _device(jkt=None), LOCAL, False),
    ("local: revoked device", _device(revoked_at=NOW), LOCAL, False),
    ("local: seen 6 minutes ago", _seen(6), LOCAL, False),
    (
        "local: no device row",
        None,
        dataclasses.replace(LOCAL, token_hash="h3", device_id="dev3"),
        False,
    ),
    ("oidc: fresh", None, OIDC, True),
    ("oidc: no device name sent", None, dataclasses.replace(OIDC, device_name=None), True),
    (
        "oidc: no e-mail on either side",
        _account(email=None),
        _oidc(email=None),
        True,
    ),
    ("oidc: a new device name", None, dataclasses.replace(OIDC, device_name="desk"), False),
    ("oidc: token not bound yet", _unbound, OIDC, False),
    ("oidc: bound to another device", None, _oidc(token_hash="t2"), False),
    ("oidc: e-mail changed", None, _oidc(email="new@example.org"), False),
    ("oidc: e-mail gone from the token", None, _oidc(email=None), False),
    ("oidc: e-mail no longer verified", None, _oidc(email_verified=False), False),
    ("oidc: another subject", None, _oidc(subject="bob"), False),
    ("oidc: another account", None, dataclasses.replace(OIDC, account_id="a2"), False),
    ("oidc: another key", None, dataclasses.replace(OIDC, jkt="jkt9"), False),
    ("oidc: revoked device", _device(revoked_at=NOW), OIDC, False),
    ("oidc: seen 6 minutes ago", _seen(6), OIDC, False),
]


def _reference(connection: Connection, credential: Credential) -> bool:
    """What ``check_credential`` says: the caller's account, with no write and no refusal."""
    try:
        principal = accounts.check_credential(connection, credential)
    except ProblemError:
        return False
    return principal is not None and principal.account_id == credential.account_id


def _folded(connection: Connection, credential: Credential) -> bool:
    fresh = accounts.FRESH_LOCAL if credential.token is None else accounts.FRESH_OIDC
    found = connection.execute(select(fresh), accounts.fresh_parameters(credential))
    return bool(found.scalar_one())


def _outcomes(connection: Connection) -> list[tuple[str, bool, bool]]:
    """(case, check_credential's answer, the folded conditions' answer) for every case,
    each on the seeded rows with only its own change (a savepoint rolled back)."""
    found = []
    for name, change, credential, _expected in CASES:
        savepoint = connection.begin_nested()
        try:
            if change is not None:
                change(connection)
            found.append(
                (name, _reference(connection, credential), _folded(connection, credential))
            )
        finally:
            savepoint.rollback()
    return found


async def test_the_folded_check_passes_exactly_where_check_credential_does(
    tmp_path: Path, database_url: str | None
) -> None:
    db = Database(make_settings(tmp_path, database_url))
    await db.migrate()
    try:
        await db.run_write(_seed)
        outcomes = await db.run_write(_outcomes)
    finally:
        await db.close()
    expected = [(name, fresh, fresh) for name, _change, _credential, fresh in CASES]
    assert outcomes == expected


def _rows(found: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [tuple(row)[: len(records._COLUMNS)] for row in found]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[Credential]:
    """The credentials ``records.check_credential`` is asked about from now on."""
    checked: list[Credential] = []
    real = records.check_credential

    def counted(connection: Connection, credential: Credential) -> Any:
        checked.append(credential)
        return real(connection, credential)

    monkeypatch.setattr(records, "check_credential", counted)
    return checked


@pytest.fixture
async def seeded(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Database, list[Credential]]]:
    """The seeded database, and the credentials check_credential is asked about."""
    db = Database(make_settings(tmp_path, database_url))
    await db.migrate()
    checked = _counting(monkeypatch)
    try:
        await db.run_write(_seed)
        yield db, checked
    finally:
        await db.close()


async def test_a_pull_checks_a_fresh_credential_without_check_credential(
    seeded: tuple[Database, list[Credential]], database_url: str | None
) -> None:
    """In the page's statement on PostgreSQL, in one statement before it on SQLite."""
    db, checked = seeded
    for caller in (LOCAL, OIDC):
        found = await records.changes_as(db, caller, 0, 10)
        assert found is not None and checked == []
        principal = await db.run(accounts.check_credential, caller)
        assert principal is not None
        reference = await records.changes_as(db, principal, 0, 10)
        assert reference is not None
        assert _rows(found[0]) == _rows(reference[0]) and len(found[0]) == 3
        assert found[1] == reference[1] == []

    # An empty page: on PostgreSQL no rows, which check_credential then tells apart.
    assert await records.changes_as(db, LOCAL, 3, 10) == ([], [])  # past the last
    assert checked == ([LOCAL] if database_url else [])
    checked.clear()

    # Not fresh: check_credential decides.
    stale = dataclasses.replace(LOCAL, device_name="desk")
    assert await records.changes_as(db, stale, 0, 10) is None  # a write resolves it
    assert checked == [stale]
    await db.run_write(_device(revoked_at=NOW))
    with pytest.raises(ProblemError) as refused:
        await records.changes_as(db, LOCAL, 0, 10)
    assert refused.value.status == 403


def _batch(*ids: str) -> PushRequest:
    return PushRequest.model_validate(
        {
            "records": [
                {"id": record_id, "kind": "message", "revision": 1, "key_id": "k", "payload": ""}
                for record_id in ids
            ]
        }
    )


async def test_a_push_checks_a_fresh_credential_in_the_accounts_statement(
    seeded: tuple[Database, list[Credential]],
) -> None:
    db, checked = seeded
    for caller, record_id in ((LOCAL, "p1"), (OIDC, "p2")):
        answer = await records.push(db, caller, _batch(record_id), short=True)
        assert answer is not None and checked == []
        pushed = orjson.loads(answer)
        assert pushed["applied"] and pushed["results"][0]["status"] == "saved"
    assert [result["seq"] for result in pushed["results"]] == [5]  # after 3 and p1's 4
    stored = await db.run(
        lambda c: c.execute(select(Record.device_id).where(Record.record_id == "p2")).all()
    )
    assert stored == [("dev1",)]
    # A batch with a stored id among new ones (SQLite counts them in the same
    # statement, and only then looks them up): the stored one is a duplicate.
    again = orjson.loads(await records.push(db, LOCAL, _batch("p1", "p9"), short=True) or b"")
    assert [(r["status"], r["duplicate"], r["seq"]) for r in again["results"]] == [
        ("saved", True, 4),
        ("saved", False, 6),
    ]
    assert checked == []

    # Not fresh: check_credential decides, and nothing is written until it does.
    stale = dataclasses.replace(LOCAL, device_name="desk")
    assert await records.push(db, stale, _batch("p3"), short=True) is None
    assert checked == [stale]
    await db.run_write(_device(revoked_at=NOW))
    with pytest.raises(ProblemError) as refused:
        await records.push(db, LOCAL, _batch("p4"))
    assert refused.value.status == 403
    last = await db.run(lambda c: c.execute(select(Account.last_seq)).scalars().all())
    assert sorted(last) == [0, 6]

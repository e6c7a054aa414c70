"""Record sync: push (batched compare-and-swap) and pull (changes since a cursor).

The per-account sequence number lives in ``accounts.last_seq``; a push locks the account
row first (``FOR UPDATE`` on PostgreSQL, the process write lock on SQLite), so sequence
numbers are handed out in commit order and a reader's cursor never skips a change. A push
is one transaction: killed half-way, nothing of it remains. Rules: :mod:`protocol`.

Both run as plain functions over a synchronous connection in one transaction
(:meth:`Database.run`): existing rows of a batch are loaded with one query, new and changed
rows are written with one executemany each, and rows are handled as Core tuples rather than
ORM objects. The statements are built once, with bound parameters, so SQLAlchemy's
compiled cache serves them. A caller given as a :class:`~sync_server.accounts.Credential`
is checked (token, device, key) by the same transaction, before its work.

"Which ids of this batch exist" is asked so that the plan does not depend on the table's
statistics: on SQLite as ``record_id IN (…)`` (the primary key), on PostgreSQL as one
primary-key probe per id (``unnest`` of the ids, ``LATERAL … LIMIT 1``). A plain
``IN (…)``/``= ANY`` there lets the planner of a fresh, un-ANALYZEd table choose the
``(account_id, seq)`` index and read the whole account per batch.
"""

from __future__ import annotations

import functools
from binascii import b2a_base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from typing_extensions import TypedDict

from sync_server.accounts import (
    FRESH_LOCAL,
    FRESH_OIDC,
    OPEN_RECOVERY_STATUS,
    Credential,
    Principal,
    check_credential,
    fresh_parameters,
    now,
    open_recovery,
    unauthorized,
)
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.models import Account, Record, Recovery
from sync_server.prepared import Prepared
from sync_server.protocol import PushRequest, RecordIn
from sync_server.settings import Settings

_records = cast(Table, Record.__table__)
_accounts = cast(Table, Account.__table__)
#: Stored columns in wire order (everything but ``account_id``).
_COLUMNS = (
    _records.c.record_id,
    _records.c.kind,
    _records.c.revision,
    _records.c.parent_revision,
    _records.c.deleted,
    _records.c.key_id,
    _records.c.device_id,
    _records.c.size,
    _records.c.seq,
    _records.c.updated_at,
    _records.c.payload,
)
#: Ids looked up per ``IN (…)`` query (well under every backend's parameter limit).
_LOOKUP_CHUNK = 500
_INSERT = insert(_records)
# SET clause from the parameter keys; the WHERE parameters have names no column has.
_UPDATE = update(_records).where(
    _records.c.account_id == bindparam("b_account_id"),
    _records.c.record_id == bindparam("b_record_id"),
)
_LAST_SEQ = (
    select(_accounts.c.last_seq).where(_accounts.c.id == bindparam("account_id")).with_for_update()
)
_SET_LAST_SEQ = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("b_account_id"))
    .values(last_seq=bindparam("last_seq"))
)
_EXISTING = select(*_COLUMNS).where(
    _records.c.account_id == bindparam("account_id"),
    _records.c.record_id.in_(bindparam("ids", expanding=True)),
)
# PostgreSQL: one primary-key probe per id, whatever the statistics say (module docstring).
_EXISTING_POSTGRES = text(
    "SELECT r.* FROM unnest(CAST(:ids AS varchar[])) AS wanted(id) CROSS JOIN LATERAL ("
    "SELECT record_id, kind, revision, parent_revision, deleted, key_id, device_id, size,"
    " seq, updated_at, payload FROM records"
    " WHERE records.account_id = :account_id AND records.record_id = wanted.id LIMIT 1"
    ") AS r"
).columns(*_COLUMNS)


# The statements of a push, run cheaply on SQLite (sync_server.prepared).
_LAST_SEQ_RUN = Prepared(_LAST_SEQ)
#: A push of a credential whose account is known: its check in the statement that reads
#: (and on PostgreSQL locks) the account's last seq, by local account or not. ``fresh``
#: is false where the credential needs ``check_credential`` (a refusal or a write).
_CHECKED_LAST_SEQ_RUNS = {
    local: Prepared(_LAST_SEQ.add_columns((FRESH_LOCAL if local else FRESH_OIDC).label("fresh")))
    for local in (True, False)
}
#: SQLite: the same, and how many of the batch's ids are stored (nearly always none: then
#: ``_EXISTING`` is not asked). PostgreSQL keeps its own "which ids exist" statement,
#: whose plan does not depend on statistics (``_EXISTING_POSTGRES``).
_STORED_COUNT = (
    select(func.count())
    .where(
        _records.c.account_id == bindparam("account_id"),
        _records.c.record_id.in_(bindparam("ids", expanding=True)),
    )
    .scalar_subquery()
)
_CHECKED_LAST_SEQ_COUNTED_RUNS = {
    local: Prepared(
        _LAST_SEQ.add_columns(
            (FRESH_LOCAL if local else FRESH_OIDC).label("fresh"), _STORED_COUNT.label("stored")
        )
    )
    for local in (True, False)
}
_EXISTING_RUN = Prepared(_EXISTING)
_SET_LAST_SEQ_RUN = Prepared(_SET_LAST_SEQ)
_VALUE_KEYS = (
    "kind",
    "revision",
    "parent_revision",
    "deleted",
    "key_id",
    "device_id",
    "size",
    "payload",
    "seq",
    "updated_at",
)
_INSERT_RUN = Prepared(_INSERT, column_keys=("account_id", "record_id", *_VALUE_KEYS))
_UPDATE_RUN = Prepared(_UPDATE, column_keys=(*_VALUE_KEYS, "b_account_id", "b_record_id"))


def existing_query(dialect: str) -> Any:
    """The "which of these ids exist" statement of a dialect (``account_id``, ``ids``)."""
    return _EXISTING_POSTGRES if dialect == "postgresql" else _EXISTING


@dataclass(slots=True)
class _Stored:
    """A record as stored (or as it will be stored at the end of this push)."""

    record_id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    device_id: str
    size: int
    seq: int
    updated_at: datetime
    payload: bytes


class _RecordJson(TypedDict):
    """:class:`~sync_server.protocol.RecordOut` with the payload already in base64."""

    id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    device_id: str
    size: int
    seq: int
    updated_at: datetime
    payload: str


class _RecoveryJson(TypedDict):
    """:class:`~sync_server.protocol.RecoveryOut`."""

    id: str
    status: str
    device_id: str
    created_at: datetime
    not_before: datetime
    expires_at: datetime


class _ChangesJson(TypedDict):
    """:class:`~sync_server.protocol.ChangesResponse`."""

    changes: list[_RecordJson]
    cursor: int
    has_more: bool
    recoveries: list[_RecoveryJson]


#: Rows of a pull page (up to ``limit + 1``) and the account's open recoveries.
ChangesFound = tuple[Sequence[Any], list[_RecoveryJson]]


class _PushResultJson(TypedDict):
    """:class:`~sync_server.protocol.PushResult`."""

    id: str
    status: str
    revision: int
    seq: int | None
    duplicate: bool
    reason: str | None
    server_record: _RecordJson | None


class _PushJson(TypedDict):
    """:class:`~sync_server.protocol.PushResponse`."""

    applied: bool
    results: list[_PushResultJson]
    cursor: int


# The wire models (sync_server.protocol) document and validate the API. Answers are built
# from our own rows, so they are serialised from plain dicts of the same shape instead: no
# model instances, and the base64 of payloads is done by binascii, not per-field callbacks.
# A unit test checks that both give the same JSON. orjson writes it (a page of 100 records
# in 20 µs against pydantic's 70 µs), with datetimes in UTC ending in "Z" as pydantic does.
_b64 = functools.partial(b2a_base64, newline=False)


def _json(answer: _ChangesJson | _PushJson) -> bytes:
    return orjson.dumps(answer, option=orjson.OPT_UTC_Z)


def _out(record: _Stored) -> _RecordJson:
    return {
        "id": record.record_id,
        "kind": record.kind,
        "revision": record.revision,
        "parent_revision": record.parent_revision,
        "deleted": record.deleted,
        "key_id": record.key_id,
        "device_id": record.device_id,
        "size": record.size,
        "seq": record.seq,
        "updated_at": record.updated_at,
        "payload": _b64(record.payload).decode("ascii"),
    }


def _page(rows: Sequence[Any]) -> list[_RecordJson]:
    # Positional unpacking of the Core rows (_COLUMNS first, in order): the pull hot loop.
    return [
        {
            "id": record_id,
            "kind": kind,
            "revision": revision,
            "parent_revision": parent_revision,
            "deleted": deleted,
            "key_id": key_id,
            "device_id": device_id,
            "size": size,
            "seq": seq,
            "updated_at": updated_at,
            "payload": _b64(payload).decode("ascii"),
        }
        for (
            record_id,
            kind,
            revision,
            parent_revision,
            deleted,
            key_id,
            device_id,
            size,
            seq,
            updated_at,
            payload,
            *_checks,  # a checked page's rows also say "open_recoveries"
        ) in rows
    ]


@dataclass
class _Decision:
    status: str
    reason: str | None = None
    duplicate: bool = False


_SAVED = _Decision("saved")
_DUPLICATE = _Decision("saved", duplicate=True)


def _decide(current: _Stored | None, incoming: RecordIn) -> _Decision:
    if incoming.parent_revision is not None and incoming.revision <= incoming.parent_revision:
        return _Decision("rejected", "revision must be greater than parent_revision")
    if current is None:
        if incoming.parent_revision is None:
            return _SAVED
        return _Decision("conflict", "record does not exist on the server")
    if current.kind != incoming.kind:
        return _Decision("rejected", "a record's kind cannot change")
    if current.revision == incoming.revision:
        same = (
            current.parent_revision == incoming.parent_revision
            and current.deleted == incoming.deleted
            and current.key_id == incoming.key_id
            and current.payload == incoming.payload
        )
        if same:
            return _DUPLICATE
        return _Decision("conflict", "another change has this revision")
    if incoming.parent_revision == current.revision and incoming.revision > current.revision:
        if current.deleted and not incoming.deleted:
            return _Decision("rejected", "the record is deleted; tombstones are final")
        return _SAVED
    return _Decision("conflict", "parent_revision is not the server's revision")


def check_sizes(request: PushRequest, settings: Settings) -> None:
    """413 when a batch has too many records or a payload is over the per-record limit."""
    if len(request.records) > settings.max_batch_records:
        raise ProblemError(
            413,
            "Batch too large",
            f"At most {settings.max_batch_records} records per push.",
            slug="batch-too-large",
        )
    for record in request.records:
        if len(record.payload) > settings.max_record_bytes:
            raise ProblemError(
                413,
                "Record too large",
                f"Record {record.id} is over {settings.max_record_bytes} bytes.",
                slug="record-too-large",
                extra={"record_id": record.id},
            )


async def push(
    db: Database,
    caller: Principal | Credential,
    request: PushRequest,
    on_change: Callable[[str], None] | None = None,
    *,
    short: bool = False,
) -> bytes | None:
    """Apply a batch in one transaction; the JSON of a ``PushResponse``.

    See :mod:`sync_server.protocol` for the rules. ``on_change(account_id)`` is called
    once the transaction has committed a change (it wakes waiting pulls). A
    :class:`Credential` is checked first in the same transaction; ``None`` when it needs
    a write to resolve (:func:`sync_server.deps.settle`), with nothing done. ``short``:
    the batch is small (:meth:`~sync_server.db.Database.run_write_short`).
    """
    run = db.run_write_short if short else db.run_write
    answer = await run(_push_as, caller, request.records, request.atomic)
    if answer is None:
        return None
    written = any(r["status"] == "saved" and not r["duplicate"] for r in answer["results"])
    if on_change is not None and answer["applied"] and written and caller.account_id:
        on_change(caller.account_id)
    return _json(answer)


def _checked(connection: Connection, caller: Principal | Credential) -> Principal | None:
    """The principal of ``caller``, checked in this transaction when it is a credential."""
    if isinstance(caller, Principal):
        return caller
    principal = check_credential(connection, caller)
    if principal is None or principal.account_id != caller.account_id:
        return None
    return principal


def _push_as(
    connection: Connection, caller: Principal | Credential, records: list[RecordIn], atomic: bool
) -> _PushJson | None:
    if isinstance(caller, Credential) and caller.account_id is not None:
        # Nearly every push: the check rides in the account's statement; anything but
        # fresh goes through check_credential below, which says why.
        local = caller.token is None
        params = fresh_parameters(caller)
        counted = connection.dialect.name != "postgresql" and len(records) <= _LOOKUP_CHUNK
        if counted:
            params["ids"] = [record.id for record in records]
            row = _CHECKED_LAST_SEQ_COUNTED_RUNS[local].one_or_none(connection, params)
        else:
            row = _CHECKED_LAST_SEQ_RUNS[local].one_or_none(connection, params)
        if row is not None and row.fresh:
            account_id, device_id = caller.account_id, caller.device_id
            new = counted and row.stored == 0
            return _push(connection, account_id, device_id, records, atomic, row.last_seq, new)
    principal = _checked(connection, caller)
    if principal is None:
        return None
    return _push(connection, principal.account_id, principal.device_id, records, atomic)


def _result(
    incoming: RecordIn,
    status: str,
    *,
    seq: int | None = None,
    duplicate: bool = False,
    reason: str | None = None,
    server_record: _RecordJson | None = None,
) -> _PushResultJson:
    return {
        "id": incoming.id,
        "status": status,
        "revision": incoming.revision,
        "seq": seq,
        "duplicate": duplicate,
        "reason": reason,
        "server_record": server_record,
    }


def _push(
    connection: Connection,
    account_id: str,
    device_id: str,
    records: list[RecordIn],
    atomic: bool,
    last_seq: int | None = None,
    new: bool = False,
) -> _PushJson:
    """The batch applied for the account; ``last_seq``: the account's, read (and on
    PostgreSQL locked) already in this transaction; ``new``: none of the batch's ids is
    stored (counted in that statement), so they are not looked up."""
    if last_seq is None:
        last_seq = _LAST_SEQ_RUN.scalar_one_or_none(connection, {"account_id": account_id})
    if last_seq is None:
        raise unauthorized("Account no longer exists.")
    ids = [] if new else list({record.id for record in records})
    current: dict[str, _Stored] = {}
    postgres = connection.dialect.name == "postgresql"
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        params = {"account_id": account_id, "ids": ids[start : start + _LOOKUP_CHUNK]}
        if postgres:
            rows = connection.execute(_EXISTING_POSTGRES, params).all()
        else:
            rows = _EXISTING_RUN.all(connection, params)
        for row in rows:
            current[row[0]] = _Stored(*row)
    stored = set(current)
    seq = last_seq
    moment = now()
    results: list[_PushResultJson] = []
    written: dict[str, _Stored] = {}
    failed = False
    for incoming in records:
        existing = current.get(incoming.id)
        decision = _decide(existing, incoming)
        if decision.status != "saved":
            failed = True
            conflict = existing is not None and decision.status == "conflict"
            results.append(
                _result(
                    incoming,
                    decision.status,
                    reason=decision.reason,
                    server_record=_out(existing) if conflict and existing else None,
                )
            )
            continue
        if decision.duplicate:
            assert existing is not None
            results.append(_result(incoming, "saved", seq=existing.seq, duplicate=True))
            continue
        seq += 1
        target = _Stored(
            record_id=incoming.id,
            kind=incoming.kind,
            revision=incoming.revision,
            parent_revision=incoming.parent_revision,
            deleted=incoming.deleted,
            key_id=incoming.key_id,
            device_id=device_id,
            size=len(incoming.payload),
            seq=seq,
            updated_at=moment,
            payload=incoming.payload,
        )
        current[incoming.id] = written[incoming.id] = target
        results.append(_result(incoming, "saved", seq=seq))
    if atomic and failed:
        # Nothing has been written: the transaction commits no change.
        for result in results:
            if result["status"] == "saved" and not result["duplicate"]:
                result["status"] = "aborted"
                result["seq"] = None
        return {"applied": False, "results": results, "cursor": last_seq}
    inserts = [_row(account_id, r) for r in written.values() if r.record_id not in stored]
    updates = [_update_row(account_id, r) for r in written.values() if r.record_id in stored]
    if inserts:
        _INSERT_RUN.executemany(connection, inserts)
    if updates:
        _UPDATE_RUN.executemany(connection, updates)
    if seq != last_seq:
        _SET_LAST_SEQ_RUN.execute(connection, {"b_account_id": account_id, "last_seq": seq})
    return {"applied": True, "results": results, "cursor": seq}


def _values(record: _Stored) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "revision": record.revision,
        "parent_revision": record.parent_revision,
        "deleted": record.deleted,
        "key_id": record.key_id,
        "device_id": record.device_id,
        "size": record.size,
        "payload": record.payload,
        "seq": record.seq,
        "updated_at": record.updated_at,
    }


def _row(account_id: str, record: _Stored) -> dict[str, Any]:
    values = _values(record)
    values["account_id"] = account_id
    values["record_id"] = record.record_id
    return values


def _update_row(account_id: str, record: _Stored) -> dict[str, Any]:
    values = _values(record)
    values["b_account_id"] = account_id
    values["b_record_id"] = record.record_id
    return values


_CHANGES = (
    select(*_COLUMNS)
    .where(
        _records.c.account_id == bindparam("account_id"),
        _records.c.seq > bindparam("cursor"),
        # Always true; it lets the partial index ix_records_account_seq serve the pull
        # (whatever the cursor's value in a generic plan). See models.Record.
        _records.c.seq > literal_column("0"),
    )
    .order_by(_records.c.seq)
    .limit(bindparam("limit"))
)


#: The payloads of one pull page stay under this many bytes (a page holds at least one
#: record): a large attachment's parts (each up to ``max_record_bytes``) come a few per
#: page, never hundreds of megabytes in one answer.
MAX_PAGE_BYTES = 8 << 20

_CHANGES_RUN = Prepared(_CHANGES)

# PostgreSQL: the page in one statement (one round trip instead of two). The rows of
# _CHANGES, numbered, with the running total of their sizes; a row is kept when it is one
# of the first two or the rows before it stay within MAX_PAGE_BYTES: exactly the rows
# SQLite's page stops at (_page_full, as _fitting cuts). Payloads of the rows cut
# off are never sent (they stay TOAST pointers in the window's tuple store).
_PAGE = _CHANGES.subquery("page")
_COUNTED = select(
    *_PAGE.c,
    func.row_number().over(order_by=_PAGE.c.seq).label("n"),
    func.sum(_PAGE.c.size).over(order_by=_PAGE.c.seq, rows=(None, 0)).label("total"),
).subquery("counted")
_CHANGES_FITTING = (
    select(*(_COUNTED.c[column.name] for column in _COLUMNS))
    .where(
        or_(
            _COUNTED.c.n <= literal_column("2"),
            _COUNTED.c.total - _COUNTED.c.size <= bindparam("max_bytes"),
        )
    )
    .order_by(_COUNTED.c.seq)
)
_CHANGES_FITTING_RUN = Prepared(_CHANGES_FITTING)


def _fitting(sizes: Sequence[int], limit: int) -> int:
    """How many of the first ``limit`` records a page holds within ``MAX_PAGE_BYTES``."""
    total = 0
    for count, size in enumerate(sizes[:limit]):
        total += size
        if count and total > MAX_PAGE_BYTES:
            return count
    return min(len(sizes), limit)


def _page_full(limit: int) -> Callable[[Any], bool]:
    """For :meth:`Prepared.until`: true at the row that ends a page of ``limit`` records,
    the one past ``limit`` or the one whose payload takes the page past
    ``MAX_PAGE_BYTES`` (never the first): where :func:`_fitting` cuts, plus the row that
    tells the client there is more."""
    count = 0
    total = 0

    def full(row: Any) -> bool:
        nonlocal count, total
        count += 1
        if count > limit:
            return True
        total += row.size
        return count > 1 and total > MAX_PAGE_BYTES

    return full


def _changes(connection: Connection, account_id: str, cursor: int, limit: int) -> Sequence[Any]:
    """Up to ``limit + 1`` rows; fewer when the page's payloads would pass
    ``MAX_PAGE_BYTES``. One statement: on SQLite it stops stepping at the row that ends
    the page (:func:`_page_full`), so later rows and their payloads are never read; on
    PostgreSQL it leaves out the rows that do not fit (``_CHANGES_FITTING``)."""
    params = {"account_id": account_id, "cursor": cursor, "limit": limit + 1}
    if connection.dialect.name == "postgresql":
        return _CHANGES_FITTING_RUN.all(connection, {**params, "max_bytes": MAX_PAGE_BYTES})
    return _CHANGES_RUN.until(connection, params, _page_full(limit))


async def changed_rows(db: Database, account_id: str, cursor: int, limit: int) -> Sequence[Any]:
    """Up to ``limit + 1`` stored rows with ``seq > cursor``, oldest first (one read)."""
    return await db.run(_changes, account_id, cursor, limit)


_recoveries = cast(Table, Recovery.__table__)
_OPEN_RECOVERIES = (
    select(
        _recoveries.c.id,
        _recoveries.c.status,
        _recoveries.c.device_id,
        _recoveries.c.created_at,
        _recoveries.c.not_before,
        _recoveries.c.expires_at,
    )
    .where(
        _recoveries.c.account_id == bindparam("account_id"),
        OPEN_RECOVERY_STATUS,
    )
    .order_by(_recoveries.c.created_at)
)
_OPEN_RECOVERIES_RUN = Prepared(_OPEN_RECOVERIES)


_OPEN_RECOVERY_OF_PARAMETER = open_recovery(bindparam("account_id"))


def _checked_page(fresh: ColumnElement[bool]) -> Select[Any]:
    """PostgreSQL: a credential's check and the page in one statement (one round trip
    instead of two on nearly every pull). ``_CHANGES_FITTING`` with ``fresh``
    (``accounts.FRESH_*``) as a condition PostgreSQL evaluates once, before the page, and
    a column saying whether the account has an open recovery (also evaluated once).

    No rows: the page is empty or the credential is not fresh, which this statement does
    not tell apart; the caller then checks the credential as before (an empty page costs
    a round trip more than it did, a page with records one less). Tried and measured
    slower: a join of the page to one row of both answers, which always has a row but
    makes PostgreSQL sort the page again (50 µs), and a union of the credential's row
    and the page's (docs/server.md, "Fifth pass")."""
    return _CHANGES_FITTING.add_columns(_OPEN_RECOVERY_OF_PARAMETER.label("open_recoveries")).where(
        fresh
    )


_CHECKED_LOCAL_RUN = Prepared(_checked_page(FRESH_LOCAL))
_CHECKED_OIDC_RUN = Prepared(_checked_page(FRESH_OIDC))


def _fresh(fresh: ColumnElement[bool]) -> Select[bool, bool]:
    """SQLite: the credential's check on its own, and whether a recovery is open; one row.

    SQLite's statements run in process, so folding the check into the page saves no round
    trip, and there it cost more than the two apart (an uncorrelated ``EXISTS`` of three
    tables in the page's ``WHERE`` took 30 µs more than on its own). This replaces
    ``check_credential``'s lookup, whose row of timestamps the server then converts and
    compares in Python, for a caller that needs no more than yes or no."""
    return select(fresh.label("fresh"), _OPEN_RECOVERY_OF_PARAMETER.label("open_recoveries"))


_FRESH_LOCAL_RUN = Prepared(_fresh(FRESH_LOCAL))
_FRESH_OIDC_RUN = Prepared(_fresh(FRESH_OIDC))


def _changes_and_recoveries(
    connection: Connection,
    account_id: str,
    cursor: int,
    limit: int,
    open_recoveries: bool | None = None,
) -> tuple[Sequence[Any], list[_RecoveryJson]]:
    """The page and the open recoveries; ``open_recoveries=False`` (the credential's read
    found none) skips their query."""
    rows = _changes(connection, account_id, cursor, limit)
    if open_recoveries is False:
        return rows, []
    return rows, _recoveries_of(connection, account_id)


def _recoveries_of(connection: Connection, account_id: str) -> list[_RecoveryJson]:
    """The account's pending and ready recoveries, as a pull lists them."""
    found = _OPEN_RECOVERIES_RUN.all(connection, {"account_id": account_id})
    return [
        {
            "id": row.id,
            "status": row.status,
            "device_id": row.device_id,
            "created_at": row.created_at,
            "not_before": row.not_before,
            "expires_at": row.expires_at,
        }
        for row in found
    ]


async def changed_rows_and_recoveries(
    db: Database, account_id: str, cursor: int, limit: int
) -> tuple[Sequence[Any], list[_RecoveryJson]]:
    """:func:`changed_rows` and the account's pending/ready recoveries, in one read."""
    return await db.run(_changes_and_recoveries, account_id, cursor, limit)


def _changes_checked(
    connection: Connection, credential: Credential, cursor: int, limit: int
) -> ChangesFound | None:
    """A credential of a known account: its check and the page, in one statement on
    PostgreSQL (:func:`_checked_page`), in two on SQLite (:func:`_fresh`, then the page).
    ``None`` when the check fails, or (PostgreSQL) the page is empty: then
    :func:`check_credential` runs, which refuses or resolves the credential as before,
    and the page is read again."""
    local = credential.token is None
    params = fresh_parameters(credential)
    account_id = params["account_id"]
    if connection.dialect.name == "postgresql":
        run = _CHECKED_LOCAL_RUN if local else _CHECKED_OIDC_RUN
        params.update(cursor=cursor, limit=limit + 1, max_bytes=MAX_PAGE_BYTES)
        rows = run.all(connection, params)
        if not rows:
            return None
        open_recoveries = rows[0].open_recoveries
    else:
        checked = (_FRESH_LOCAL_RUN if local else _FRESH_OIDC_RUN).one_or_none(connection, params)
        if not checked.fresh:
            return None
        open_recoveries = checked.open_recoveries
        rows = _changes(connection, account_id, cursor, limit)
    if not open_recoveries:
        return rows, []
    return rows, _recoveries_of(connection, account_id)


def _changes_as(
    connection: Connection, caller: Principal | Credential, cursor: int, limit: int
) -> ChangesFound | None:
    if isinstance(caller, Credential) and caller.account_id is not None:
        found = _changes_checked(connection, caller, cursor, limit)
        if found is not None:
            return found
    principal = _checked(connection, caller)
    if principal is None:
        return None
    return _changes_and_recoveries(
        connection, principal.account_id, cursor, limit, principal.open_recoveries
    )


async def changes_as(
    db: Database, caller: Principal | Credential, cursor: int, limit: int, *, short: bool = False
) -> ChangesFound | None:
    """:func:`changed_rows_and_recoveries` of the caller's account, in one read that also
    checks a :class:`Credential` first; ``None`` when it needs a write to resolve.
    ``short``: the page is small (:meth:`~sync_server.db.Database.run_short`)."""
    run = db.run_short if short else db.run
    return await run(_changes_as, caller, cursor, limit)


def changes_json(
    rows: Sequence[Any],
    cursor: int,
    limit: int,
    recoveries: Sequence[_RecoveryJson] = (),
) -> bytes:
    """The JSON of a ``ChangesResponse`` from :func:`changed_rows`' answer."""
    page = rows[: _fitting([row.size for row in rows], limit)]
    return _json(
        {
            "changes": _page(page),
            "cursor": page[-1].seq if page else cursor,
            "has_more": len(rows) > len(page),
            "recoveries": list(recoveries),
        }
    )

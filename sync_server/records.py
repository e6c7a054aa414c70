"""Record sync: push (batched compare-and-swap) and pull (changes since a cursor).

The per-account sequence number lives in ``accounts.last_seq``; a push locks the account
row first (``FOR UPDATE`` on PostgreSQL, the process write lock on SQLite), so sequence
numbers are handed out in commit order and a reader's cursor never skips a change. A push
is one transaction: killed half-way, nothing of it remains. Rules: :mod:`protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from sync_server.accounts import Principal, now, unauthorized
from sync_server.db import Database
from sync_server.errors import ProblemError
from sync_server.models import Account, Record
from sync_server.protocol import (
    ChangesResponse,
    PushRequest,
    PushResponse,
    PushResult,
    RecordIn,
    RecordOut,
)
from sync_server.settings import Settings


def record_out(record: Record) -> RecordOut:
    """Wire shape of a stored record."""
    return RecordOut(
        id=record.record_id,
        kind=record.kind,
        revision=record.revision,
        parent_revision=record.parent_revision,
        deleted=record.deleted,
        key_id=record.key_id,
        device_id=record.device_id,
        size=record.size,
        seq=record.seq,
        updated_at=record.updated_at,
        payload=record.payload,
    )


@dataclass
class _Decision:
    status: str
    reason: str | None = None
    duplicate: bool = False


def _decide(current: Record | None, incoming: RecordIn) -> _Decision:
    if incoming.parent_revision is not None and incoming.revision <= incoming.parent_revision:
        return _Decision("rejected", "revision must be greater than parent_revision")
    if current is None:
        if incoming.parent_revision is None:
            return _Decision("saved")
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
            return _Decision("saved", duplicate=True)
        return _Decision("conflict", "another change has this revision")
    if incoming.parent_revision == current.revision and incoming.revision > current.revision:
        if current.deleted and not incoming.deleted:
            return _Decision("rejected", "the record is deleted; tombstones are final")
        return _Decision("saved")
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


async def push(db: Database, principal: Principal, request: PushRequest) -> PushResponse:
    """Apply a batch; see :mod:`sync_server.protocol` for the rules."""
    try:
        return await _push(db, principal, request)
    except _BatchAbortedError as aborted:
        return aborted.response


class _BatchAbortedError(Exception):
    """Leaves the transaction (rolling it back) with the answer for an atomic batch."""

    def __init__(self, response: PushResponse) -> None:
        super().__init__("atomic batch not applied")
        self.response = response


async def _push(db: Database, principal: Principal, request: PushRequest) -> PushResponse:
    account_id = principal.account_id
    async with db.write() as session:
        last_seq = (
            await session.execute(
                select(Account.last_seq).where(Account.id == account_id).with_for_update()
            )
        ).scalar_one_or_none()
        if last_seq is None:
            raise unauthorized("Account no longer exists.")
        ids = list({record.id for record in request.records})
        current: dict[str, Record] = {}
        for start in range(0, len(ids), 500):
            rows = await session.execute(
                select(Record).where(
                    Record.account_id == account_id,
                    Record.record_id.in_(ids[start : start + 500]),
                )
            )
            current.update({row.record_id: row for row in rows.scalars()})
        seq = last_seq
        moment = now()
        results: list[PushResult] = []
        new: dict[str, Record] = {}
        for incoming in request.records:
            existing = current.get(incoming.id)
            decision = _decide(existing, incoming)
            if decision.status != "saved":
                results.append(
                    PushResult(
                        id=incoming.id,
                        status=decision.status,
                        revision=incoming.revision,
                        reason=decision.reason,
                        server_record=(
                            record_out(existing)
                            if existing is not None and decision.status == "conflict"
                            else None
                        ),
                    )
                )
                continue
            if decision.duplicate:
                assert existing is not None
                results.append(
                    PushResult(
                        id=incoming.id,
                        status="saved",
                        revision=incoming.revision,
                        seq=existing.seq,
                        duplicate=True,
                    )
                )
                continue
            seq += 1
            target = existing if existing is not None else Record(account_id=account_id)
            target.record_id = incoming.id
            target.kind = incoming.kind
            target.revision = incoming.revision
            target.parent_revision = incoming.parent_revision
            target.deleted = incoming.deleted
            target.key_id = incoming.key_id
            target.device_id = principal.device_id
            target.size = len(incoming.payload)
            target.payload = incoming.payload
            target.seq = seq
            target.updated_at = moment
            current[incoming.id] = target
            if existing is None:
                new[incoming.id] = target
            results.append(
                PushResult(id=incoming.id, status="saved", revision=incoming.revision, seq=seq)
            )
        failed = any(result.status != "saved" for result in results)
        if request.atomic and failed:
            for result in results:
                if result.status == "saved" and not result.duplicate:
                    result.status = "aborted"
                    result.seq = None
            raise _BatchAbortedError(PushResponse(applied=False, results=results, cursor=last_seq))
        session.add_all(new.values())
        if seq != last_seq:
            account = await session.get(Account, account_id)
            assert account is not None
            account.last_seq = seq
        return PushResponse(applied=True, results=results, cursor=seq)


async def changes(db: Database, principal: Principal, cursor: int, limit: int) -> ChangesResponse:
    """Changes with ``seq > cursor``, oldest first, at most ``limit``."""
    table = Record.__table__
    async with db.read() as session:
        rows = (
            await session.execute(
                select(table)
                .where(table.c.account_id == principal.account_id, table.c.seq > cursor)
                .order_by(table.c.seq)
                .limit(limit + 1)
            )
        ).all()
    page = rows[:limit]
    # Rows come from our own table: build the wire models without re-validating them.
    changes = [
        RecordOut.model_construct(
            id=row.record_id,
            kind=row.kind,
            revision=row.revision,
            parent_revision=row.parent_revision,
            deleted=row.deleted,
            key_id=row.key_id,
            device_id=row.device_id,
            size=row.size,
            seq=row.seq,
            updated_at=row.updated_at,
            payload=row.payload,
        )
        for row in page
    ]
    return ChangesResponse.model_construct(
        changes=changes,
        cursor=page[-1].seq if page else cursor,
        has_more=len(rows) > limit,
    )

"""An in-memory sync server with the real server's push and pull rules.

The rules are those of ``sync_server/records.py`` (``_decide`` and ``_push``): per-record
compare-and-swap on ``parent_revision``, a byte-identical re-push of the stored revision
is a duplicate (no-op), a conflict carries the server's copy, tombstones are final, an
atomic batch is all or nothing, and every saved record gets the account's next sequence
number, which is the pull cursor.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from app.sync.errors import SyncAuthError, SyncOfflineError
from app.sync.protocol import (
    ChangesResponse,
    EscrowMeta,
    EscrowStatus,
    LimitsMeta,
    Meta,
    PushResponse,
    PushResult,
    RecordIn,
    RecordOut,
    RecoveryOut,
)


@dataclass
class Stored:
    id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    device_id: str
    payload: bytes
    seq: int

    def out(self) -> RecordOut:
        return RecordOut(
            id=self.id,
            kind=self.kind,
            revision=self.revision,
            parent_revision=self.parent_revision,
            deleted=self.deleted,
            key_id=self.key_id,
            device_id=self.device_id,
            size=len(self.payload),
            seq=self.seq,
            updated_at=datetime(2026, 1, 1, tzinfo=UTC),
            payload=self.payload,
        )


def decide(current: Stored | None, incoming: RecordIn) -> tuple[str, str | None, bool]:
    """(status, reason, duplicate), as ``sync_server.records._decide``."""
    if incoming.parent_revision is not None and incoming.revision <= incoming.parent_revision:
        return "rejected", "revision must be greater than parent_revision", False
    if current is None:
        if incoming.parent_revision is None:
            return "saved", None, False
        return "conflict", "record does not exist on the server", False
    if current.kind != incoming.kind:
        return "rejected", "a record's kind cannot change", False
    if current.revision == incoming.revision:
        same = (
            current.parent_revision == incoming.parent_revision
            and current.deleted == incoming.deleted
            and current.key_id == incoming.key_id
            and current.payload == incoming.payload
        )
        if same:
            return "saved", None, True
        return "conflict", "another change has this revision", False
    if incoming.parent_revision == current.revision and incoming.revision > current.revision:
        if current.deleted and not incoming.deleted:
            return "rejected", "the record is deleted; tombstones are final", False
        return "saved", None, False
    return "conflict", "parent_revision is not the server's revision", False


class FakeServer:
    """One account's records."""

    def __init__(self, max_page: int = 1000) -> None:
        self.records: dict[str, Stored] = {}
        self.seq = 0
        self.max_page = max_page
        self.pushes = 0
        self._changed = asyncio.Event()

    def push(self, device_id: str, records: list[RecordIn], atomic: bool) -> PushResponse:
        self.pushes += 1
        last = self.seq
        seq = last
        written: dict[str, Stored] = {}
        results: list[PushResult] = []
        failed = False
        for incoming in records:
            existing = written.get(incoming.id) or self.records.get(incoming.id)
            status, reason, duplicate = decide(existing, incoming)
            if status != "saved":
                failed = True
                conflict = existing is not None and status == "conflict"
                results.append(
                    PushResult(
                        id=incoming.id,
                        status=status,  # type: ignore[arg-type]
                        revision=incoming.revision,
                        reason=reason,
                        server_record=existing.out() if conflict and existing else None,
                    )
                )
                continue
            if duplicate:
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
            written[incoming.id] = Stored(
                incoming.id, incoming.kind, incoming.revision, incoming.parent_revision,
                incoming.deleted, incoming.key_id, device_id, incoming.payload, seq,
            )  # fmt: skip
            results.append(
                PushResult(id=incoming.id, status="saved", revision=incoming.revision, seq=seq)
            )
        if atomic and failed:
            for result in results:
                if result.status == "saved" and not result.duplicate:
                    result.status = "aborted"
                    result.seq = None
            return PushResponse(applied=False, results=results, cursor=last)
        self.records.update(written)
        self.seq = seq
        if written:
            self._changed.set()
            self._changed = asyncio.Event()
        return PushResponse(applied=True, results=results, cursor=seq)

    def changes(self, cursor: int, limit: int | None) -> ChangesResponse:
        limit = min(limit or self.max_page, self.max_page)
        rows = sorted((r for r in self.records.values() if r.seq > cursor), key=lambda r: r.seq)
        page = rows[:limit]
        return ChangesResponse(
            changes=[r.out() for r in page],
            cursor=page[-1].seq if page else cursor,
            has_more=len(rows) > limit,
        )

    async def wait_for_change(self, cursor: int, wait: float) -> None:
        if wait <= 0 or self.seq > cursor:
            return
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), wait)
        except TimeoutError:
            return

    def snapshot(self) -> dict[str, Stored]:
        """A copy of every record: a backup of the server's database."""
        return copy.deepcopy(self.records)


class FakeTransport:
    """A ``SyncTransport`` for one device, with switches for failures."""

    def __init__(self, server: FakeServer, device_id: str) -> None:
        self.server = server
        self.device_id = device_id
        self.offline = False
        self.signed_out = False
        self.lose_next_response = False  # the server saves, the answer never arrives

    async def push(self, records: list[RecordIn], *, atomic: bool = False) -> PushResponse:
        self._check()
        await asyncio.sleep(0)
        response = self.server.push(self.device_id, records, atomic)
        if self.lose_next_response:
            self.lose_next_response = False
            raise SyncOfflineError("The connection to the sync server was reset.")
        return response

    async def changes(
        self, cursor: int, *, limit: int | None = None, wait: float = 0.0
    ) -> ChangesResponse:
        self._check()
        await self.server.wait_for_change(cursor, wait)
        self._check()
        return self.server.changes(cursor, limit)

    def _check(self) -> None:
        if self.signed_out:
            raise SyncAuthError("This device was signed out; sign in again.")
        if self.offline:
            raise SyncOfflineError("The sync server cannot be reached.")


class FakeEscrow:
    """The server side of escrow as the wire contract has it: an X25519 escrow key pair
    (``/v1/meta``), the sealed key as uploaded (never opened on ``PUT``: only its shape
    and the escrow key id are checked), and the account's recoveries for changes."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self.private_key = X25519PrivateKey.generate()
        self.stored: tuple[str, str, bytes] | None = None  # key id, server key id, sealed
        self.puts = 0
        self.recoveries: list[RecoveryOut] = []
        self.change_key_after_meta = False  # the operator replaces the key mid-upload

    @property
    def public_bytes(self) -> bytes:
        from app.sync.escrow import raw_public

        return raw_public(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.public_bytes).hexdigest()[:16]

    def meta(self) -> Meta:
        answer = Meta(
            server_version="test", protocol_version=1, oidc=None, local_accounts=True,
            escrow=EscrowMeta(
                algorithm="X25519-HKDF-SHA256-AES256GCM", public_key=self.public_bytes,
                key_id=self.key_id,
            ),
            limits=LimitsMeta(
                max_record_bytes=1 << 20, max_request_bytes=16 << 20, max_batch_records=500,
                max_page_size=1000,
            ),
            recovery_delay_seconds=60,
        )  # fmt: skip
        if self.change_key_after_meta:
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

            self.change_key_after_meta = False
            self.private_key = X25519PrivateKey.generate()
        return answer

    def put(self, key_id: str, server_key_id: str, sealed: bytes) -> None:
        from app.sync.client import SyncRefusedError

        if server_key_id != self.key_id:
            raise SyncRefusedError("escrow key changed", 409, "escrow-key-changed")
        if not (sealed[:1] == b"\x01" and 77 <= len(sealed) <= 317):
            raise SyncRefusedError("malformed", 422, "escrow-malformed")
        self.puts += 1
        self.stored = (key_id, server_key_id, sealed)

    def open(self, account_id: str) -> bytes:
        """What the operator (key file + database) can read."""
        from app.sync.escrow import escrow_aad, open_sealed

        assert self.stored is not None
        key_id, _server_key_id, sealed = self.stored
        return open_sealed(self.private_key, sealed, escrow_aad(account_id, key_id))


class EscrowFakeTransport(FakeTransport):
    """A :class:`FakeTransport` with the escrow calls (``app.sync.escrow.EscrowTransport``)."""

    def __init__(self, server: FakeServer, device_id: str, escrow: FakeEscrow) -> None:
        super().__init__(server, device_id)
        self.escrow = escrow
        self.escrow_offline = False

    def _check_escrow(self) -> None:
        self._check()
        if self.escrow_offline:
            raise SyncOfflineError("The sync server cannot be reached.")

    async def meta(self) -> Meta:
        self._check_escrow()
        return self.escrow.meta()

    async def escrow_status(self) -> EscrowStatus:
        self._check_escrow()
        stored = self.escrow.stored
        return EscrowStatus(
            escrowed=stored is not None,
            key_id=stored[0] if stored else None,
            server_key_id=stored[1] if stored else None,
        )

    async def put_escrow(self, key_id: str, server_key_id: str, sealed_key: bytes) -> None:
        self._check_escrow()
        self.escrow.put(key_id, server_key_id, sealed_key)

    async def delete_escrow(self) -> None:
        self._check_escrow()
        self.escrow.stored = None

    async def changes(
        self, cursor: int, *, limit: int | None = None, wait: float = 0.0
    ) -> ChangesResponse:
        page = await super().changes(cursor, limit=limit, wait=wait)
        return page.model_copy(update={"recoveries": list(self.escrow.recoveries)})

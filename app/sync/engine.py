"""``SyncEngine``: the client side of sync, over any ``SyncTransport``.

One round (``sync_once``) pushes the outbox and pulls what other devices wrote::

    local write ──trigger──> sync_records.dirty          (same transaction as the write)
    seal      dirty ──> pending bytes + revision saved   (before the push: a retry re-sends
                                                          the same bytes, the server answers
                                                          "duplicate", never a second record)
    push      pending ──> saved | conflict (merge with the server's copy, push again)
    pull      changes(cursor) ──> apply one page per transaction, cursor saved with it

``run`` repeats that in the background: a long-poll pull (``wait=25``), a push shortly
after each local change (``notify_local_change``, debounced), backoff with jitter while
offline, ``Retry-After`` honoured, and a stop with status ``signed_out`` when the server
refuses the device.

Keys (``app.sync.crypto``): each tier's sync key lives in that tier's database, so with
Private locked no Private record is sealed, pushed or opened. Records whose key is not
held here (a Private record while Private is locked, a record that arrived before its
key) wait in the Standard database's inbox and are applied when the key is there.
A record that does not decrypt under a key this device holds is tampered with (or
replayed): it is counted, logged by id only, and never applied.

Attachments (``app.sync.records``): a metadata record and the bytes in parts of about
the server's record limit, sealed under the chat key; parts are sealed and pushed about
one request's worth per round, and on arrival wait in ``sync_attachment_parts`` until
the file is complete and its sha256 matches (``_assemble``).

Nothing here logs message text, titles, keys or tokens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from app.chat.events import (
    ChangeBus,
    ChatChanged,
    ChatCreated,
    ChatMoved,
    ChatPurged,
    ChatRenamed,
    ChatUpdated,
    MessagesChanged,
)
from app.errors import HushchatError, UsageError
from app.executor import BlockingRunner
from app.store.library import Library
from app.store.sync_state import InboxRecord, PendingRecord, SyncRow, SyncState
from app.sync import escrow
from app.sync.crypto import (
    KEYS_RECORD_ID,
    AccountKeys,
    ChatKey,
    OpenedKeys,
    RecordHeader,
    RecordTamperedError,
    SyncKey,
    create_account_keys,
    keys_header,
    open_keys_with_passphrase,
    open_keys_with_recovery,
    open_record,
    read_keys_record,
    rewrap_passphrase,
    seal_key_entry,
    seal_keys_record,
    seal_record,
    tier_slot,
    unwrap_next_key,
    wrap_next_key,
)
from app.sync.errors import (
    SyncAuthError,
    SyncError,
    SyncOfflineError,
    SyncProtocolError,
    SyncRetryLaterError,
)
from app.sync.protocol import (
    ChangesResponse,
    PushResponse,
    PushResult,
    RecordIn,
    RecordOut,
    RecoveryOut,
)
from app.sync.records import (
    ATTACHMENT_PREFIX,
    FINAL_STATUSES,
    ChatState,
    Hlc,
    attachment_values,
    decode_body,
    decode_part,
    encode_body,
    encode_part,
    is_pairing_record,
    kind_of,
    message_values,
    split_part_record_id,
)
from app.tiers import STORED_TIERS, Tier

if TYPE_CHECKING:
    from app.chat.service import ChatService
    from app.vault.kdf import KdfParams

__all__ = [
    "EngineStatus",
    "SyncAuthError",
    "SyncEngine",
    "SyncKeysExistError",
    "SyncNotSetUpError",
    "SyncOfflineError",
    "SyncReport",
    "SyncRetryLaterError",
    "SyncStatus",
    "SyncTransport",
]

log = logging.getLogger(__name__)

PUSH_BATCH = 100
# The server's defaults (``GET /v1/meta`` says what a server allows).
MAX_RECORD_BYTES = 1 << 20
MAX_REQUEST_BYTES = 16 << 20
PAGE_SIZE = 500
LONG_POLL_SECONDS = 25.0
DEBOUNCE_SECONDS = 0.3
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
_MAX_PUSH_ROUNDS = 30
# Push rounds that only carry on with a large attachment's parts (not counted above).
_MAX_PART_ROUNDS = 10_000
# Room in a record for an attachment part's header and the sealing.
PART_OVERHEAD = 1024


class SyncTransport(Protocol):
    """What the engine needs of the server (``app/sync/client.py`` implements it).

    Raises ``SyncOfflineError`` (retry later), ``SyncRetryLaterError`` (wait
    ``retry_after`` seconds) or ``SyncAuthError`` (stop: the device is signed out).
    """

    async def push(self, records: list[RecordIn], *, atomic: bool = False) -> PushResponse: ...

    async def changes(
        self, cursor: int, *, limit: int | None = None, wait: float = 0.0
    ) -> ChangesResponse: ...


class SyncNotSetUpError(SyncError):
    """This profile has no sync keys yet: set them up (first device) or join."""


class SyncKeysExistError(SyncError):
    """The account already has sync keys (set up on another device): join instead."""


class SyncStatus(StrEnum):
    IDLE = "idle"  # synced; waiting for changes
    SYNCING = "syncing"
    OFFLINE = "offline"  # the server cannot be reached, or asked to wait: retrying
    ERROR = "error"  # something failed: ``reason`` says what; retrying with backoff
    SIGNED_OUT = "signed_out"  # the server refused the device; stopped


@dataclass(frozen=True, slots=True)
class EngineStatus:
    state: SyncStatus
    reason: str | None = None
    # The account's recoveries in progress (pending or ready), from the last pull: a new
    # device is getting the Standard key from the server's escrow (``sync status``).
    recoveries: tuple[RecoveryOut, ...] = ()


#: ``sync_settings`` flag of a device that holds only the Standard sync key (recovered
#: from the escrow): it cannot open the account's "keys" record.
STANDARD_ONLY_SETTING = "standard_only"


@dataclass
class SyncReport:
    """What one ``sync_once`` did (counts of records)."""

    pushed: int = 0
    pulled: int = 0
    conflicts: int = 0
    tampered: int = 0
    deferred: int = 0


# Push order: keys before what they open, tombstones after what they delete. An
# attachment's parts are sealed a batch per round after its metadata, so they mostly
# follow it; the receiving device shows the file once both have arrived, in any order.
_PRIORITY = {
    ("chatkey", False): 0,
    ("chat", False): 1,
    ("message", False): 2,
    ("attachment_part", False): 3,
    ("attachment", False): 4,
    ("attachment_part", True): 5,
    ("attachment", True): 5,
    ("message", True): 5,
    ("chat", True): 6,
    ("chatkey", True): 7,
    ("rotation", False): 8,
    ("keys", False): 9,
}
# Records applied without reading the keys again (they bring no key).
_KEYLESS_KINDS = frozenset({"message", "attachment", "attachment_part"})


@dataclass
class _Changes:
    """Events to emit after a transaction commits, and moves to make."""

    events: list[ChatChanged] = field(default_factory=list)
    moves: dict[str, Tier] = field(default_factory=dict)
    _seen: set[ChatChanged] = field(default_factory=set)

    def add(self, event: ChatChanged) -> None:
        if event not in self._seen:
            self._seen.add(event)
            self.events.append(event)


class _Keys:
    """The keys open tiers hold, read once per database-thread step."""

    def __init__(self, states: dict[Tier, SyncState]) -> None:
        self.states = states
        self.current: dict[Tier, SyncKey] = {}
        self.next: dict[Tier, SyncKey] = {}
        self.sync_by_id: dict[str, SyncKey] = {}
        for tier, state in states.items():
            for key_id, tier_name, epoch, secret, kind in state.sync_keys():
                key = SyncKey(Tier(tier_name), epoch, key_id, secret)
                (self.current if kind == "current" else self.next)[tier] = key
                self.sync_by_id[key_id] = key

        self._chat_tiers: dict[str, Tier] = {}
        self._deleted: dict[str, bool] = {}
        self.known_ids = set(self.sync_by_id)
        for state in states.values():
            self.known_ids.update(state.chat_key_ids())

    def chat_key_by_id(self, key_id: str) -> tuple[Tier, ChatKey] | None:
        for tier, state in self.states.items():
            found = state.chat_key_by_id(key_id)
            if found is not None:
                return tier, ChatKey(found[0], key_id, found[1])
        return None

    def chat_tier(self, chat_id: str) -> Tier | None:
        if chat_id in self._chat_tiers:
            return self._chat_tiers[chat_id]
        for tier, state in self.states.items():
            if state.has_chat_row(chat_id):
                self._chat_tiers[chat_id] = tier
                return tier
        return None

    def deleted_here(self, chat_id: str) -> bool:
        """Whether this device deleted the chat (its tombstones may not all be out)."""
        if chat_id not in self._deleted:
            found = self.row(f"chat:{chat_id}")
            self._deleted[chat_id] = found is not None and found[1].local_deleted
        return self._deleted[chat_id]

    def row(self, record_id: str) -> tuple[Tier, SyncRow] | None:
        for tier, state in self.states.items():
            found = state.row(record_id)
            if found is not None:
                return tier, found
        return None


class SyncEngine:
    """Syncs a library's Standard and Private chats through ``transport``.

    ``account_id`` is the account's id on the server (``GET /v1/me``); it is bound into
    every record. Pass the chat service's ``runner`` so that the engine's database work
    runs on the same database thread as everything else, and ``attach`` the service so
    that local changes are pushed soon and remote ones refresh the window.
    """

    def __init__(
        self,
        library: Library,
        transport: SyncTransport,
        account_id: str,
        *,
        runner: BlockingRunner | None = None,
        push_batch: int = PUSH_BATCH,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        page_size: int = PAGE_SIZE,
        long_poll: float = LONG_POLL_SECONDS,
        debounce: float = DEBOUNCE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.library = library
        self.transport = transport
        self.account_id = account_id
        self.runner = runner or BlockingRunner()
        self._push_batch = push_batch
        self._record_bytes = max_record_bytes
        # An attachment's bytes travel in parts of this size, one per record.
        self._part_size = max(1024, max_record_bytes - PART_OVERHEAD)
        self._request_bytes = max_request_bytes // 2  # room for the rest of the request
        self._page_size = page_size
        self._long_poll = long_poll
        self._debounce = debounce
        self._clock = clock
        self._hlc: Hlc | None = None
        self._lock = asyncio.Lock()
        self._local_change = asyncio.Event()
        self._status = EngineStatus(SyncStatus.IDLE)
        self._recoveries: tuple[RecoveryOut, ...] = ()
        self._listeners: list[Callable[[EngineStatus], None]] = []
        self._bus: ChangeBus | None = None
        # Whether an answer is being written by this process (then it is not sent until it
        # ends); a partial answer nobody writes any more (the app stopped) is sent as is.
        self._streaming: Callable[[str], bool] = lambda _message_id: False
        self._unsubscribe: Callable[[], None] | None = None
        self._emitting = False
        self._limits_read = False

    # --- status and wiring -------------------------------------------------------------------

    @property
    def status(self) -> EngineStatus:
        return self._status

    def add_status_listener(self, callback: Callable[[EngineStatus], None]) -> Callable[[], None]:
        """Call ``callback`` on every status change; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _set_status(self, state: SyncStatus, reason: str | None = None) -> None:
        status = EngineStatus(state, reason, self._recoveries)
        if status == self._status:
            return
        self._status = status
        for callback in list(self._listeners):
            callback(status)

    def _note_recoveries(self, page: ChangesResponse) -> None:
        """Keep the account's recoveries in progress from a changes answer (it lists them
        all every time) in the status."""
        recoveries = tuple(r for r in page.recoveries if r.status in ("pending", "ready"))
        if recoveries == self._recoveries:
            return
        self._recoveries = recoveries
        self._set_status(self._status.state, self._status.reason)

    def attach(self, service: ChatService) -> None:
        """Push after the service's changes; emit remote changes on its ``changes`` bus."""
        self.detach()
        # One database thread for the service's writes and the engine's: a SQLite
        # connection must not be used from two threads at once.
        self.runner = service.runner
        self._streaming = service.streaming.__contains__
        self._bus = service.changes
        self._unsubscribe = service.changes.subscribe(self._on_service_change)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None
        self._bus = None

    def _on_service_change(self, _event: ChatChanged) -> None:
        if not self._emitting:
            self.notify_local_change()

    def notify_local_change(self) -> None:
        """A chat changed here: push soon (debounced)."""
        self._local_change.set()

    def _emit(self, changes: _Changes) -> None:
        if self._bus is None:
            return
        self._emitting = True
        try:
            for event in changes.events:
                self._bus.emit(event)
        finally:
            self._emitting = False

    # --- database access ---------------------------------------------------------------------

    def _states(self) -> dict[Tier, SyncState]:
        return {
            tier: self.library.store(tier).sync_state()
            for tier in STORED_TIERS
            if tier in self.library.tiers
        }

    def _standard(self, states: dict[Tier, SyncState]) -> SyncState:
        try:
            return states[Tier.STANDARD]
        except KeyError:
            raise UsageError("sync needs the vault unlocked") from None

    def _clock_hlc(self, standard: SyncState) -> Hlc:
        if self._hlc is None:
            node = standard.setting("node")
            if node is None:
                node = secrets.token_hex(6)
                with standard.transaction():
                    standard.set_setting("node", node)
            self._hlc = Hlc(str(node)) if self._clock is None else Hlc(str(node), self._clock)
        return self._hlc

    def _header(
        self, record_id: str, kind: str, revision: int, deleted: bool, key_id: str
    ) -> RecordHeader:
        return RecordHeader(self.account_id, record_id, kind, revision, deleted, key_id)

    @staticmethod
    def _account_keys(standard: SyncState) -> AccountKeys | None:
        raw = standard.setting("account_keys")
        return None if raw is None else AccountKeys.from_json(json.loads(raw))

    async def backlog(self) -> tuple[int, int]:
        """(local changes not yet on the server, received records waiting for a key)."""

        def read() -> tuple[int, int]:
            states = self._states()
            waiting = sum(state.counts()[0] for state in states.values())
            return waiting, self._standard(states).counts()[1]

        return await self.runner.db(read)

    async def is_set_up(self) -> bool:
        """Whether this profile holds the account's keys (set up or joined)."""

        def read() -> bool:
            standard = self._standard(self._states())
            return self._account_keys(standard) is not None or bool(
                standard.setting(STANDARD_ONLY_SETTING)
            )

        return await self.runner.db(read)

    async def is_standard_only(self) -> bool:
        """Whether this profile holds only the Standard sync key (recovered from the
        escrow): Private chats of the account stay unreadable here."""

        def read() -> bool:
            return bool(self._standard(self._states()).setting(STANDARD_ONLY_SETTING))

        return await self.runner.db(read)

    # --- first device: set up the keys record -------------------------------------------------

    async def setup_keys(
        self, *, passphrase: str, recovery_secret: bytes | None, kdf: KdfParams
    ) -> None:
        """Create the account's sync keys and publish the "keys" record (first device).

        ``passphrase`` and ``recovery_secret`` (the vault recovery code's secret) are the
        only ways a new device will open the record. SyncKeysExistError if the account
        already has one (then join with ``join_with_passphrase``). Both tiers must be open.
        """
        if Tier.PRIVATE not in self.library.tiers:
            raise UsageError("setting up sync needs Private chats open: unlock with the passphrase")
        account = await self.runner.blocking(
            create_account_keys,
            self.account_id,
            passphrase=passphrase,
            kdf=kdf,
            recovery_secret=recovery_secret,
        )
        async with self._lock:
            record = await self.runner.db(self._install_new_keys, account)
            response = await self.transport.push([record], atomic=True)
            (result,) = response.results
            if result.status != "saved":
                await self.runner.db(self._uninstall_keys)
                raise SyncKeysExistError(
                    "This sync account already has its keys (set up from another device): "
                    "join it with your passphrase or recovery code."
                )
            await self.runner.db(self._after_keys_saved, record.revision, record.payload)
        self.notify_local_change()

    def _install_new_keys(self, account: AccountKeys) -> RecordIn:
        states = self._states()
        standard = self._standard(states)
        if self._account_keys(standard) is not None or standard.setting(STANDARD_ONLY_SETTING):
            raise SyncKeysExistError("This profile already has sync keys.")
        keys = {tier: SyncKey.generate(tier) for tier in states}
        for tier, state in states.items():
            with state.transaction():
                key = keys[tier]
                state.put_sync_key(key.key_id, tier.value, key.epoch, key.secret, "current")
        header = keys_header(self.account_id, 1, account)
        entries = [seal_key_entry(self.account_id, account, key) for key in keys.values()]
        payload = seal_keys_record(header, account, entries)
        with standard.transaction():
            standard.set_setting("account_keys", json.dumps(account.to_json()))
            standard.set_setting("account_id", self.account_id)
            standard.save_pending(
                PendingRecord(KEYS_RECORD_ID, "keys", 1, None, False, account.key_id, payload), None
            )
            if Tier.STANDARD in keys:
                escrow.mark_needed(standard, keys[Tier.STANDARD].key_id, create=True)
        return RecordIn(
            id=KEYS_RECORD_ID, kind="keys", revision=1, parent_revision=None, deleted=False,
            key_id=account.key_id, payload=payload,
        )  # fmt: skip

    def _uninstall_keys(self) -> None:
        states = self._states()
        standard = self._standard(states)
        for state in states.values():
            with state.transaction():
                for key_id, *_ in state.sync_keys():
                    state.delete_sync_key(key_id)
        with standard.transaction():
            standard.set_setting("account_keys", None)
            standard.set_setting("account_id", None)
            standard.set_setting(escrow.NEEDED_SETTING, None)
            standard.delete_row(KEYS_RECORD_ID)

    def _after_keys_saved(self, revision: int, payload: bytes) -> None:
        standard = self._standard(self._states())
        with standard.transaction():
            standard.mark_pushed(KEYS_RECORD_ID, revision, False)
            standard.set_setting("keys_payload", payload)
            standard.set_setting("keys_stale", None)

    # --- a new device: join with the passphrase or the recovery code --------------------------

    async def join_with_passphrase(self, passphrase: str) -> SyncReport:
        """Fetch the account's records, open the "keys" record with the passphrase (the
        key-record private key is used once and forgotten) and apply everything."""
        return await self._join(lambda h, p: open_keys_with_passphrase(h, p, passphrase))

    async def join_with_recovery(self, recovery_secret: bytes) -> SyncReport:
        """Like ``join_with_passphrase``, with the recovery code's secret."""
        return await self._join(lambda h, p: open_keys_with_recovery(h, p, recovery_secret))

    async def join_with(self, opener: Callable[[RecordHeader, bytes], OpenedKeys]) -> SyncReport:
        """Like ``join_with_passphrase``, with any way of opening the "keys" record (linking
        from another device hands over the key-record keys themselves)."""
        return await self._join(opener)

    async def _join(self, opener: Callable[[RecordHeader, bytes], OpenedKeys]) -> SyncReport:
        if Tier.PRIVATE not in self.library.tiers:
            raise UsageError("joining sync needs Private chats open: unlock with the passphrase")
        report = SyncReport()
        async with self._lock:
            # Without keys every record waits in the inbox, the keys record among them
            # (it comes first: a new account's first record). The rest is pulled after
            # the keys are in, and applied as it arrives rather than from the inbox.
            await self._pull(report, until=lambda: self._inbox_keys_record() is not None)
            found = await self.runner.db(self._inbox_keys_record)
            if found is None:
                raise SyncNotSetUpError(
                    "This sync account has no keys yet: set up sync on your first device."
                )
            header = self._header(
                KEYS_RECORD_ID, "keys", found.revision, found.deleted, found.key_id
            )
            opened = await self.runner.blocking(opener, header, found.payload)
            await self.runner.db(self._install_joined_keys, opened, found)
        more = await self.sync_once()
        report.pushed += more.pushed
        report.pulled += more.pulled
        report.conflicts += more.conflicts
        report.tampered += more.tampered
        report.deferred = more.deferred
        return report

    def _inbox_keys_record(self) -> InboxRecord | None:
        standard = self._standard(self._states())
        for record in standard.inbox():
            if record.record_id == KEYS_RECORD_ID:
                return record
        return None

    def _install_joined_keys(self, opened: OpenedKeys, record: InboxRecord) -> None:
        states = self._states()
        standard = self._standard(states)
        for tier, state in states.items():
            key = opened.sync_keys.get(tier)
            if key is None:
                raise RecordTamperedError(f"the keys record holds no {tier.value} sync key")
            with state.transaction():
                for key_id, *_ in state.sync_keys():
                    state.delete_sync_key(key_id)
                state.put_sync_key(key.key_id, tier.value, key.epoch, key.secret, "current")
        with standard.transaction():
            standard.set_setting("account_keys", json.dumps(opened.account_keys.to_json()))
            standard.set_setting("account_id", self.account_id)
            standard.set_setting(STANDARD_ONLY_SETTING, None)
            standard.set_setting("keys_payload", record.payload)
            standard.put_row(KEYS_RECORD_ID, "keys", None, server_revision=record.revision)
            standard.inbox_delete(KEYS_RECORD_ID)

    # --- a recovered device: the Standard sync key from the escrow only ----------------------

    async def join_with_standard_key(self, key: SyncKey) -> SyncReport:
        """Join with the Standard sync key alone (recovered from the server's escrow:
        ``app/sync/recovery.py``) and fetch every Standard chat.

        The account's "keys" record cannot be opened without the passphrase or recovery
        code: it is left as it is on the server (other devices keep using it) and waits,
        unopened, in this device's inbox, like every Private record. If the Standard key
        is an older epoch, the "rotate:<key id>" records lead it to the current one.
        Private chats made here are not synced (no device could read them)."""
        await self.install_standard_key(key)
        return await self.sync_once()

    async def install_standard_key(self, key: SyncKey) -> None:
        """The local half of :meth:`join_with_standard_key` (no network): afterwards the
        device counts as set up, and any later round fetches the Standard chats."""
        if key.tier is not Tier.STANDARD:
            raise ValueError("only a Standard sync key can be recovered")
        async with self._lock:
            await self.runner.db(self._install_standard_key, key)

    def _install_standard_key(self, key: SyncKey) -> None:
        states = self._states()
        standard = self._standard(states)
        if self._account_keys(standard) is not None:
            raise SyncKeysExistError("This profile already has the account's sync keys.")
        with standard.transaction():
            for key_id, *_ in standard.sync_keys():
                standard.delete_sync_key(key_id)
            standard.put_sync_key(key.key_id, key.tier.value, key.epoch, key.secret, "current")
            standard.set_setting("account_id", self.account_id)
            standard.set_setting(STANDARD_ONLY_SETTING, 1)
            # The server holds this key in its escrow already.
            standard.set_setting(escrow.DONE_SETTING, key.key_id)

    # --- escrow of the Standard sync key --------------------------------------------------

    async def escrow_state(self) -> tuple[bool, str | None, str | None]:
        """(turned off here, key id waiting to be escrowed, key id the server accepted)."""

        def read() -> tuple[bool, str | None, str | None]:
            standard = self._standard(self._states())
            waiting = escrow.needed(standard)
            done = standard.setting(escrow.DONE_SETTING)
            return (
                bool(standard.setting(escrow.OFF_SETTING)),
                waiting[0] if waiting else None,
                None if done is None else str(done),
            )

        return await self.runner.db(read)

    async def set_escrow(self, enabled: bool) -> None:
        """Turn the escrow of the Standard sync key on (escrow the current key now) or
        off (the server forgets it: ``DELETE /v1/escrow``; remembered here, and no device
        escrows a later key epoch while the server holds none)."""
        transport = self.transport
        if not isinstance(transport, escrow.EscrowTransport):
            raise UsageError("this sync connection cannot escrow keys")
        async with self._lock:
            if not await self.runner.db(self._check_account):
                raise SyncNotSetUpError("Sync is not set up on this device.")
            if enabled:

                def turn_on() -> None:
                    states = self._states()
                    standard = self._standard(states)
                    key = _Keys(states).current.get(Tier.STANDARD)
                    if key is None:
                        raise SyncNotSetUpError("This device holds no Standard sync key.")
                    with standard.transaction():
                        standard.set_setting(escrow.OFF_SETTING, None)
                        escrow.mark_needed(standard, key.key_id, create=True)

                await self.runner.db(turn_on)
                await self._escrow(transport)
            else:
                await transport.delete_escrow()

                def turn_off() -> None:
                    standard = self._standard(self._states())
                    with standard.transaction():
                        standard.set_setting(escrow.OFF_SETTING, 1)
                        standard.set_setting(escrow.NEEDED_SETTING, None)
                        standard.set_setting(escrow.DONE_SETTING, None)

                await self.runner.db(turn_off)

    async def _escrow_if_needed(self) -> None:
        """Escrow the Standard sync key if a set-up or a new key epoch asked for it (the
        request stays in the database until the server accepted it). A refusal is logged
        and retried next round; it never stops syncing."""
        transport = self.transport
        if not isinstance(transport, escrow.EscrowTransport):
            return
        try:
            await self._escrow(transport)
        except (SyncProtocolError, escrow.SealingError) as error:
            log.warning("sync: escrowing the Standard key failed (%s); retrying later", error)

    async def _escrow(self, transport: escrow.EscrowTransport) -> None:
        def read() -> tuple[tuple[str, bool] | None, SyncKey | None]:
            states = self._states()
            standard = self._standard(states)
            if standard.setting(escrow.OFF_SETTING):
                return None, None
            return escrow.needed(standard), _Keys(states).current.get(Tier.STANDARD)

        waiting, key = await self.runner.db(read)
        if waiting is None or key is None:
            return
        _key_id, create = waiting
        accepted = False
        if not create and not (await transport.escrow_status()).escrowed:
            log.info("sync: no escrow on the server (turned off); not escrowing the new key")
        else:
            plaintext = escrow.encode_escrowed_key(key)
            aad = escrow.escrow_aad(self.account_id, key.key_id)
            for attempt in range(2):
                meta = (await transport.meta()).escrow
                if meta.algorithm != escrow.ESCROW_ALGORITHM:
                    raise escrow.SealingError(
                        f"the server's escrow uses {meta.algorithm!r}, which this Hushchat "
                        "does not know"
                    )
                sealed = escrow.seal(meta.public_key, plaintext, aad)
                try:
                    await transport.put_escrow(key.key_id, meta.key_id, sealed)
                except SyncProtocolError as error:
                    if getattr(error, "slug", None) == "escrow-key-changed" and attempt == 0:
                        log.info("sync: the server's escrow key changed; sealing again")
                        continue
                    raise
                accepted = True
                break

        def done() -> None:
            standard = self._standard(self._states())
            with standard.transaction():
                if escrow.needed(standard) == waiting:
                    standard.set_setting(escrow.NEEDED_SETTING, None)
                if accepted:
                    standard.set_setting(escrow.DONE_SETTING, key.key_id)

        await self.runner.db(done)
        if accepted:
            log.info("sync: the Standard sync key (epoch %d) is escrowed", key.epoch)

    # --- passphrase change --------------------------------------------------------------------

    async def change_passphrase(self, current: str, new: str, kdf: KdfParams) -> None:
        """Re-wrap the key-record private key for a new passphrase (the current one opens
        it: WrongKeySecretError otherwise) and publish the "keys" record again."""

        def read() -> AccountKeys:
            account = self._account_keys(self._standard(self._states()))
            if account is None:
                raise SyncNotSetUpError("This profile has no sync keys to change.")
            return account

        account = await self.runner.db(read)
        changed = await self.runner.blocking(
            rewrap_passphrase,
            self.account_id,
            account,
            current_passphrase=current,
            new_passphrase=new,
            kdf=kdf,
        )

        def save() -> None:
            standard = self._standard(self._states())
            with standard.transaction():
                standard.set_setting("account_keys", json.dumps(changed.to_json()))
                standard.set_setting("keys_stale", 1)

        await self.runner.db(save)
        self.notify_local_change()

    # --- one round ----------------------------------------------------------------------------

    async def sync_once(self) -> SyncReport:
        """Push the outbox (merging conflicts), then pull until up to date, then push
        what the merges left. SyncNotSetUpError before the keys are set up or joined."""
        report = SyncReport()
        async with self._lock:
            set_up = await self.runner.db(self._check_account)
            if not set_up:
                raise SyncNotSetUpError(
                    "Sync is not set up on this device: set it up, or join with your "
                    "passphrase or recovery code."
                )
            await self._read_limits()
            await self._apply_inbox(report)
            await self._push(report)
            await self._pull(report)
            await self._push(report)
            await self.runner.db(self._forget_moved_keys)
            await self._escrow_if_needed()
            report.deferred = await self.runner.db(self._inbox_size)
        return report

    async def _read_limits(self) -> None:
        """Once per engine: adopt the server's limits (``GET /v1/meta``) where they are
        lower than this engine's, so that attachment parts and push batches fit a server
        configured below the defaults. A failure to read them is retried next round."""
        meta = getattr(self.transport, "meta", None)
        if self._limits_read or not callable(meta):
            return
        try:
            limits = (await meta()).limits
        except SyncProtocolError as error:
            log.warning("sync: the server's limits could not be read (%s); using defaults", error)
            return
        self._limits_read = True
        self._record_bytes = min(self._record_bytes, limits.max_record_bytes)
        self._part_size = max(1024, self._record_bytes - PART_OVERHEAD)
        self._request_bytes = min(self._request_bytes, limits.max_request_bytes // 2)
        self._push_batch = max(1, min(self._push_batch, limits.max_batch_records))
        self._page_size = max(1, min(self._page_size, limits.max_page_size))

    def _check_account(self) -> bool:
        """Whether the keys are set up here, for this account."""
        standard = self._standard(self._states())
        if self._account_keys(standard) is None and not standard.setting(STANDARD_ONLY_SETTING):
            return False
        stored = standard.setting("account_id")
        if stored is not None and stored != self.account_id:
            raise SyncError(
                "This profile syncs with another account; sign out of it before signing in "
                "to a different one."
            )
        return True

    def _inbox_size(self) -> int:
        return self._standard(self._states()).counts()[1]

    # --- push ---------------------------------------------------------------------------------

    async def _push(self, report: SyncReport) -> None:
        rounds = part_rounds = 0
        while rounds < _MAX_PUSH_ROUNDS and part_rounds < _MAX_PART_ROUNDS:
            pending, more_parts = await self.runner.db(self._prepare)
            if not pending:
                return
            if more_parts:  # a large attachment, a bounded batch of its parts at a time
                part_rounds += 1
            else:
                rounds += 1
            for batch in self._batches(pending):
                response = await self.transport.push(
                    [
                        RecordIn(
                            id=r.record_id, kind=r.kind, revision=r.revision,
                            parent_revision=r.parent_revision, deleted=r.deleted,
                            key_id=r.key_id, payload=r.payload,
                        )
                        for _tier, r in batch
                    ]
                )  # fmt: skip
                changes = await self.runner.db(self._after_push, batch, response, report)
                self._emit(changes)
                await self._make_moves(changes)
        log.warning("sync: records still waiting after %d push rounds", _MAX_PUSH_ROUNDS)

    def _batches(
        self, pending: list[tuple[Tier, PendingRecord]]
    ) -> Iterator[list[tuple[Tier, PendingRecord]]]:
        """Push batches within the server's record count and request size."""
        batch: list[tuple[Tier, PendingRecord]] = []
        size = 0
        for item in pending:
            # base64 (4/3) plus the JSON around each record
            cost = len(item[1].payload) * 4 // 3 + 512
            if batch and (len(batch) >= self._push_batch or size + cost > self._request_bytes):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += cost
        if batch:
            yield batch

    def _prepare(self) -> tuple[list[tuple[Tier, PendingRecord]], bool]:
        """Seal what changed (and start an epoch change if a delete asked for one);
        the records to push, in push order, and whether attachment parts are left to seal
        (at most about one request's worth is sealed per round: a 50 MB file is never
        held in memory whole)."""
        states = self._states()
        standard = self._standard(states)
        hlc = self._clock_hlc(standard)
        keys = _Keys(states)
        more_parts = False
        for tier, state in states.items():
            current = keys.current.get(tier)
            if current is None:
                continue
            if (
                state.setting("rotate_pending")
                and tier not in keys.next
                and not any(other.has_work() for other in states.values())
            ):
                # Alone in its round: a conflict on anything sealed under the old key
                # must still be readable when it comes back.
                self._start_rotation(state, current)
                keys = _Keys(states)
            if tier in keys.next:
                continue  # chat keys are re-wrapped once the epoch change is saved
            rows = state.dirty_rows()
            if rows:
                budget = self._part_budget() - state.pending_part_count()
                with state.transaction():
                    for row in rows:
                        if row.kind == "attachment_part" and not row.local_deleted:
                            if budget <= 0:
                                more_parts = True
                                continue
                            budget -= 1
                        self._seal(state, keys, row, hlc)
        self._seal_keys_record(states, keys)
        pending: list[tuple[Tier, PendingRecord]] = []
        for tier, state in states.items():
            for record in state.pending():
                if len(record.payload) > self._record_bytes:
                    # The server would refuse it (413) and hold up every other record.
                    log.warning(
                        "sync: record %s is too large to sync (%d bytes)",
                        record.record_id,
                        len(record.payload),
                    )
                    with state.transaction():
                        state.drop_pending(record.record_id, dirty=False)
                    continue
                pending.append((tier, record))
        pending.sort(key=lambda item: _PRIORITY.get((item[1].kind, item[1].deleted), 10))
        return pending, more_parts

    def _part_budget(self) -> int:
        """Attachment parts sealed per push round: about one request's worth."""
        return max(1, self._request_bytes * 3 // (4 * (self._part_size + PART_OVERHEAD)))

    def _start_rotation(self, state: SyncState, current: SyncKey) -> None:
        new = current.next_epoch()
        record_id = f"rotate:{current.key_id}"
        header = self._header(record_id, "rotation", 1, False, current.key_id)
        payload = wrap_next_key(current, new, header)
        with state.transaction():
            state.put_sync_key(new.key_id, new.tier.value, new.epoch, new.secret, "next")
            state.save_pending(
                PendingRecord(record_id, "rotation", 1, None, False, current.key_id, payload), None
            )
        log.info("sync: starting a new %s key epoch (%d)", new.tier.value, new.epoch)

    def _ensure_chat_key(self, state: SyncState, chat_id: str, hlc: Hlc) -> ChatKey:
        found = state.chat_key(chat_id)
        if found is not None:
            return ChatKey(chat_id, found[0], found[1])
        key = ChatKey.generate(chat_id)
        state.put_chat_key(chat_id, key.key_id, key.secret, hlc.tick())
        return key

    def _seal(self, state: SyncState, keys: _Keys, row: SyncRow, hlc: Hlc) -> None:
        """Seal one dirty record into its pending push (inside a transaction)."""
        if row.server_deleted:
            state.drop_pending(row.record_id, dirty=False)  # tombstones are final
            return
        if row.pending_revision is not None:
            revision, parent = row.pending_revision, row.pending_parent
        else:
            revision, parent = row.server_revision + 1, row.server_revision or None
        chat_id = row.chat_id
        if chat_id is None:
            state.set_dirty(row.record_id, False)
            return
        current = keys.current[state.tier]
        body: dict[str, Any]
        plaintext: bytes | None = None  # set instead of ``body`` for an attachment part
        new_state: dict[str, Any] | None = None
        unchanged = row.server_revision > 0 and row.pending_revision is None
        if row.kind == "chatkey":
            if row.local_deleted:
                key_id, secret, body = current.key_id, current.secret, {"chat_id": chat_id}
            else:
                chat = state.chat_row(chat_id)
                if chat is None or chat["move_state"] is not None:
                    state.set_dirty(row.record_id, chat is not None)
                    return
                chat_key = self._ensure_chat_key(state, chat_id, hlc)
                new_state = {"sync_key_id": current.key_id, "chat_key_id": chat_key.key_id}
                if unchanged and row.state == new_state:
                    state.set_dirty(row.record_id, False)
                    return
                stored = state.chat_key(chat_id)
                key_id, secret = current.key_id, current.secret
                body = {
                    "chat_id": chat_id,
                    "key_id": chat_key.key_id,
                    "secret": _b64(chat_key.secret),
                    "hlc": stored[2] if stored else "",
                }
        else:
            found = state.chat_key(chat_id)
            if row.local_deleted:
                if found is None:
                    state.delete_row(row.record_id)  # nothing can seal it: the key is gone
                    return
                key_id, secret = found[0], found[1]
                body = {"chat_id": chat_id}
                if row.kind == "message":
                    body["parent_id"] = row.state.get("parent_id")
            elif row.kind in ("attachment", "attachment_part"):
                sealed = self._attachment_body(state, row, hlc, unchanged)
                if sealed is None:
                    return
                key_id, secret, body, plaintext, new_state = sealed
            elif row.kind == "chat":
                chat = state.chat_row(chat_id)
                if chat is None or chat["move_state"] is not None:
                    state.set_dirty(row.record_id, chat is not None)
                    return
                chat_key = self._ensure_chat_key(state, chat_id, hlc)
                merged = ChatState.from_json(row.state) if row.state.get("values") else ChatState()
                if row.state.get("awaiting_leaf"):
                    # The shown version is a message that has not arrived yet: keep it.
                    chat = {**chat, "active_leaf_id": merged.values.get("active_leaf_id")}
                changed = merged.fold_local(chat, hlc)
                new_state = {**merged.to_json(), "key_id": chat_key.key_id}
                if row.state.get("awaiting_leaf"):
                    new_state["awaiting_leaf"] = True
                if (
                    unchanged
                    and not changed
                    and not row.state.get("push")
                    and row.state.get("key_id") == chat_key.key_id
                ):
                    state.set_state(row.record_id, new_state)
                    state.set_dirty(row.record_id, False)
                    return
                key_id, secret = chat_key.key_id, chat_key.secret
                body = {"chat_id": chat_id, **merged.to_json()}
            else:
                message = state.message_row(row.record_id.removeprefix("msg:"))
                if message is None:
                    state.set_dirty(row.record_id, False)
                    return
                if message["status"] not in FINAL_STATUSES and self._streaming(message["id"]):
                    return  # still streaming here: synced once final (it stays dirty)
                chat_key = self._ensure_chat_key(state, chat_id, hlc)
                new_state = {"key_id": chat_key.key_id}
                if message["status"] not in FINAL_STATUSES:
                    new_state["partial"] = True  # sent cut off: its final version follows
                if (
                    unchanged
                    and row.state.get("key_id") == chat_key.key_id
                    and not row.state.get("partial")  # a message changes only once, then
                ):
                    state.set_dirty(row.record_id, False)
                    return
                key_id, secret = chat_key.key_id, chat_key.secret
                body = _fit(message, self._record_bytes - 64)
        header = self._header(row.record_id, row.kind, revision, row.local_deleted, key_id)
        payload = seal_record(secret, header, plaintext or encode_body(body))
        state.save_pending(
            PendingRecord(
                row.record_id, row.kind, revision, parent, row.local_deleted, key_id, payload
            ),
            new_state,
        )

    def _attachment_body(
        self, state: SyncState, row: SyncRow, hlc: Hlc, unchanged: bool
    ) -> tuple[str, bytes, dict[str, Any], bytes | None, dict[str, Any]] | None:
        """What a live attachment record seals: (key id, key, JSON body, or the plaintext
        of a part, new state); None when there is nothing to seal (the row is settled)."""
        assert row.chat_id is not None
        chat_id = row.chat_id
        if row.kind == "attachment":
            attachment_id = row.record_id.removeprefix(ATTACHMENT_PREFIX)
        else:
            attachment_id, index = split_part_record_id(row.record_id)
        found = state.attachment_row(attachment_id)
        meta = row if row.kind == "attachment" else state.row(ATTACHMENT_PREFIX + attachment_id)
        if found is None or meta is None:
            state.set_dirty(row.record_id, False)
            return None
        chat_key = self._ensure_chat_key(state, chat_id, hlc)
        if unchanged and row.state.get("key_id") == chat_key.key_id:
            state.set_dirty(row.record_id, False)
            return None
        size = int(found["size"])
        if row.kind == "attachment":
            part_size = int(row.state.get("part_size") or self._part_size)
            parts = -(-size // part_size)
            state.put_part_rows(attachment_id, chat_id, parts)  # sealed in later rounds
            body = {name: found[name] for name in (
                "message_id", "name", "media_type", "size", "sha256", "position", "created_at"
            )}  # fmt: skip
            body.update(chat_id=chat_id, parts=parts, part_size=part_size)
            new_state = {"key_id": chat_key.key_id, "parts": parts, "part_size": part_size}
            return chat_key.key_id, chat_key.secret, body, None, new_state
        part_size = int(meta.state.get("part_size") or 0)
        if part_size <= 0 or index * part_size >= size:
            state.set_dirty(row.record_id, False)  # the metadata is sealed first
            return None
        data = state.blob_range(str(found["sha256"]), index * part_size, part_size)
        plaintext = encode_part(chat_id, data)
        return chat_key.key_id, chat_key.secret, {}, plaintext, {"key_id": chat_key.key_id}

    def _seal_keys_record(self, states: dict[Tier, SyncState], keys: _Keys) -> None:
        """Publish the "keys" record again when it no longer names every open tier's
        current key, names a retired one, or the slots changed."""
        standard = self._standard(states)
        account = self._account_keys(standard)
        if account is None:
            return
        row = standard.row(KEYS_RECORD_ID)
        if row is not None and row.pending_revision is not None:
            return
        last = standard.setting("keys_payload")
        entries: list[dict[str, Any]] = []
        if last is not None:
            entries = list(json.loads(bytes(last)).get("entries", []))
        by_slot = {str(entry.get("slot")): entry for entry in entries}
        changed = bool(standard.setting("keys_stale"))  # new slots (passphrase changed)
        for tier, key in keys.current.items():
            slot = tier_slot(account, tier)
            published = by_slot.get(slot)
            retired = set(json.loads(states[tier].setting("retired_key_ids") or "[]"))
            # A key id this device never held is a later epoch it has not pulled yet:
            # left as it is. A retired one (or none) is replaced by the current key.
            if published is None or published.get("key_id") in retired:
                by_slot[slot] = seal_key_entry(self.account_id, account, key)
                changed = True
        if not changed:
            return
        server_revision = row.server_revision if row is not None else 0
        revision = server_revision + 1
        header = keys_header(self.account_id, revision, account)
        payload = seal_keys_record(header, account, list(by_slot.values()))
        with standard.transaction():
            standard.save_pending(
                PendingRecord(
                    KEYS_RECORD_ID, "keys", revision, server_revision or None, False,
                    account.key_id, payload,
                ),
                None,
            )  # fmt: skip
            standard.set_setting("keys_stale", None)

    def _after_push(
        self,
        batch: list[tuple[Tier, PendingRecord]],
        response: PushResponse,
        report: SyncReport,
    ) -> _Changes:
        states = self._states()
        results = {result.id: result for result in response.results}
        conflicts: list[RecordOut] = []
        changes = _Changes()
        with contextlib.ExitStack() as transactions:
            # One transaction per database for the whole answer, not one per record.
            for tier in {tier for tier, _record in batch}:
                if tier in states:
                    transactions.enter_context(states[tier].transaction())
            self._record_results(batch, states, results, report, conflicts, changes)
        self._skip_own_records(states, response)
        if conflicts:
            applied = self._apply_records(conflicts, report, cursor=None, conflicts=True)
            for event in applied.events:
                changes.add(event)
            changes.moves.update(applied.moves)
        return changes

    def _skip_own_records(self, states: dict[Tier, SyncState], response: PushResponse) -> None:
        """Move the pull cursor past the records this push saved when nothing else comes
        between: they are known here already, so a large attachment's parts are not
        downloaded again. Only when the cursor stands right before them and their
        sequence numbers follow one another (the server numbers an account's records in
        commit order, so no other device's record can be among them)."""
        seqs = sorted(
            r.seq
            for r in response.results
            if r.status == "saved" and not r.duplicate and r.seq is not None
        )
        if not seqs or seqs[-1] - seqs[0] + 1 != len(seqs):
            return
        standard = self._standard(states)
        with standard.transaction():
            if int(standard.setting("cursor") or 0) == seqs[0] - 1:
                standard.set_setting("cursor", seqs[-1])

    def _record_results(
        self,
        batch: list[tuple[Tier, PendingRecord]],
        states: dict[Tier, SyncState],
        results: dict[str, PushResult],
        report: SyncReport,
        conflicts: list[RecordOut],
        changes: _Changes,
    ) -> None:
        for tier, record in batch:
            state = states.get(tier)
            result = results.get(record.record_id)
            if state is None or result is None:
                continue
            if result.status == "saved":
                if not result.duplicate:
                    report.pushed += 1
                self._saved(states, tier, state, record)
            elif result.status == "conflict":
                report.conflicts += 1
                if result.server_record is not None:
                    conflicts.append(result.server_record)
                else:
                    with state.transaction():
                        state.drop_pending(record.record_id, dirty=True)
                        state.put_row(
                            record.record_id, record.kind, self._chat_of(state, record),
                            server_revision=0, dirty=True,
                            state=(state.row(record.record_id) or _EMPTY_ROW).state,
                        )  # fmt: skip
            elif result.status == "rejected":
                log.warning(
                    "sync: the server refused record %s (%s)", record.record_id, result.reason
                )
                with state.transaction():
                    state.drop_pending(record.record_id, dirty=False)
                if "tombstone" in (result.reason or "") and record.kind == "chat":
                    chat_id = record.record_id.removeprefix("chat:")
                    self._delete_chat_locally(states, chat_id, changes)

    @staticmethod
    def _chat_of(state: SyncState, record: PendingRecord) -> str | None:
        row = state.row(record.record_id)
        return row.chat_id if row is not None else None

    def _saved(
        self, states: dict[Tier, SyncState], tier: Tier, state: SyncState, record: PendingRecord
    ) -> None:
        standard = self._standard(states)
        with state.transaction():
            state.mark_pushed(record.record_id, record.revision, record.deleted)
            chat_row = state.row(record.record_id)
            if record.deleted and chat_row is not None and chat_row.chat_id is not None:
                self._forget_shredded_key(state, chat_row.chat_id)
            elif record.kind == "rotation":
                self._finish_rotation(state, record.key_id, adopted=None)
        if record.kind == "keys":
            with standard.transaction():
                standard.set_setting("keys_payload", record.payload)
        if record.kind == "rotation":
            with standard.transaction():
                standard.set_setting("keys_stale", 1)

    def _finish_rotation(self, state: SyncState, old_key_id: str, adopted: SyncKey | None) -> None:
        """Inside a transaction: the old key goes, the next one (ours, or ``adopted`` from
        another device) becomes current."""
        keys = state.sync_keys()
        ours = [k for k in keys if k[4] == "next"]
        for key_id, *_ in keys:
            if key_id == old_key_id or (adopted is not None and key_id != adopted.key_id):
                state.delete_sync_key(key_id)
        if adopted is not None:
            state.put_sync_key(
                adopted.key_id, adopted.tier.value, adopted.epoch, adopted.secret, "current"
            )
        elif ours:
            key_id, tier, epoch, secret, _ = ours[0]
            state.put_sync_key(key_id, tier, epoch, secret, "current")
        retired = json.loads(state.setting("retired_key_ids") or "[]")
        retired.append(old_key_id)
        state.set_setting("retired_key_ids", json.dumps(retired[-50:]))
        if adopted is None:
            state.set_setting("rotate_pending", None)
            if state.tier is Tier.STANDARD and ours:
                # This device made the new epoch: it replaces the escrowed key (if the
                # account has one); devices that follow it leave that to this one.
                escrow.mark_needed(state, ours[0][0], create=False)
        # Chat keys this device wrapped under the old key (before it heard of the new
        # epoch) are wrapped again; the others already are (their state says so).
        state.mark_kind_dirty("chatkey")

    # --- pull ---------------------------------------------------------------------------------

    async def _pull(self, report: SyncReport, *, until: Callable[[], bool] | None = None) -> None:
        """Pull until up to date (or, with ``until``, until it returns True: it runs in
        the database thread after each page)."""
        while True:
            cursor = await self.runner.db(self._cursor)
            page = await self.transport.changes(cursor, limit=self._page_size)
            self._note_recoveries(page)
            if page.changes or page.cursor != cursor:
                changes = await self.runner.db(
                    self._apply_records, page.changes, report, page.cursor
                )
                self._emit(changes)
                await self._make_moves(changes)
            if not page.has_more:
                return
            if until is not None and await self.runner.db(until):
                return

    def _cursor(self) -> int:
        value = self._standard(self._states()).setting("cursor")
        return int(value or 0)

    async def _apply_inbox(self, report: SyncReport) -> None:
        changes = await self.runner.db(self._apply_records, [], report, None)
        self._emit(changes)
        await self._make_moves(changes)

    def _apply_records(
        self,
        records: list[RecordOut],
        report: SyncReport,
        cursor: int | None,
        *,
        conflicts: bool = False,
    ) -> _Changes:
        """Apply records (a page, or the server's copies after conflicts) and then what
        the inbox can now open, all in one transaction per tier database; save the
        cursor with them."""
        states = self._states()
        standard = self._standard(states)
        hlc = self._clock_hlc(standard)
        changes = _Changes()
        with contextlib.ExitStack() as stack:
            for state in states.values():
                stack.enter_context(state.transaction())
                stack.enter_context(state.applying())
            keys = _Keys(states)
            for record in records:
                incoming = InboxRecord(
                    record.id, record.kind, record.revision, record.parent_revision,
                    record.deleted, record.key_id, record.payload, record.seq,
                )  # fmt: skip
                report.pulled += 1
                outcome = self._apply_one(states, keys, incoming, hlc, changes)
                if outcome == "applied" and incoming.kind not in _KEYLESS_KINDS:
                    keys = _Keys(states)
                if outcome == "tampered":
                    report.tampered += 1
                elif outcome == "deferred" and conflicts:
                    self._unreadable_conflict(states, incoming)
                elif outcome == "deferred":
                    standard.inbox_put(incoming)
            progress = True
            while progress:
                progress = False
                keys = _Keys(states)
                for record_id, kind, key_id in standard.inbox_heads():
                    if key_id not in keys.known_ids and kind != "keys":
                        continue  # still no key for it here
                    waiting = standard.inbox_record(record_id)
                    if waiting is None:
                        continue
                    outcome = self._apply_one(states, keys, waiting, hlc, changes)
                    if outcome == "applied" and waiting.kind not in _KEYLESS_KINDS:
                        keys = _Keys(states)
                    if outcome == "deferred":
                        continue
                    standard.inbox_delete(waiting.record_id)
                    progress = progress or outcome == "applied"
                    if outcome == "tampered":
                        report.tampered += 1
            if cursor is not None and cursor > int(standard.setting("cursor") or 0):
                standard.set_setting("cursor", cursor)
        return changes

    @staticmethod
    def _unreadable_conflict(states: dict[Tier, SyncState], record: InboxRecord) -> None:
        """The server's copy is sealed under a key this device does not hold (yet): a
        Private chat's records while Private is locked, say, after another device moved
        the chat there. Ours is never pushed over what we cannot read (that could put a
        Private chat back under the Standard key): the copy waits in the inbox, and when
        its key comes it is merged like any record, which marks ours again if it is ahead."""
        for state in states.values():
            if state.row(record.record_id) is not None:
                state.drop_pending(record.record_id, dirty=False)
        states[Tier.STANDARD].inbox_put(record)

    def _apply_one(
        self,
        states: dict[Tier, SyncState],
        keys: _Keys,
        record: InboxRecord,
        hlc: Hlc,
        changes: _Changes,
    ) -> str:
        """Apply one record: "applied", "skipped" (already known, or not ours),
        "deferred" (its key is not here yet) or "tampered"."""
        if kind_of(record.record_id) != record.kind:
            if is_pairing_record(record.record_id):  # a device link's relay: not ours to apply
                log.debug("sync: skipping the link relay record %s", record.record_id)
            else:  # a newer client's data, or damage
                log.warning("sync: ignoring record %s of unexpected kind", record.record_id)
            return "skipped"
        known = keys.row(record.record_id)
        if known is not None:
            tier, row = known
            if record.revision <= row.server_revision or row.server_deleted:
                return "skipped"
            if record.deleted and row.local_deleted and not row.dirty:
                # Deleted here already (and its key may be gone): nothing to open.
                states[tier].put_row(
                    record.record_id, record.kind, row.chat_id,
                    server_revision=record.revision, server_deleted=True, local_deleted=True,
                    state=row.state,
                )  # fmt: skip
                return "skipped"
        if record.kind != "keys" and record.key_id not in keys.known_ids:
            return "deferred"
        header = self._header(
            record.record_id, record.kind, record.revision, record.deleted, record.key_id
        )
        try:
            if record.kind == "keys":
                return self._apply_keys(states, record, header)
            if record.kind == "rotation":
                return self._apply_rotation(states, keys, record, header)
            if record.kind == "chatkey":
                return self._apply_chatkey(states, keys, record, header, hlc, changes)
            found = keys.chat_key_by_id(record.key_id)
            if found is None:
                return "deferred"
            key_tier, chat_key = found
            plaintext = open_record(chat_key.secret, header, record.payload)
            data = b""
            if record.kind == "attachment_part" and not record.deleted:
                body, data = decode_part(plaintext, record.record_id)
            else:
                body = decode_body(plaintext, record.record_id)
            del plaintext
            if body.get("chat_id") != chat_key.chat_id:
                raise RecordTamperedError(f"record {record.record_id} names another chat")
            if record.kind == "chat":
                return self._apply_chat(
                    states, keys, key_tier, chat_key, record, body, hlc, changes
                )
            if record.kind == "attachment":
                return self._apply_attachment(
                    states, keys, key_tier, chat_key, record, body, changes
                )
            if record.kind == "attachment_part":
                return self._apply_part(states, keys, key_tier, chat_key, record, data, changes)
            return self._apply_message(states, keys, key_tier, chat_key, record, body, hlc, changes)
        except RecordTamperedError:
            log.warning(
                "sync: record %s does not open; ignored (tampered or replayed)", record.record_id
            )
            return "tampered"

    def _apply_keys(
        self, states: dict[Tier, SyncState], record: InboxRecord, header: RecordHeader
    ) -> str:
        standard = self._standard(states)
        account = self._account_keys(standard)
        if account is None:
            return "deferred"  # joining: opened with the passphrase or recovery code
        slots, _entries = read_keys_record(header, record.payload, account.verify_key)
        if header.key_id != account.key_id:
            raise RecordTamperedError("the keys record names another key-record key")
        if slots.get("public_key") != _b64(account.public_key):
            raise RecordTamperedError("the keys record names another key-record key")
        updated = AccountKeys(account.public_key, account.verify_key, account.signing_key, slots)
        standard.set_setting("account_keys", json.dumps(updated.to_json()))
        standard.set_setting("keys_payload", record.payload)
        standard.put_row(KEYS_RECORD_ID, "keys", None, server_revision=record.revision)
        return "applied"

    def _apply_rotation(
        self, states: dict[Tier, SyncState], keys: _Keys, record: InboxRecord, header: RecordHeader
    ) -> str:
        old = keys.sync_by_id.get(record.key_id)
        if old is None:
            return "deferred"
        state = states[old.tier]
        known = state.row(record.record_id)
        if known is not None and record.revision <= known.server_revision:
            return "skipped"
        new = unwrap_next_key(old, header, record.payload)
        if keys.current.get(old.tier) != old:
            return "skipped"
        ours = keys.next.get(old.tier)
        state.put_row(record.record_id, "rotation", None, server_revision=record.revision)
        if ours is not None and ours.key_id == new.key_id:
            self._finish_rotation(state, old.key_id, adopted=None)
            return "applied"
        self._finish_rotation(state, old.key_id, adopted=new)
        log.info("sync: moved to %s key epoch %d", new.tier.value, new.epoch)
        return "applied"

    def _apply_chatkey(
        self,
        states: dict[Tier, SyncState],
        keys: _Keys,
        record: InboxRecord,
        header: RecordHeader,
        hlc: Hlc,
        changes: _Changes,
    ) -> str:
        sync_key = keys.sync_by_id.get(record.key_id)
        if sync_key is None:
            return "deferred"
        if sync_key.tier not in states or keys.next.get(sync_key.tier) == sync_key:
            return "deferred"
        body = decode_body(open_record(sync_key.secret, header, record.payload), record.record_id)
        chat_id = record.record_id.removeprefix("chatkey:")
        if body.get("chat_id") != chat_id:
            raise RecordTamperedError(f"record {record.record_id} names another chat")
        tier = sync_key.tier
        state = states[tier]
        if record.deleted:
            self._delete_chat_locally(states, chat_id, changes)
            for other in states.values():
                other.delete_chat_key(chat_id)
            state.put_row(
                record.record_id, "chatkey", chat_id, server_revision=record.revision,
                server_deleted=True, local_deleted=True,
            )  # fmt: skip
            return "applied"
        if keys.deleted_here(chat_id):
            return self._keep_our_delete(states, record)
        key_id, hlc_text = body.get("key_id"), body.get("hlc", "")
        secret = _unb64(body.get("secret"))
        if not isinstance(key_id, str) or not isinstance(hlc_text, str) or len(secret) != 32:
            raise RecordTamperedError(f"record {record.record_id} is malformed")
        hlc.observe(hlc_text)
        home = keys.chat_tier(chat_id)
        local = states[home].chat_key(chat_id) if home is not None else None
        if local is not None and home is not None and local[0] != key_id and local[2] > hlc_text:
            # Our chat key is later (this device moved or re-keyed the chat): it wins.
            states[home].put_row(
                record.record_id, "chatkey", chat_id, server_revision=record.revision,
                dirty=True, state={},
            )  # fmt: skip
            return "applied"
        state.put_chat_key(chat_id, key_id, secret, hlc_text)
        if home is not None and home != tier:
            changes.moves[chat_id] = tier  # moved on another device
        current = keys.current.get(tier)
        stale = current is not None and current.key_id != sync_key.key_id
        wrapped = {"sync_key_id": sync_key.key_id, "chat_key_id": key_id}
        state.put_row(
            record.record_id, "chatkey", chat_id, server_revision=record.revision,
            dirty=stale, state={} if stale else wrapped,
        )  # fmt: skip
        return "applied"

    def _apply_chat(
        self,
        states: dict[Tier, SyncState],
        keys: _Keys,
        key_tier: Tier,
        chat_key: ChatKey,
        record: InboxRecord,
        body: dict[str, Any],
        hlc: Hlc,
        changes: _Changes,
    ) -> str:
        chat_id = chat_key.chat_id
        if record.deleted:
            self._delete_chat_locally(states, chat_id, changes)
            for state in states.values():
                state.delete_chat_key(chat_id)
            states[key_tier].put_row(
                record.record_id, "chat", chat_id, server_revision=record.revision,
                server_deleted=True, local_deleted=True,
            )  # fmt: skip
            return "applied"
        if keys.deleted_here(chat_id):
            return self._keep_our_delete(states, record)
        remote = ChatState.from_json(body)
        for stamp in remote.clocks.values():
            hlc.observe(stamp)
        tier = keys.chat_tier(chat_id) or key_tier
        state = states[tier]
        row = state.row(record.record_id)
        local_row = state.chat_row(chat_id)
        if local_row is not None and local_row["move_state"] is not None:
            return "deferred"
        merged = (
            ChatState.from_json(row.state) if row is not None and row.state.get("values") else None
        )
        local_ahead = False
        if merged is None:
            merged = ChatState()
            if local_row is not None:
                merged.fold_local(local_row, hlc)
                local_ahead = True
        elif local_row is not None and row is not None and (row.dirty or row.pending_revision):
            if row.state.get("awaiting_leaf"):
                local_row = {**local_row, "active_leaf_id": merged.values.get("active_leaf_id")}
            merged.fold_local(local_row, hlc)
        taken, ahead = merged.merge(remote)
        local_ahead = local_ahead or ahead
        values = merged.row_values(chat_id)
        created = state.write_chat(values)
        written = state.chat_row(chat_id)
        new_state: dict[str, Any] = {**merged.to_json(), "key_id": chat_key.key_id}
        if written is not None and written["active_leaf_id"] != values["active_leaf_id"]:
            new_state["awaiting_leaf"] = True
        if local_ahead:
            new_state["push"] = True  # this side has a field the server lacks
        current = state.chat_key(chat_id)
        stale_key = current is not None and current[0] != chat_key.key_id
        state.put_row(
            record.record_id, "chat", chat_id, server_revision=record.revision,
            dirty=local_ahead or stale_key, state=new_state,
        )  # fmt: skip
        if created:
            changes.add(ChatCreated(chat_id))
            changes.add(MessagesChanged(chat_id))
        else:
            if "title" in taken:
                changes.add(ChatRenamed(chat_id))
            if taken - {"title", "active_leaf_id"}:
                changes.add(ChatUpdated(chat_id))
            if "active_leaf_id" in taken:
                changes.add(MessagesChanged(chat_id))
        return "applied"

    def _apply_message(
        self,
        states: dict[Tier, SyncState],
        keys: _Keys,
        key_tier: Tier,
        chat_key: ChatKey,
        record: InboxRecord,
        body: dict[str, Any],
        hlc: Hlc,
        changes: _Changes,
    ) -> str:
        del hlc
        chat_id = chat_key.chat_id
        message_id = record.record_id.removeprefix("msg:")
        tier = keys.chat_tier(chat_id) or key_tier
        state = states[tier]
        if record.deleted:
            parent = body.get("parent_id")
            removed = state.has_message(message_id)
            if removed:
                state.delete_message(message_id)
                changes.add(MessagesChanged(chat_id))
            state.put_row(
                record.record_id, "message", chat_id, server_revision=record.revision,
                server_deleted=True, local_deleted=True,
                state={"parent_id": parent if isinstance(parent, str) else None},
            )  # fmt: skip
            return "applied"
        if keys.deleted_here(chat_id):
            return self._keep_our_delete(states, record)
        values = message_values({**body, "id": message_id})
        current = state.chat_key(chat_id)
        stale_key = current is not None and current[0] != chat_key.key_id
        if state.has_message(message_id):
            if state.replace_partial_message(values):  # its writer finished it
                changes.add(MessagesChanged(chat_id))
            state.put_row(
                record.record_id, "message", chat_id, server_revision=record.revision,
                dirty=stale_key, state={"key_id": chat_key.key_id},
            )  # fmt: skip
            return "applied"
        chat = state.chat_row(chat_id)
        if chat is None or chat["move_state"] is not None:
            return "deferred"  # its chat has not arrived yet
        parent = self._live_parent(state, values["parent_id"])
        if parent is _MISSING:
            return "deferred"  # its parent has not arrived yet
        values["parent_id"] = parent
        state.insert_message(values)
        chat_row = state.row(f"chat:{chat_id}")
        if chat_row is not None and chat_row.state.get("awaiting_leaf"):
            wanted = chat_row.state.get("values", {}).get("active_leaf_id")
            if wanted == message_id:
                state.set_active_leaf(chat_id, message_id)
                state.set_state(
                    chat_row.record_id,
                    {k: v for k, v in chat_row.state.items() if k != "awaiting_leaf"},
                )
        state.put_row(
            record.record_id, "message", chat_id, server_revision=record.revision,
            dirty=stale_key, state={"key_id": chat_key.key_id},
        )  # fmt: skip
        changes.add(MessagesChanged(chat_id))
        return "applied"

    def _apply_attachment(
        self,
        states: dict[Tier, SyncState],
        keys: _Keys,
        key_tier: Tier,
        chat_key: ChatKey,
        record: InboxRecord,
        body: dict[str, Any],
        changes: _Changes,
    ) -> str:
        """An attachment's metadata: shown once all its parts are here too."""
        chat_id = chat_key.chat_id
        attachment_id = record.record_id.removeprefix(ATTACHMENT_PREFIX)
        state = states[keys.chat_tier(chat_id) or key_tier]
        if record.deleted:
            if state.delete_attachment(attachment_id):
                changes.add(MessagesChanged(chat_id))
            state.put_row(
                record.record_id, "attachment", chat_id, server_revision=record.revision,
                server_deleted=True, local_deleted=True,
            )  # fmt: skip
            return "applied"
        if keys.deleted_here(chat_id):
            return self._keep_our_delete(states, record)
        values = attachment_values(body)
        current = state.chat_key(chat_id)
        stale_key = current is not None and current[0] != chat_key.key_id
        kept = {"key_id": chat_key.key_id, "parts": values["parts"]}
        kept["part_size"] = values["part_size"]
        if state.has_attachment(attachment_id):  # sealed again (a new chat key): same bytes
            state.put_row(
                record.record_id, "attachment", chat_id, server_revision=record.revision,
                dirty=stale_key, state=kept,
            )  # fmt: skip
            return "applied"
        message = state.message_row(values["message_id"])
        if message is None:
            row = state.row(f"msg:{values['message_id']}")
            if row is not None and row.local_deleted:
                state.drop_parts(attachment_id)  # its message is gone here: so is it
                return "skipped"
            return "deferred"  # its message has not arrived yet
        if message["chat_id"] != chat_id:
            raise RecordTamperedError(f"record {record.record_id} names another chat's message")
        state.put_row(
            record.record_id, "attachment", chat_id, server_revision=record.revision,
            dirty=stale_key, state={**kept, "waiting": values},
        )  # fmt: skip
        return self._assemble(state, attachment_id, changes)

    def _apply_part(
        self,
        states: dict[Tier, SyncState],
        keys: _Keys,
        key_tier: Tier,
        chat_key: ChatKey,
        record: InboxRecord,
        data: bytes,
        changes: _Changes,
    ) -> str:
        """Part of an attachment's bytes: kept until the attachment is complete."""
        chat_id = chat_key.chat_id
        attachment_id, index = split_part_record_id(record.record_id)
        state = states[keys.chat_tier(chat_id) or key_tier]
        if record.deleted:
            state.drop_parts(attachment_id)
            state.put_row(
                record.record_id, "attachment_part", chat_id, server_revision=record.revision,
                server_deleted=True, local_deleted=True,
            )  # fmt: skip
            return "applied"
        if keys.deleted_here(chat_id):
            return self._keep_our_delete(states, record)
        current = state.chat_key(chat_id)
        stale_key = current is not None and current[0] != chat_key.key_id
        meta = state.row(ATTACHMENT_PREFIX + attachment_id)
        refused = meta is not None and meta.state.get("refused")
        if not refused and not state.has_attachment(attachment_id):
            state.stage_part(attachment_id, index, chat_id, data)
        state.put_row(
            record.record_id, "attachment_part", chat_id, server_revision=record.revision,
            dirty=stale_key, state={"key_id": chat_key.key_id},
        )  # fmt: skip
        return self._assemble(state, attachment_id, changes)

    @staticmethod
    def _assemble(state: SyncState, attachment_id: str, changes: _Changes) -> str:
        """Store an attachment whose metadata and parts are all here, if its bytes match
        its sha256 ("tampered" otherwise: refused, its parts dropped, nothing shown)."""
        row = state.row(ATTACHMENT_PREFIX + attachment_id)
        waiting = row.state.get("waiting") if row is not None else None
        if row is None or row.chat_id is None or not isinstance(waiting, dict):
            return "applied"
        if state.staged_parts(attachment_id, int(waiting["parts"])) < int(waiting["parts"]):
            return "applied"  # not all here yet
        kept = {k: v for k, v in row.state.items() if k != "waiting"}
        if not state.assemble_attachment(attachment_id, row.chat_id, waiting):
            log.warning(
                "sync: attachment %s does not match its checksum; refused (tampered)",
                attachment_id,
            )
            state.set_state(row.record_id, {**kept, "refused": True})
            return "tampered"
        state.set_state(row.record_id, kept)
        changes.add(MessagesChanged(row.chat_id))
        return "applied"

    @staticmethod
    def _forget_shredded_key(state: SyncState, chat_id: str) -> None:
        """Once every tombstone of a deleted chat is on the server, its key goes
        (crypto-shredding); until then it may have to seal one again."""
        key_row = state.row(f"chatkey:{chat_id}")
        if key_row is not None and key_row.server_deleted and state.chat_is_settled(chat_id):
            state.delete_chat_key(chat_id)

    @staticmethod
    def _keep_our_delete(states: dict[Tier, SyncState], record: InboxRecord) -> str:
        """An edit of a chat deleted here: the delete wins. Our tombstone for the record,
        if it has one, goes on top of the server's revision; anything else is dropped."""
        for state in states.values():
            row = state.row(record.record_id)
            if row is not None and row.local_deleted:
                state.rebase_tombstone(record.record_id, record.revision)
        return "skipped"

    @staticmethod
    def _live_parent(state: SyncState, parent_id: str | None) -> str | object | None:
        """The message a reply hangs under here: deleted parents are skipped the way a
        local delete moves replies up; _MISSING if the parent has not arrived."""
        seen: set[str] = set()
        while parent_id is not None:
            if state.has_message(parent_id):
                return parent_id
            row = state.row(f"msg:{parent_id}")
            if row is None or not row.local_deleted or parent_id in seen:
                return _MISSING
            seen.add(parent_id)
            up = row.state.get("parent_id")
            parent_id = up if isinstance(up, str) else None
        return None

    def _delete_chat_locally(
        self, states: dict[Tier, SyncState], chat_id: str, changes: _Changes
    ) -> None:
        """A chat deleted on another device: gone here too (delete beats edit)."""
        for state in states.values():
            with _applying_if_needed(state):
                if state.delete_chat(chat_id):
                    changes.add(ChatPurged(chat_id))
            state.forget_chat_rows(chat_id)

    async def _make_moves(self, changes: _Changes) -> None:
        """Chats another device moved between Standard and Private move here too."""
        for chat_id, tier in changes.moves.items():
            if tier not in self.library.tiers:
                continue
            await self.runner.db(self._move, chat_id, tier)
            if self._bus is not None:
                self._emit(_Changes(events=[ChatMoved(chat_id, tier)]))

    def _move(self, chat_id: str, tier: Tier) -> None:
        """Follow another device's move; the epoch change it needs is that device's."""
        states = self._states()
        flags = {t: state.setting("rotate_pending") for t, state in states.items()}
        self.library.move(chat_id, tier)
        for t, state in states.items():
            if not flags[t] and state.setting("rotate_pending"):
                with state.transaction():
                    state.set_setting("rotate_pending", None)

    def _forget_moved_keys(self) -> None:
        """Old chat keys of chats moved to another tier, once that tier's copies are out."""
        states = self._states()
        keys = _Keys(states)
        for tier, state in states.items():
            for chat_id, _key_id, _secret, _hlc in state.chat_keys():
                if state.chat_row(chat_id) is not None:
                    continue
                here = keys.chat_tier(chat_id)
                if here is None or here == tier:
                    continue
                if states[here].chat_key(chat_id) is not None and states[here].chat_is_settled(
                    chat_id
                ):
                    with state.transaction():
                        state.delete_chat_key(chat_id)

    # --- the background loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until ``stop`` is set (or the server signs the device out)."""
        failures = 0
        while not stop.is_set():
            try:
                self._set_status(SyncStatus.SYNCING)
                self._local_change.clear()
                await self.sync_once()
                failures = 0
                self._set_status(SyncStatus.IDLE)
                await self._wait_for_news(stop)
            except SyncAuthError as error:
                log.warning("sync: the server refused this device; stopping")
                self._set_status(SyncStatus.SIGNED_OUT, str(error))
                return
            except SyncRetryLaterError as error:
                self._set_status(SyncStatus.OFFLINE, str(error))
                await self._sleep(stop, max(error.retry_after, 0.0))
            except SyncOfflineError as error:
                failures += 1
                self._set_status(SyncStatus.OFFLINE, str(error))
                await self._sleep(stop, _backoff(failures))
            except SyncNotSetUpError as error:
                self._set_status(SyncStatus.ERROR, str(error))
                await self._sleep(stop, BACKOFF_MAX, wake_on_change=True)
            except HushchatError as error:
                failures += 1
                log.warning("sync failed: %s", type(error).__name__)
                self._set_status(SyncStatus.ERROR, str(error))
                await self._sleep(stop, _backoff(failures))
            except Exception:  # the loop must survive a bug; it is logged with its traceback
                failures += 1
                log.exception("sync: unexpected error")
                self._set_status(SyncStatus.ERROR, "an unexpected error (details in the log)")
                await self._sleep(stop, _backoff(failures))

    async def _wait_for_news(self, stop: asyncio.Event) -> None:
        """Long-poll the server while watching for local changes and ``stop``."""
        cursor = await self.runner.db(self._cursor)
        # Only the request is cancelled when a local change comes first; applying a page
        # is never interrupted (the next round applies what the poll would have).
        poll = asyncio.ensure_future(
            self.transport.changes(cursor, limit=self._page_size, wait=self._long_poll)
        )
        local = asyncio.ensure_future(self._local_change.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {poll, local, stopped}, return_when=asyncio.FIRST_COMPLETED
            )
            if poll in done:
                page = poll.result()  # raises what the transport raised
                self._note_recoveries(page)
                if page.changes:
                    async with self._lock:
                        changes = await self.runner.db(
                            self._apply_records, page.changes, SyncReport(), page.cursor
                        )
                    self._emit(changes)
                    await self._make_moves(changes)
            elif local in done:
                await asyncio.sleep(self._debounce)
        finally:
            for task in (poll, local, stopped):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(poll, local, stopped, return_exceptions=True)

    async def _sleep(
        self, stop: asyncio.Event, seconds: float, *, wake_on_change: bool = False
    ) -> None:
        waits = [asyncio.ensure_future(stop.wait())]
        if wake_on_change:
            self._local_change.clear()
            waits.append(asyncio.ensure_future(self._local_change.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


_MISSING: object = object()
_EMPTY_ROW = SyncRow("", "", None, 0, False, False, False, None, None, None, None, None, {})


TRUNCATED_MARK = "\n\n[Truncated for sync: the whole message is on the device that wrote it.]"


def _fit(message: dict[str, Any], limit: int) -> dict[str, Any]:
    """A message body within ``limit`` bytes: a message too large for the server goes
    without its reasoning and with its text cut (marked), so the thread stays whole."""
    if len(encode_body(message)) <= limit:
        return message
    body = {**message, "reasoning": ""}
    while (over := len(encode_body(body)) - limit) > 0:
        raw = str(body["content"]).removesuffix(TRUNCATED_MARK).encode()
        keep = max(0, len(raw) - over - len(TRUNCATED_MARK.encode()) - 64)
        body["content"] = raw[:keep].decode("utf-8", "ignore") + TRUNCATED_MARK
        if keep == 0:
            break
    return body


def _backoff(failures: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures, 16))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - timing jitter, not a secret


@contextlib.contextmanager
def _applying_if_needed(state: SyncState) -> Iterator[None]:
    """Deletes from a push result run outside ``_apply_records``: mark them remote."""
    if state.applying_now():
        yield
        return
    with state.transaction(), state.applying():
        yield


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise RecordTamperedError("a key is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RecordTamperedError("a key is not base64") from None

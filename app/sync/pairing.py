"""Link a new device from an existing one with a short pairing code (magic-wormhole style).

The existing device (unlocked, set up) shows a code such as ``4127-abacus-nimble-tundra``:
a session number (public: it names the relay records) and three words of the EFF word
list (``app.sync.pairing_words``, 7772 words: 38.8 bits), valid for ten minutes. The
new device, signed in to the same account, types it. The two run SPAKE2 (``spake2``,
symmetric, the words as the password, the account id and session number as the
identity) through the sync server's ordinary record store, confirm the key both ways,
and only then does the existing device send its account keys and current sync keys,
AES-GCM-sealed under a key derived from the SPAKE2 key. The new device checks them
against the account's signed "keys" record (``crypto.open_keys_with_link``) and joins.

The relay: records ``pair:<session>:<step>`` of kind "pair" (key id "pair"), pushed
once each (revision 1, so a second "join" for one code is refused by the server's
compare-and-swap: one attempt per code) and read with the long-poll of ``changes``::

    A (existing)                        server                     D (new)
    offer    {expires_at}           ──>  pair:N:offer
                                         pair:N:join     <──  {pake: D's SPAKE2 message}
    reply    {pake: A's, confirm_A} ──>  pair:N:reply
                                         pair:N:confirm  <──  {confirm_D}
    keys     {sealed}               ──>  pair:N:keys
                                         pair:N:done     <──  {ok, mac}
    then A tombstones all six (also on failure, expiry or cancel; steps that were never
    written are created as tombstones, so a late or second attempt is refused).

The server sees the session number, the expiry time, two SPAKE2 messages, two key
confirmations and one ciphertext: never the code, a key, or a chat. Guessing the
code online gets one try per code; nothing seen on the wire allows an offline guess.

Everything here is asyncio without Qt: the CLI (``app.sync.pairing_cli``) and the window
use :func:`start_link` and :func:`join_with_code`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import UsageError
from app.sync.crypto import (
    AccountKeys,
    RecordTamperedError,
    SyncKey,
    open_keys_with_link,
)
from app.sync.errors import SyncError
from app.sync.pairing_words import WORDS
from app.sync.protocol import RecordIn, RecordOut
from app.tiers import STORED_TIERS, Tier

if TYPE_CHECKING:
    from app.sync.engine import SyncEngine, SyncReport
    from app.sync.service import SyncService

__all__ = [
    "CODE_LIFETIME",
    "STEP_TIMEOUT",
    "LinkOffer",
    "LinkResult",
    "PairingCode",
    "PairingCodeError",
    "PairingError",
    "PairingExpiredError",
    "WrongPairingCodeError",
    "join_with_code",
    "start_link",
]

log = logging.getLogger(__name__)

#: How long a pairing code can be used (seconds).
CODE_LIFETIME: Final = 600.0
#: How long one side waits for the other's next step once the exchange has begun.
STEP_TIMEOUT: Final = 60.0
WORDS_PER_CODE: Final = 3
SESSION_MAX: Final = 9999
KIND: Final = "pair"
KEY_ID: Final = "pair"
STEPS: Final = ("offer", "join", "reply", "confirm", "keys", "done")
_VERSION: Final = 1
_POLL: Final = 25.0
_SESSION_TRIES: Final = 20
_ID_LABEL: Final = b"hushchat-link-v1\0"
_KEY_LABEL: Final = b"hushchat/sync/v1/link"
_SEAL_AAD: Final = b"hushchat-link-keys-v1\0"
_NONCE_BYTES: Final = 12


class PairingError(SyncError):
    """Linking failed; nothing was installed. The message says what to do."""


class WrongPairingCodeError(PairingError):
    """The two devices did not agree on the code (mistyped, or a relay record changed)."""


class PairingExpiredError(PairingError):
    """The code is past its ten minutes, was used already, or was cancelled."""


class PairingCodeError(UsageError):
    """The text typed is not a pairing code (it is checked before anything is sent)."""


# --- the code ------------------------------------------------------------------------------

_WORD_SET: Final = frozenset(WORDS)


@dataclass(frozen=True, repr=False)
class PairingCode:
    """``<session>-<word>-<word>-<word>``: the session number is public, the words are
    the SPAKE2 password."""

    session: int
    words: tuple[str, ...]

    @classmethod
    def generate(cls, session: int) -> PairingCode:
        return cls(session, tuple(secrets.choice(WORDS) for _ in range(WORDS_PER_CODE)))

    @classmethod
    def parse(cls, text: str) -> PairingCode:
        """The code in ``text`` (spaces or hyphens between the parts, any case);
        PairingCodeError saying what is wrong."""
        parts = [part for part in re.split(r"[\s\-_.]+", text.strip().lower()) if part]
        if not parts or not parts[0].isdigit() or len(parts) != 1 + WORDS_PER_CODE:
            raise PairingCodeError(
                f"A pairing code is a number and {WORDS_PER_CODE} words, like "
                "4127-abacus-nimble-tundra: copy it from `hushchat sync link` on the other "
                "device."
            )
        session = int(parts[0])
        if not 1 <= session <= SESSION_MAX:
            raise PairingCodeError(f"The number of a pairing code is 1 to {SESSION_MAX}.")
        unknown = [word for word in parts[1:] if word not in _WORD_SET]
        if unknown:
            raise PairingCodeError(
                f"{unknown[0]!r} is not a word of pairing codes: check its spelling on the "
                "other device."
            )
        return cls(session, tuple(parts[1:]))

    def __str__(self) -> str:
        return "-".join((str(self.session), *self.words))

    def __repr__(self) -> str:
        return f"PairingCode(session={self.session}, words=<hidden>)"

    @property
    def password(self) -> bytes:
        return "-".join(self.words).encode()


# --- the cryptography ------------------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _field(body: dict[str, Any], name: str, step: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, str):
        raise PairingError(f"The pairing message {step!r} is malformed; run the link again.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PairingError(
            f"The pairing message {step!r} is malformed; run the link again."
        ) from None


def _identity(account_id: str, session: int) -> bytes:
    return _ID_LABEL + _canonical({"account": account_id, "session": session})


def _spake(code: PairingCode, account_id: str) -> Any:
    from spake2 import SPAKE2_Symmetric  # type: ignore[import-untyped]

    return SPAKE2_Symmetric(code.password, idSymmetric=_identity(account_id, code.session))


@dataclass(frozen=True, repr=False)
class _Keys:
    confirm_a: bytes
    confirm_d: bytes
    seal: bytes


def _finish(
    spake: Any, theirs: bytes, account_id: str, session: int, msg_a: bytes, msg_d: bytes
) -> _Keys:
    """Both sides' keys from the SPAKE2 key; PairingError if the peer's message is not a
    SPAKE2 message (changed on the way, or our own reflected)."""
    try:
        shared = spake.finish(theirs)
    except Exception as error:  # spake2 raises several unrelated types for a bad message
        log.warning("pairing: the other device's SPAKE2 message was refused (%r)", error)
        raise PairingError(
            "The other device's pairing message is not valid (changed on the way?); nothing "
            "was sent or installed. Run `hushchat sync link` again."
        ) from error
    transcript = hashlib.sha256(msg_a + msg_d).digest()
    info = _KEY_LABEL + _canonical({"account": account_id, "session": session})
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=transcript, info=info).derive(shared)
    return _Keys(okm[:32], okm[32:64], okm[64:])


def _mac(key: bytes, label: str) -> bytes:
    return hmac.new(key, f"hushchat-link-v1/{label}".encode(), hashlib.sha256).digest()


def _seal_aad(account_id: str, session: int) -> bytes:
    return _SEAL_AAD + _canonical({"account": account_id, "session": session})


def _seal_keys(
    keys: _Keys, account_id: str, session: int, account: AccountKeys, sync: dict[Tier, SyncKey]
) -> bytes:
    plain = _canonical(
        {"account_keys": account.to_json(), "sync_keys": [key.to_json() for key in sync.values()]}
    )
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(keys.seal).encrypt(nonce, plain, _seal_aad(account_id, session))


def _open_keys(
    keys: _Keys, account_id: str, session: int, sealed: bytes
) -> tuple[AccountKeys, dict[Tier, SyncKey]]:
    try:
        plain = AESGCM(keys.seal).decrypt(
            sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _seal_aad(account_id, session)
        )
    except (InvalidTag, ValueError):
        raise PairingError(
            "The keys from the other device do not decrypt: they were changed on the way. "
            "Nothing was installed; run `hushchat sync link` again."
        ) from None
    try:
        data = json.loads(plain)
        account = AccountKeys.from_json(data["account_keys"])
        sync: dict[Tier, SyncKey] = {}
        for item in data["sync_keys"]:
            key = SyncKey.from_json(item)
            if key.tier in sync:
                raise RecordTamperedError("two sync keys of one tier")
            sync[key.tier] = key
    except (ValueError, KeyError, TypeError, RecordTamperedError) as error:
        raise PairingError(
            "The keys from the other device are malformed (is it a different Hushchat "
            "version?). Nothing was installed."
        ) from error
    return account, sync


# --- the relay -------------------------------------------------------------------------------


@dataclass
class _Relay:
    """The six records of one session on the server, as this device last knew them."""

    engine: SyncEngine
    session: int
    known: dict[str, tuple[int, bool]] = field(default_factory=dict)  # id: (revision, deleted)

    def record_id(self, step: str) -> str:
        return f"{KIND}:{self.session}:{step}"

    async def put(self, step: str, body: dict[str, Any]) -> tuple[str, RecordOut | None, int]:
        """Push a step's record once: (status, the server's copy on a conflict, seq)."""
        record_id = self.record_id(step)
        payload = _canonical({"v": _VERSION, **body})
        record = RecordIn(
            id=record_id, kind=KIND, revision=1, parent_revision=None, deleted=False,
            key_id=KEY_ID, payload=payload,
        )  # fmt: skip
        response = await self.engine.transport.push([record])
        (result,) = response.results
        if result.status == "saved":
            self.known[record_id] = (1, False)
            return "saved", None, result.seq or response.cursor
        server = result.server_record
        if server is not None:
            self.known[record_id] = (server.revision, server.deleted)
        return result.status, server, response.cursor

    async def probe(self, step: str) -> RecordOut | None:
        """The server's copy of a step's record, read by pushing its tombstone as if new:
        an existing record conflicts (and comes back); a missing one is created deleted,
        so it cannot be written afterwards. None when it did not exist."""
        record_id = self.record_id(step)
        record = RecordIn(
            id=record_id, kind=KIND, revision=1, parent_revision=None, deleted=True,
            key_id=KEY_ID, payload=b"",
        )  # fmt: skip
        response = await self.engine.transport.push([record])
        (result,) = response.results
        if result.status == "saved":
            self.known[record_id] = (1, True)
            return None
        if result.server_record is None:
            raise PairingError(
                f"The sync server refused the pairing record ({result.reason or result.status})."
            )
        self.known[record_id] = (result.server_record.revision, result.server_record.deleted)
        return result.server_record

    async def wait(
        self, step: str, cursor: int, deadline: float, clock: Callable[[], float]
    ) -> tuple[RecordOut | None, int]:
        """The step's record once it is on the server (long-poll from ``cursor``), or
        None at ``deadline``. An offer tombstoned meanwhile ends the wait too."""
        wanted = {self.record_id(step), self.record_id("offer")}
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                return None, cursor
            page = await self.engine.transport.changes(cursor, wait=min(remaining, _POLL))
            found: RecordOut | None = None
            for record in page.changes:
                if record.id in wanted and record.kind == KIND:
                    self.known[record.id] = (record.revision, record.deleted)
                    if record.id == self.record_id(step) or record.deleted:
                        found = found or record
            cursor = max(cursor, page.cursor)
            if found is not None:
                return found, cursor

    async def burn(self) -> None:
        """Tombstone every step's record (those never written are created deleted).
        Best effort: a failure is logged and the records expire with nothing in them a
        key opens."""
        records = []
        for step in STEPS:
            record_id = self.record_id(step)
            revision, deleted = self.known.get(record_id, (0, False))
            if deleted:
                continue
            records.append(
                RecordIn(
                    id=record_id,
                    kind=KIND,
                    revision=revision + 1,
                    parent_revision=revision or None,
                    deleted=True,
                    key_id=KEY_ID,
                    payload=b"",
                )
            )
        for _attempt in range(3):
            if not records:
                return
            try:
                response = await self.engine.transport.push(records)
            except SyncError as error:
                log.warning("pairing: could not delete the relay records: %s", error)
                return
            again = []
            for record, result in zip(records, response.results, strict=True):
                server = result.server_record
                if result.status == "saved":
                    self.known[record.id] = (record.revision, True)
                elif server is not None and not server.deleted:
                    self.known[record.id] = (server.revision, False)
                    again.append(
                        record.model_copy(
                            update={
                                "revision": server.revision + 1,
                                "parent_revision": server.revision,
                            }
                        )
                    )
            records = again
        log.warning("pairing: %d relay records kept changing; not deleted", len(records))


def _body(record: RecordOut, step: str) -> dict[str, Any]:
    try:
        value = json.loads(record.payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        value = None
    if not isinstance(value, dict) or value.get("v") != _VERSION:
        raise PairingError(
            f"The pairing message {step!r} is not one this Hushchat understands (changed on "
            "the way, or another version): run the link again."
        )
    return value


# --- the existing device ---------------------------------------------------------------------


@dataclass(frozen=True)
class LinkResult:
    """A finished link: the new device (its id on the server) has the keys."""

    device_id: str


async def _engine_of(sync: SyncService | SyncEngine) -> SyncEngine:
    from app.sync.engine import SyncEngine

    if isinstance(sync, SyncEngine):
        return sync
    return await sync.engine()


def _read_keys(engine: SyncEngine) -> tuple[AccountKeys, dict[Tier, SyncKey]]:
    library = engine.library
    if Tier.PRIVATE not in library.tiers:
        raise UsageError(
            "Linking hands over the keys of Standard and Private chats: unlock with the "
            "passphrase (Private chats open), then link."
        )
    raw = library.store(Tier.STANDARD).sync_state().setting("account_keys")
    if raw is None:
        raise UsageError(
            "This device does not hold the account's sync keys yet: run `hushchat sync "
            "login` here first."
        )
    account = AccountKeys.from_json(json.loads(raw))
    keys: dict[Tier, SyncKey] = {}
    for tier in STORED_TIERS:
        for key_id, tier_value, epoch, secret, state in (
            library.store(tier).sync_state().sync_keys()
        ):
            if state == "current" and tier_value == tier.value:
                keys[tier] = SyncKey(tier, epoch, key_id, secret)
        if tier not in keys:
            raise UsageError(f"This device holds no current {tier.value} sync key; sync first.")
    return account, keys


class LinkOffer:
    """A pairing code being offered; :meth:`wait` runs the exchange when a device joins."""

    def __init__(
        self,
        engine: SyncEngine,
        code: PairingCode,
        relay: _Relay,
        cursor: int,
        expires_at: float,
        clock: Callable[[], float],
        step_timeout: float,
    ) -> None:
        self.code = code
        self.expires_at = expires_at
        self._engine = engine
        self._relay = relay
        self._cursor = cursor
        self._clock = clock
        self._step_timeout = step_timeout
        self._spake = _spake(code, engine.account_id)
        self._msg_a: bytes = self._spake.start()
        self._used = False

    def __repr__(self) -> str:
        return f"LinkOffer(session={self.code.session})"

    async def wait(self) -> LinkResult:
        """Wait for the new device, run the exchange, hand over the keys; the relay
        records are deleted whatever happens. PairingExpiredError at the code's expiry,
        WrongPairingCodeError when the other side typed another code."""
        if self._used:
            raise PairingExpiredError("This pairing code was used already: start a new link.")
        self._used = True
        try:
            return await self._exchange()
        finally:
            await asyncio.shield(self._relay.burn())

    async def cancel(self) -> None:
        """Withdraw the code (its records are deleted)."""
        self._used = True
        await self._relay.burn()

    async def _exchange(self) -> LinkResult:
        relay, account_id, session = self._relay, self._engine.account_id, self.code.session
        join, cursor = await relay.wait("join", self._cursor, self.expires_at, self._clock)
        if join is None:
            raise PairingExpiredError(
                "No device used the pairing code in its ten minutes: run `hushchat sync link` "
                "again for a new one."
            )
        if join.deleted or join.id != relay.record_id("join"):
            raise PairingExpiredError("The pairing was cancelled; start a new link.")
        msg_d = _field(_body(join, "join"), "pake", "join")
        keys = _finish(self._spake, msg_d, account_id, session, self._msg_a, msg_d)
        status, _, cursor = await relay.put(
            "reply", {"pake": _b64(self._msg_a), "confirm": _b64(_mac(keys.confirm_a, "reply"))}
        )
        if status != "saved":
            raise PairingError("The pairing relay record was taken; start a new link.")
        confirm, cursor = await relay.wait("confirm", cursor, self._step(), self._clock)
        if confirm is None or confirm.deleted or confirm.id != relay.record_id("confirm"):
            raise PairingError("The new device stopped answering; start a new link.")
        theirs = _field(_body(confirm, "confirm"), "confirm", "confirm")
        if not hmac.compare_digest(theirs, _mac(keys.confirm_d, "confirm")):
            raise WrongPairingCodeError(
                "The code typed on the new device was not this one (or a message was changed "
                "on the way): nothing was sent. Run `hushchat sync link` again for a new code."
            )
        # Hand over the newest keys: take what the server has first.
        await self._engine.sync_once()
        account, sync = await self._engine.runner.db(_read_keys, self._engine)
        sealed = _seal_keys(keys, account_id, session, account, sync)
        status, _, cursor = await relay.put("keys", {"sealed": _b64(sealed)})
        if status != "saved":
            raise PairingError("The pairing relay record was taken; start a new link.")
        done, cursor = await relay.wait("done", cursor, self._step(), self._clock)
        if done is None or done.deleted or done.id != relay.record_id("done"):
            raise PairingError(
                "The new device did not confirm it received the keys; check it, and link "
                "again if it did not join."
            )
        body = _body(done, "done")
        ok = body.get("ok") is True
        mac = _field(body, "mac", "done")
        if not hmac.compare_digest(mac, _mac(keys.confirm_d, f"done:{ok}")) or not ok:
            raise PairingError(
                "The new device could not open the keys (changed on the way?); link again."
            )
        return LinkResult(join.device_id)

    def _step(self) -> float:
        return self._clock() + self._step_timeout


async def start_link(
    sync: SyncService | SyncEngine,
    *,
    lifetime: float = CODE_LIFETIME,
    step_timeout: float = STEP_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> LinkOffer:
    """On the existing device: reserve a session on the server and return the code to
    show; ``await offer.wait()`` then waits for the new device (or the expiry)."""
    engine = await _engine_of(sync)
    await engine.runner.db(_read_keys, engine)  # fail now, not after the code was typed
    expires_at = clock() + lifetime
    for _ in range(_SESSION_TRIES):
        session = secrets.randbelow(SESSION_MAX) + 1
        relay = _Relay(engine, session)
        status, _, cursor = await relay.put("offer", {"expires_at": expires_at})
        if status == "saved":
            code = PairingCode.generate(session)
            log.info("pairing: offering session %d", session)
            return LinkOffer(engine, code, relay, cursor, expires_at, clock, step_timeout)
    raise PairingError("Could not reserve a pairing session on the sync server; try again.")


# --- the new device --------------------------------------------------------------------------


async def join_with_code(
    sync: SyncService | SyncEngine,
    code: PairingCode | str,
    *,
    step_timeout: float = STEP_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> SyncReport:
    """On the new device (signed in, vault unlocked, no sync keys yet): run the exchange
    for ``code``, then join the account with the keys received (every chat is fetched).
    Nothing is installed unless every check passed."""
    if isinstance(code, str):
        code = PairingCode.parse(code)
    engine = await _engine_of(sync)
    if await engine.is_set_up():
        raise UsageError("This profile holds the account's sync keys already: nothing to link.")
    if Tier.PRIVATE not in engine.library.tiers:
        raise UsageError("Joining needs Private chats open: unlock with the passphrase.")
    relay = _Relay(engine, code.session)
    account_id = engine.account_id
    offer = await relay.probe("offer")
    if offer is None:
        raise PairingExpiredError(
            f"No device offers pairing code number {code.session}: check the number, or run "
            "`hushchat sync link` on the other device (signed in to the same account)."
        )
    expires = _body(offer, "offer").get("expires_at") if not offer.deleted else None
    if offer.deleted or not isinstance(expires, int | float) or expires <= clock():
        raise PairingExpiredError(
            "This pairing code expired or was used already: run `hushchat sync link` on the "
            "other device again for a new one."
        )
    spake = _spake(code, account_id)
    msg_d: bytes = spake.start()
    status, _, cursor = await relay.put("join", {"pake": _b64(msg_d)})
    if status != "saved":
        raise PairingExpiredError(
            "This pairing code was used already (one try per code): run `hushchat sync link` "
            "on the other device again for a new one."
        )
    # From here the other device deletes the relay records when it fails or finishes;
    # this one only does when the other device is gone or cannot tell what happened.
    handed_over = False
    try:
        reply, cursor = await relay.wait("reply", cursor, clock() + step_timeout, clock)
        if reply is None or reply.deleted or reply.id != relay.record_id("reply"):
            raise PairingExpiredError(
                "The other device did not answer: check that `hushchat sync link` still waits "
                "there, and run it again for a new code."
            )
        body = _body(reply, "reply")
        msg_a = _field(body, "pake", "reply")
        keys = _finish(spake, msg_a, account_id, code.session, msg_a, msg_d)
        # Answer in any case (a wrong code then fails on both sides), with a confirmation
        # the other device accepts only if its own checked out here.
        agreed = hmac.compare_digest(
            _field(body, "confirm", "reply"), _mac(keys.confirm_a, "reply")
        )
        label = "confirm" if agreed else "rejected"
        await relay.put("confirm", {"confirm": _b64(_mac(keys.confirm_d, label))})
        handed_over = True
        if not agreed:
            raise WrongPairingCodeError(
                "The pairing code does not match the other device's (mistyped, or a message "
                "was changed on the way): nothing was received. Run `hushchat sync link` there "
                "again for a new code."
            )
        handed_over = False
        sealed, cursor = await relay.wait("keys", cursor, clock() + step_timeout, clock)
        if sealed is None or sealed.deleted or sealed.id != relay.record_id("keys"):
            raise PairingError(
                "The other device stopped before sending the keys (it saw a wrong code or a "
                "changed message, or gave up): nothing was received. Link again."
            )
        ok = False
        try:
            account, sync_keys = _open_keys(
                keys, account_id, code.session, _field(_body(sealed, "keys"), "sealed", "keys")
            )
            ok = True
        finally:
            await relay.put("done", {"ok": ok, "mac": _b64(_mac(keys.confirm_d, f"done:{ok}"))})
            handed_over = True
    except BaseException:
        if not handed_over:
            await asyncio.shield(relay.burn())
        raise
    try:
        return await engine.join_with(
            lambda header, payload: open_keys_with_link(header, payload, account, sync_keys)
        )
    except RecordTamperedError as error:
        raise PairingError(
            "The keys from the other device are not those of the account's keys record (did "
            "they change meanwhile?): nothing was installed. Run `hushchat sync link` there "
            f"again. ({error})"
        ) from error

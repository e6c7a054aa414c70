"""Sync behind the front door: the signed-in account, its client and its engine.

The session holds one :class:`SyncService` while unlocked. The account (server address,
tokens, this device's key) lives in the Standard database's ``sync_settings``, so it is
encrypted at rest like the chats and gone with the profile; the sync keys live in each
tier's own database (``app.store.sync_state``).

Typical use::

    account = await sign_in_with_browser(url)          # app.sync.login
    await session.sync.sign_in(account)                # kept in the vault
    await session.sync.set_up(passphrase, recovery)    # first device: publish the keys
    # or: await session.sync.join(passphrase=...)      # another device: fetch them
    session.sync.start()                               # background: push, long-poll pull
    ...
    await session.sync.stop()

Everything here is plain asyncio (no Qt); the window shows :attr:`status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from app.errors import UsageError
from app.executor import BlockingRunner
from app.store.library import Library
from app.sync.account import SyncAccount
from app.sync.engine import (
    LONG_POLL_SECONDS,
    EngineStatus,
    SyncEngine,
    SyncReport,
    SyncStatus,
)
from app.tiers import Tier
from app.vault.kdf import KdfParams

if TYPE_CHECKING:
    from app.chat.service import ChatService
    from app.sync.client import SyncClient
    from app.sync.engine import SyncTransport
    from app.vault.vault import SlotInfo

__all__ = ["ACCOUNT_SETTING", "NotSignedInError", "SyncService"]

log = logging.getLogger(__name__)

ACCOUNT_SETTING = "account"
_NOT_SIGNED_IN = EngineStatus(SyncStatus.SIGNED_OUT, "not signed in to a sync server")

TokensSaver = Callable[[SyncAccount], Awaitable[None]]
ClientFactory = Callable[[SyncAccount, TokensSaver], "SyncClient"]


class NotSignedInError(UsageError):
    """Sync needs an account: ``hushchat sync login`` or Settings, Sync."""


def _default_client(account: SyncAccount, on_tokens_changed: TokensSaver) -> SyncClient:
    from app.sync.client import SyncClient

    return SyncClient(account, on_tokens_changed=on_tokens_changed)


class SyncService:
    """One profile's sync: account, client, engine and the background task."""

    def __init__(
        self,
        library: Library,
        chats: ChatService,
        runner: BlockingRunner,
        *,
        client_factory: ClientFactory | None = None,
        long_poll: float = LONG_POLL_SECONDS,
    ) -> None:
        self._library = library
        self._chats = chats
        self._runner = runner
        self._client_factory = client_factory or _default_client
        self._long_poll = long_poll
        self._account: SyncAccount | None = None
        self._client: SyncClient | None = None
        self._engine: SyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._listeners: list[Callable[[EngineStatus], None]] = []
        self._status = _NOT_SIGNED_IN

    # ----------------------------------------------------------------- account

    def _read_account(self) -> SyncAccount | None:
        text = self._library.store(Tier.STANDARD).sync_state().setting(ACCOUNT_SETTING)
        if text is None:
            return None
        return SyncAccount.from_json(text)

    def _write_account(self, account: SyncAccount | None) -> None:
        state = self._library.store(Tier.STANDARD).sync_state()
        with state.transaction():
            state.set_setting(ACCOUNT_SETTING, None if account is None else account.to_json())

    async def account(self) -> SyncAccount | None:
        """The signed-in account, or None."""
        if self._account is None:
            self._account = await self._runner.db(self._read_account)
        return self._account

    async def sign_in(self, account: SyncAccount) -> None:
        """Keep ``account`` (just signed in with ``app.sync.login``) in the vault."""
        await self.stop()
        await self._runner.db(self._write_account, account)
        self._account = account
        self._drop_engine()
        self._client = None

    async def _save_tokens(self, account: SyncAccount) -> None:
        """The client refreshed the tokens: keep the new ones (the old refresh token may
        be single-use)."""
        if self._account is account:
            await self._runner.db(self._write_account, account)

    async def sign_out(self, *, revoke: bool = True) -> None:
        """Forget the account on this device (and, unless ``revoke`` is False, revoke this
        device on the server and the refresh token at the identity provider). Chats and
        sync keys stay; signing in again resumes."""
        account = await self.account()
        if account is None:
            return
        await self.stop()
        if revoke:
            from app.sync import login
            from app.sync.errors import SyncError

            try:
                await self.client().revoke(account.device_id)
            except SyncError as error:  # signed out here anyway; the server may be gone
                log.warning("could not revoke this device on the server: %s", error)
            try:  # a copy of the refresh token (a vault backup) then renews nothing
                await login.revoke_refresh_token(account)
            except SyncError as error:
                log.warning("could not revoke the sign-in at the identity provider: %s", error)
        await self._close_client()
        await self._runner.db(self._write_account, None)
        self._account = None
        self._drop_engine()
        self._set_status(_NOT_SIGNED_IN)

    # ----------------------------------------------------------------- client and engine

    def client(self) -> SyncClient:
        """The HTTP client of the signed-in account (NotSignedInError if none)."""
        if self._client is None:
            account = self._account
            if account is None:
                raise NotSignedInError(
                    "This profile is not signed in to a sync server: run `hushchat sync "
                    "login --server URL` (or Settings, Sync)."
                )
            self._client = self._client_factory(account, self._save_tokens)
        return self._client

    async def engine(self) -> SyncEngine:
        """The engine of the signed-in account."""
        if self._engine is None:
            account = await self.account()
            if account is None:
                self.client()  # raises NotSignedInError
                raise AssertionError("unreachable")
            transport: SyncTransport = self.client()
            engine = SyncEngine(
                self._library,
                transport,
                account.account_id,
                runner=self._runner,
                long_poll=self._long_poll,
            )
            engine.add_status_listener(self._set_status)
            # Remote changes reach the chat service's change bus (the window's views)
            # whether they come from join, sync_now or the background loop.
            engine.attach(self._chats)
            self._engine = engine
        return self._engine

    def _drop_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.detach()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def is_set_up(self) -> bool:
        """Whether this profile holds the account's sync keys (set up or joined)."""
        if await self.account() is None:
            return False
        return await (await self.engine()).is_set_up()

    async def set_up(
        self, *, passphrase: str, recovery_secret: bytes | None, kdf: KdfParams
    ) -> None:
        """First device: make the sync keys and publish them for the passphrase and the
        recovery code (SyncKeysExistError when another device did: :meth:`join`)."""
        await (await self.engine()).setup_keys(
            passphrase=passphrase, recovery_secret=recovery_secret, kdf=kdf
        )

    async def join(
        self, *, passphrase: str | None = None, recovery_secret: bytes | None = None
    ) -> SyncReport:
        """Another device: open the account's keys with the passphrase or the recovery
        code's secret, then fetch every chat."""
        engine = await self.engine()
        if passphrase is not None:
            return await engine.join_with_passphrase(passphrase)
        if recovery_secret is not None:
            return await engine.join_with_recovery(recovery_secret)
        raise UsageError("joining needs the account's passphrase or recovery code")

    async def account_has_keys(self) -> bool:
        """Whether the account already has sync keys on the server (another device set it
        up: :meth:`join`) or not (this is its first device: :meth:`set_up`), asked before
        the passphrase is. A device pushes nothing before it holds the keys, and the keys
        record is the first thing the first device pushes: so the account has keys
        exactly when the server holds any record of it (its cursor is past 0)."""
        return (await self.client().me()).cursor > 0

    async def keys_record_kdf(
        self, slots: Iterable[SlotInfo], configured: KdfParams | None
    ) -> KdfParams:
        """The Argon2id parameters for :meth:`set_up`: those of the vault's passphrase
        slot (``slots``), so the keys record's passphrase wrap is as costly to attack as
        the vault's own; else ``configured``; else calibrated on this machine (off the
        event loop)."""
        for slot in slots:
            if slot.kdf is not None:
                return slot.kdf
        if configured is not None:
            return configured
        from app.vault.kdf import calibrate

        return await self._runner.blocking(calibrate)

    async def sync_now(self) -> SyncReport:
        """Push and pull once, now."""
        return await (await self.engine()).sync_once()

    # ----------------------------------------------------------------- background

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def add_status_listener(self, callback: Callable[[EngineStatus], None]) -> Callable[[], None]:
        """Call ``callback`` with each new status; returns a function that stops it."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):  # removed already
                self._listeners.remove(callback)

        return remove

    def _set_status(self, status: EngineStatus) -> None:
        self._status = status
        for listener in list(self._listeners):
            listener(status)

    async def start(self) -> bool:
        """Sync in the background until :meth:`stop` (or lock). False when not signed
        in or not set up yet (nothing started)."""
        if self.running:
            return True
        if not await self.is_set_up():
            return False
        if self._task is not None and not self._task.done():  # another start() won
            return True  # while this one awaited
        engine = await self.engine()
        engine.attach(self._chats)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(engine.run(self._stop), name="hushchat-sync")
        self._task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # the engine's loop catches everything; this is a bug
            log.error("sync stopped by an unexpected error", exc_info=error)
            self._set_status(EngineStatus(SyncStatus.ERROR, "sync stopped (details in the log)"))

    async def stop(self) -> None:
        """Stop the background sync (waits for the page being applied, if any). The
        engine stays attached to the chat service: "sync now" still shows its changes."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def cancel(self) -> None:
        """On lock (synchronous): stop at once; the library closes next."""
        task, self._task = self._task, None
        if self._engine is not None:
            self._engine.detach()
        if task is not None:
            self._stop.set()
            task.cancel()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RuntimeError):  # no loop: the process is ending
                asyncio.get_running_loop().create_task(client.aclose())

    async def close(self) -> None:
        await self.stop()
        await self._close_client()

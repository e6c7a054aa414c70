"""Recovering the Standard sync key from the server's escrow (``hushchat vault recover
--server URL``), for someone who lost both the passphrase and the recovery code.

1. Sign in (a fresh login: the server asks for one) and make an ephemeral X25519 key.
2. ``POST /v1/recovery/start`` with its public key. The account's e-mail address is told,
   and for the server's recovery delay any other device of the account can cancel it
   (``hushchat sync recovery cancel ID``) or approve it at once (``… approve ID``).
3. ``POST /v1/recovery/complete`` once the delay is over and the server's escrow step has
   sealed the escrowed Standard key to the ephemeral key; this device opens it.

Until the key is installed, what a later ``--resume`` needs is kept in
:data:`PENDING_FILE` in the profile directory, mode 0600: the recovery id, the ephemeral
private key, the device key (the device id is its thumbprint, and only the device that
started a recovery may complete it) and, once opened, the recovered key itself. The file
holds no sign-in tokens (``--resume`` signs in again) and is deleted when the recovery is
done, cancelled or expired. Nothing here logs a key.

The CLI (``app.sync.cli``) and the window (``app.ui.server_recovery``) share the steps:
:func:`start_recovery`, :func:`complete_or_forget` (wait, open, or forget a recovery that
was cancelled or expired), :func:`install_recovered_key` (in the new vault: sign in,
install, fetch) and, in the window, :func:`set_old_vault_aside` (the old vault's files
move into a timestamped directory of the profile; nothing is deleted).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from app.sync.crypto import SyncKey
from app.sync.errors import SyncError
from app.sync.escrow import decode_escrowed_key, open_sealed, raw_public, recovery_aad
from app.tiers import Tier
from app.vault.atomic_file import write_atomically
from app.vault.profile import SLOT_FILE_NAME

if TYPE_CHECKING:
    from app.session import Session
    from app.sync.account import SyncAccount
    from app.sync.client import SyncClient
    from app.sync.protocol import RecoveryOut

__all__ = [
    "PENDING_FILE",
    "PendingRecovery",
    "Recovered",
    "RecoveryEndedError",
    "RecoveryFileError",
    "complete_or_forget",
    "complete_recovery",
    "install_recovered_key",
    "set_old_vault_aside",
    "set_session_vault_aside",
    "start_recovery",
]

log = logging.getLogger(__name__)

PENDING_FILE: Final = "sync-recovery.json"
_FORMAT: Final = 1
#: Longest single wait between two completion attempts (seconds).
MAX_POLL: Final = 60.0


class RecoveryFileError(SyncError):
    """The pending-recovery file is missing or unreadable."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


@dataclass(repr=False)
class PendingRecovery:
    """A recovery this profile started and has not finished."""

    server_url: str
    account_id: str
    recovery_id: str
    ephemeral_key: X25519PrivateKey
    device_key_pem: bytes
    device_name: str | None
    not_before: datetime
    expires_at: datetime
    recovered: SyncKey | None = None

    def __repr__(self) -> str:
        return f"PendingRecovery({self.recovery_id}, server={self.server_url})"

    @staticmethod
    def path(profile_dir: Path) -> Path:
        return profile_dir / PENDING_FILE

    def save(self, profile_dir: Path) -> None:
        """Write the file (0600, atomically)."""
        data: dict[str, Any] = {
            "version": _FORMAT,
            "server_url": self.server_url,
            "account_id": self.account_id,
            "recovery_id": self.recovery_id,
            "ephemeral_key": _b64(_raw_private(self.ephemeral_key)),
            "device_key_pem": self.device_key_pem.decode("ascii"),
            "device_name": self.device_name,
            "not_before": self.not_before.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "recovered": None if self.recovered is None else self.recovered.to_json(),
        }
        profile_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.path(profile_dir), json.dumps(data).encode(), mode=0o600)

    @classmethod
    def load(cls, profile_dir: Path) -> PendingRecovery | None:
        """The pending recovery of this profile, or None."""
        path = cls.path(profile_dir)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            if data.get("version") != _FORMAT:
                raise ValueError("unknown version")
            recovered = data.get("recovered")
            return cls(
                server_url=str(data["server_url"]),
                account_id=str(data["account_id"]),
                recovery_id=str(data["recovery_id"]),
                ephemeral_key=X25519PrivateKey.from_private_bytes(
                    base64.b64decode(data["ephemeral_key"], validate=True)
                ),
                device_key_pem=str(data["device_key_pem"]).encode("ascii"),
                device_name=data.get("device_name"),
                not_before=datetime.fromisoformat(data["not_before"]),
                expires_at=datetime.fromisoformat(data["expires_at"]),
                recovered=None if recovered is None else SyncKey.from_json(recovered),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise RecoveryFileError(
                f"The pending recovery in {path} is unreadable ({type(error).__name__}); "
                "delete the file and start the recovery again."
            ) from None

    @classmethod
    def delete(cls, profile_dir: Path) -> None:
        cls.path(profile_dir).unlink(missing_ok=True)


async def start_recovery(
    client: SyncClient, profile_dir: Path, *, device_key_pem: bytes
) -> PendingRecovery:
    """``POST /v1/recovery/start`` with a new ephemeral key; the pending recovery is saved
    before it is returned (a crash after the start loses nothing a resume needs)."""
    ephemeral = X25519PrivateKey.generate()
    started: RecoveryOut = await client.start_recovery(raw_public(ephemeral.public_key()))
    pending = PendingRecovery(
        server_url=client.server_url,
        account_id=client.account.account_id,
        recovery_id=started.id,
        ephemeral_key=ephemeral,
        device_key_pem=device_key_pem,
        device_name=client.account.device_name,
        not_before=started.not_before,
        expires_at=started.expires_at,
    )
    await asyncio.get_running_loop().run_in_executor(None, pending.save, profile_dir)
    log.info("sync: recovery %s started", started.id)
    return pending


async def complete_recovery(
    client: SyncClient,
    pending: PendingRecovery,
    profile_dir: Path,
    *,
    wait: bool = True,
    on_wait: Callable[[str, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> SyncKey:
    """The recovered Standard sync key: ``complete`` until the server answers (honouring
    Retry-After; ``wait`` False: :class:`~app.sync.client.RecoveryWaitError` at once),
    opened with the ephemeral key and saved in the pending file before it is returned
    (once completed, the server will not answer again)."""
    from app.sync.client import RecoveryWaitError

    if pending.recovered is not None:
        return pending.recovered
    while True:
        try:
            result = await client.complete_recovery(pending.recovery_id)
            break
        except RecoveryWaitError as error:
            if not wait:
                raise
            seconds = min(max(error.retry_after, 1.0), MAX_POLL)
            if on_wait is not None:
                on_wait(error.slug or "", seconds)
            await sleep(seconds)
    plaintext = open_sealed(
        pending.ephemeral_key,
        result.sealed_key,
        recovery_aad(pending.account_id, pending.recovery_id),
    )
    key = decode_escrowed_key(plaintext, result.key_id)
    assert key.tier is Tier.STANDARD
    pending.recovered = key
    await asyncio.get_running_loop().run_in_executor(None, pending.save, profile_dir)
    log.info("sync: recovery %s completed", pending.recovery_id)
    return key


# --- the steps the CLI and the window share ------------------------------------------------


class RecoveryEndedError(SyncError):
    """The recovery can no longer complete (cancelled from another device or by turning
    escrow off, or expired); its pending file was deleted."""


async def complete_or_forget(
    client: SyncClient,
    pending: PendingRecovery,
    profile_dir: Path,
    *,
    on_wait: Callable[[str, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> SyncKey:
    """:func:`complete_recovery`, waiting as the server says; a recovery that can no longer
    complete is forgotten (the pending file is deleted) and :class:`RecoveryEndedError`
    says so."""
    from app.sync.client import SyncRefusedError

    try:
        return await complete_recovery(client, pending, profile_dir, on_wait=on_wait, sleep=sleep)
    except SyncRefusedError as error:
        if error.slug not in ("not-pending", "recovery-expired", "not-found"):
            raise
        await asyncio.get_running_loop().run_in_executor(None, PendingRecovery.delete, profile_dir)
        raise RecoveryEndedError(
            f"The recovery {pending.recovery_id} cannot complete: it was cancelled (from "
            "another device, or by turning escrow off) or it expired."
        ) from error


@dataclass(frozen=True)
class Recovered:
    """What a finished recovery brought back."""

    chats: int
    pulled: int


async def install_recovered_key(
    session: Session, account: SyncAccount, key: SyncKey, profile_dir: Path
) -> Recovered:
    """In the new vault (unlocked): sign in with ``account``, install the recovered
    Standard sync key, forget the pending recovery (from here ``sync now`` fetches what
    this round does not) and fetch the Standard chats once."""
    await session.sync.sign_in(account)
    engine = await session.sync.engine()
    if not await engine.is_set_up():
        await engine.install_standard_key(key)
    await asyncio.get_running_loop().run_in_executor(None, PendingRecovery.delete, profile_dir)
    report = await engine.sync_once()
    chats = await session.service.list_chats()
    log.info("sync: recovered key installed; %d records fetched", report.pulled)
    return Recovered(chats=len(chats), pulled=report.pulled)


#: The files of a vault that a recovery keeps aside (with SQLite's companions).
VAULT_FILES: Final = (SLOT_FILE_NAME, "standard.db", "private.db")


def set_old_vault_aside(profile_dir: Path, now: datetime) -> Path | None:
    """Move the old vault's files (which nobody can open any more) into
    ``vault-before-recovery-<timestamp>`` in the profile, so a new vault can be created;
    nothing is deleted. Returns that directory (None: there was nothing to move)."""
    names = [
        name + suffix
        for name in VAULT_FILES
        for suffix in ("", "-wal", "-shm", "-journal")
        if (profile_dir / (name + suffix)).exists()
    ]
    if not names:
        return None
    stamp = now.strftime("%Y%m%d-%H%M%S")
    aside = profile_dir / f"vault-before-recovery-{stamp}"
    aside.mkdir(mode=0o700)
    for name in names:
        (profile_dir / name).rename(aside / name)
    log.info("recovery: the old vault's %d files were moved to %s", len(names), aside.name)
    return aside


async def set_session_vault_aside(session: Session, now: datetime) -> Path | None:
    """Close the session's old vault (locked: nobody can open it), which releases the
    profile, and move its files aside (:func:`set_old_vault_aside`)."""
    vault = session.vault
    if vault is not None:
        session.lock()
        session.vault = None
        await session.runner.blocking(vault.close)
    return await session.runner.blocking(set_old_vault_aside, session.profile_dir, now)

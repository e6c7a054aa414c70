"""``app/sync/recovery.py`` against a scripted server: the pending-recovery file (0600,
round trip, no secret in its repr), waiting as Retry-After says, the recovered key saved
before it is used, and answers that must not be accepted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from app.store.models import Tier
from app.sync import escrow
from app.sync.client import RecoveryWaitError
from app.sync.crypto import SyncKey
from app.sync.protocol import RecoveryOut, RecoveryResult
from app.sync.recovery import (
    PENDING_FILE,
    PendingRecovery,
    RecoveryFileError,
    complete_recovery,
    start_recovery,
)

ACCOUNT = "acct-1"
MOMENT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class _Account:
    account_id: str = ACCOUNT
    device_name: str | None = "new laptop"


@dataclass
class ScriptedClient:
    """The recovery calls of ``SyncClient``; ``waits`` are answered before the key."""

    key: SyncKey
    waits: list[tuple[str, float]] = field(default_factory=list)
    server_url: str = "https://sync.example.org"
    account: _Account = field(default_factory=_Account)
    device_public_key: bytes = b""
    completions: int = 0
    aad_id: str | None = None  # seal the answer for another recovery id

    async def start_recovery(self, device_public_key: bytes) -> RecoveryOut:
        self.device_public_key = device_public_key
        return RecoveryOut(
            id="rec-1", status="pending", device_id="dev-c", created_at=MOMENT,
            not_before=MOMENT + timedelta(days=1), expires_at=MOMENT + timedelta(days=8),
        )  # fmt: skip

    async def complete_recovery(self, recovery_id: str) -> RecoveryResult:
        self.completions += 1
        if self.waits:
            slug, seconds = self.waits.pop(0)
            raise RecoveryWaitError("not yet", slug, seconds)
        aad = escrow.recovery_aad(ACCOUNT, self.aad_id or recovery_id)
        sealed = escrow.seal(self.device_public_key, escrow.encode_escrowed_key(self.key), aad)
        return RecoveryResult(recovery_id=recovery_id, key_id=self.key.key_id, sealed_key=sealed)


@pytest.fixture
def key() -> SyncKey:
    return SyncKey.generate(Tier.STANDARD, epoch=3)


async def test_start_keeps_the_pending_recovery_in_a_private_file(
    tmp_path: Path, key: SyncKey
) -> None:
    client = ScriptedClient(key)
    profile = tmp_path / "profile"
    pending = await start_recovery(client, profile, device_key_pem=b"PEM")  # type: ignore[arg-type]
    path = profile / PENDING_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    X25519PublicKey.from_public_bytes(client.device_public_key)  # a real X25519 key
    loaded = PendingRecovery.load(profile)
    assert loaded is not None
    assert (loaded.recovery_id, loaded.account_id, loaded.server_url) == (
        "rec-1", ACCOUNT, "https://sync.example.org",
    )  # fmt: skip
    assert loaded.not_before == MOMENT + timedelta(days=1) and loaded.device_key_pem == b"PEM"
    assert escrow.raw_public(loaded.ephemeral_key.public_key()) == client.device_public_key
    assert "PEM" not in repr(pending) and "ephemeral" not in repr(pending)
    PendingRecovery.delete(profile)
    assert PendingRecovery.load(profile) is None
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RecoveryFileError, match="delete the file"):
        PendingRecovery.load(profile)


async def test_complete_waits_as_the_server_says_and_saves_the_key_first(
    tmp_path: Path, key: SyncKey
) -> None:
    client = ScriptedClient(key, waits=[("recovery-delay", 3600.0), ("recovery-waiting", 5.0)])
    pending = await start_recovery(client, tmp_path, device_key_pem=b"PEM")  # type: ignore[arg-type]
    with pytest.raises(RecoveryWaitError):
        await complete_recovery(client, pending, tmp_path, wait=False)  # type: ignore[arg-type]
    client.waits.insert(0, ("recovery-delay", 3600.0))
    slept: list[float] = []
    told: list[tuple[str, float]] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    recovered = await complete_recovery(
        client,  # type: ignore[arg-type]
        pending,
        tmp_path,
        on_wait=lambda slug, seconds: told.append((slug, seconds)),
        sleep=sleep,
    )
    assert slept == [60.0, 5.0]  # a long Retry-After is polled at most a minute apart
    assert [slug for slug, _ in told] == ["recovery-delay", "recovery-waiting"]
    assert (recovered.key_id, recovered.secret, recovered.epoch) == (key.key_id, key.secret, 3)
    # Saved before it is used: a crash afterwards does not need the server again
    # (which would not answer twice).
    reloaded = PendingRecovery.load(tmp_path)
    assert reloaded is not None and reloaded.recovered is not None
    calls = client.completions
    again = await complete_recovery(client, reloaded, tmp_path)  # type: ignore[arg-type]
    assert again.secret == key.secret and client.completions == calls


async def test_an_answer_for_another_recovery_is_refused(tmp_path: Path, key: SyncKey) -> None:
    client = ScriptedClient(key, aad_id="rec-other")
    pending = await start_recovery(client, tmp_path, device_key_pem=b"PEM")  # type: ignore[arg-type]
    with pytest.raises(escrow.SealingError):
        await complete_recovery(client, pending, tmp_path)  # type: ignore[arg-type]
    reloaded = PendingRecovery.load(tmp_path)
    assert reloaded is not None and reloaded.recovered is None

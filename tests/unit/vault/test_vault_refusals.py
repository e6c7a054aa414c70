"""What the vault refuses, and what a failed operation leaves behind (nothing half-done).

Security keys and keychains are in-memory fakes with the interfaces the vault uses;
the real ones are exercised in tests/integration/vault.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from app.vault import (
    FLOOR_PARAMS,
    NoSecretAvailableError,
    UnlockMethodUnavailableError,
    Vault,
    WrongSecretError,
)
from app.vault.atomic_file import write_atomically
from app.vault.security_key import PrfResult, SecurityKey
from tests.peers.vault_fixtures import TemplateVault, snapshot

NEW = "another passphrase, long enough"


class FakeKey:
    """A FIDO2 key with one credential: PRF output = HMAC(its secret, salt)."""

    def __init__(self, *, pin_used: bool) -> None:
        self.credential = b"credential-" + bytes(8)
        self.secret = b"\x07" * 32
        self.pin_used = pin_used
        self.answers_as: bytes | None = None  # another credential id, to play a foreign key

    def enrol(self, *, user_id: bytes, user_name: str, rp_id: str = "") -> bytes:
        return self.credential

    def evaluate(
        self, salts: dict[bytes, bytes], *, user_verification: bool | None, rp_id: str = ""
    ) -> PrfResult:
        salt = salts[self.credential]
        output = hmac.digest(self.secret, salt, hashlib.sha256)
        return PrfResult(self.answers_as or self.credential, output, self.pin_used)


class Keychain:
    """An in-memory keychain that records deletions, or cannot delete (a locked keychain)."""

    def __init__(self, *, can_delete: bool = True) -> None:
        self.items: dict[tuple[str, str], bytes] = {}
        self.deleted: list[tuple[str, str]] = []
        self.can_delete = can_delete

    def store(self, service: str, account: str, secret: bytes) -> None:
        self.items[(service, account)] = secret

    def load(self, service: str, account: str) -> bytes:
        return self.items[(service, account)]

    def delete(self, service: str, account: str) -> None:
        if not self.can_delete:
            raise UnlockMethodUnavailableError("The keychain is locked.")
        self.deleted.append((service, account))
        self.items.pop((service, account), None)


def key(fake: FakeKey) -> SecurityKey:
    return cast(SecurityKey, fake)


def test_an_empty_passphrase_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(WrongSecretError, match="empty"):
        Vault.create(tmp_path / "profile", "", kdf=FLOOR_PARAMS)
    assert not (tmp_path / "profile").exists()


def test_an_empty_new_passphrase_changes_nothing(unlocked: Vault, profile: Path) -> None:
    before = snapshot(profile)
    with pytest.raises(WrongSecretError, match="empty"):
        unlocked.change_passphrase("")
    assert snapshot(profile) == before


def test_only_stored_tiers_have_a_database(unlocked: Vault) -> None:
    with pytest.raises(ValueError, match="unknown tier 'ephemeral'"):
        unlocked.connect(cast(Any, "ephemeral"))


def test_without_a_passphrase_slot_the_recovery_code_sets_one(
    unlocked: Vault, template_vault: TemplateVault
) -> None:
    passphrase = next(
        s for s in unlocked.status(unlocked.profile_dir).slots if s.kind == "passphrase"
    )
    unlocked.remove_slot(passphrase.id)
    unlocked.lock()
    with pytest.raises(NoSecretAvailableError, match="no passphrase slot"):
        unlocked.unlock_with_passphrase(template_vault.passphrase)
    unlocked.unlock_with_recovery_code(template_vault.recovery_code)
    unlocked.change_passphrase(NEW, kdf=FLOOR_PARAMS)  # added, as no slot was replaced
    unlocked.lock()
    unlocked.unlock_with_passphrase(NEW)
    kinds = [s.kind for s in Vault.status(unlocked.profile_dir).slots]
    assert sorted(kinds) == ["passphrase", "recovery"]


def test_without_a_recovery_slot_the_code_has_nothing_to_open(
    unlocked: Vault, template_vault: TemplateVault
) -> None:
    recovery = next(s for s in Vault.status(unlocked.profile_dir).slots if s.kind == "recovery")
    unlocked.remove_slot(recovery.id)
    unlocked.lock()
    with pytest.raises(NoSecretAvailableError, match="no slot of that kind"):
        unlocked.unlock_with_recovery_code(template_vault.recovery_code)


def test_a_security_key_unlocks_with_the_same_pin_use(unlocked: Vault) -> None:
    fake = FakeKey(pin_used=True)
    unlocked.add_security_key(key(fake))
    unlocked.lock()
    fake.pin_used = False  # enrolled with the PIN, now used without it
    with pytest.raises(WrongSecretError, match="enter the PIN when asked"):
        unlocked.unlock_with_security_key(key(fake))
    assert unlocked.is_locked
    fake.pin_used = True
    unlocked.unlock_with_security_key(key(fake))
    assert not unlocked.is_locked


def test_a_key_answering_for_another_credential_is_not_enrolled(unlocked: Vault) -> None:
    fake = FakeKey(pin_used=False)
    unlocked.add_security_key(key(fake))
    unlocked.lock()
    fake.answers_as = b"someone else's credential"
    with pytest.raises(WrongSecretError, match="not enrolled in this vault"):
        unlocked.unlock_with_security_key(key(fake))
    assert unlocked.is_locked


def test_a_keychain_item_is_not_left_behind_when_the_slot_cannot_be_written(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Keychain()
    unlocked._secret_store = store
    before = snapshot(profile)

    def disk_full(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("app.vault.vault.write_atomically", disk_full)
    with pytest.raises(OSError, match="No space left"):
        unlocked.add_keychain()
    assert len(store.deleted) == 1
    assert store.items == {}
    assert snapshot(profile) == before


def test_removing_a_keychain_slot_survives_a_keychain_that_cannot_delete(
    unlocked: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    unlocked._secret_store = Keychain(can_delete=False)
    info = unlocked.add_keychain()
    with caplog.at_level(logging.WARNING, logger="app.vault.vault"):
        unlocked.remove_slot(info.id)
    assert info.id not in {s.id for s in Vault.status(unlocked.profile_dir).slots}
    assert f"could not delete the keychain item of slot {info.id}" in caplog.text


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "vault.json"
    target.mkdir()  # a directory in the way: the final rename fails
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        write_atomically(target, b"new content")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault.json"]
    assert (target / "keep").read_text() == "x"

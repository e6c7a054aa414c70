"""File modes: the profile directory is 0700 and every file of the vault 0600, after
create, unlock, rekey and rotation, whatever the umask; looser modes are tightened."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.tiers import Tier
from app.vault import FLOOR_PARAMS, Vault
from app.vault.database import create_database, export_with_new_key
from tests.peers.vault_fixtures import PASSPHRASE

pytestmark = pytest.mark.skipif(os.name == "nt", reason="Windows keeps access in ACLs")


@pytest.fixture(autouse=True)
def common_umask() -> Iterator[None]:
    """The usual 022: files SQLite creates on its own would be 0644 under it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(profile: Path) -> None:
    assert _mode(profile) == 0o700
    files = sorted(path for path in profile.iterdir() if path.is_file())
    assert files
    loose = {path.name: oct(_mode(path)) for path in files if _mode(path) & 0o077}
    assert loose == {}


def _write(vault: Vault) -> None:
    """Write to both databases so that their -wal and -shm files exist."""
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        connection = vault.connect(tier)
        connection.execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
        connection.execute("INSERT INTO notes VALUES ('x')")


def test_modes_after_create_unlock_rekey_and_rotation(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    vault, _code = Vault.create(profile, PASSPHRASE, kdf=FLOOR_PARAMS)
    _write(vault)
    assert (profile / "standard.db-wal").exists()
    _assert_private(profile)
    vault.lock()
    vault.unlock_with_passphrase(PASSPHRASE)
    _write(vault)
    _assert_private(profile)
    vault.rekey()
    _write(vault)
    _assert_private(profile)
    vault.rotate_keys(passphrase=PASSPHRASE)
    _write(vault)
    _assert_private(profile)
    vault.close()
    _assert_private(profile)


def test_the_copy_is_private_before_it_is_renamed(
    unlocked: Vault, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source, target = tmp_path / "a.db", tmp_path / "a.db.rekey"
    create_database(source, bytes(range(32)))
    export_with_new_key(source, bytes(range(32)), target, bytes(range(1, 33)))
    assert (_mode(source), _mode(target)) == (0o600, 0o600)

    seen: dict[str, int] = {}
    real_swap = Vault._swap_in

    def record(self: Vault, path: Path, temp: Path, what: str) -> None:
        seen[f"{what} {temp.name}"] = _mode(temp)
        real_swap(self, path, temp, what)

    monkeypatch.setattr(Vault, "_swap_in", record)
    unlocked.rekey()
    unlocked.rotate_keys(passphrase=PASSPHRASE)
    assert seen == {
        "rekey standard.db.rekey": 0o600,
        "rekey private.db.rekey": 0o600,
        "key rotation standard.db.rekey": 0o600,
        "key rotation private.db.rekey": 0o600,
    }


def test_loose_modes_are_tightened_on_open(profile: Path) -> None:
    profile.chmod(0o755)
    for name in ("vault.json", "standard.db", "private.db"):
        (profile / name).chmod(0o644)
    (profile / "standard.db-wal").write_bytes(b"")
    (profile / "standard.db-wal").chmod(0o666)
    (profile / "notes.txt").write_text("not ours")
    (profile / "notes.txt").chmod(0o644)
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(PASSPHRASE)
        assert _mode(profile) == 0o700
        for name in ("vault.json", "standard.db", "private.db", "standard.db-wal"):
            assert _mode(profile / name) == 0o600, name
        assert _mode(profile / "notes.txt") == 0o644  # not the vault's: left alone


def test_an_existing_loose_directory_is_tightened_on_create(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir(mode=0o755)
    profile.chmod(0o755)
    vault, _code = Vault.create(profile, PASSPHRASE, kdf=FLOOR_PARAMS)
    vault.close()
    _assert_private(profile)


def test_a_mode_that_cannot_be_changed_does_not_stop_the_open(
    profile: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    profile.chmod(0o755)
    real_chmod = Path.chmod

    def refuse(self: Path, mode: int, **kwargs: object) -> None:
        if self == profile:
            raise PermissionError("read-only mount")
        real_chmod(self, mode)

    monkeypatch.setattr(Path, "chmod", refuse)
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(PASSPHRASE)
    assert "could not tighten the permissions" in caplog.text

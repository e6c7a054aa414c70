"""The vault service on real SQLCipher files in temporary profiles."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from app.vault import (
    FLOOR_PARAMS,
    LastSlotError,
    ManualClock,
    NoSecretAvailableError,
    ProfileInUseError,
    SlotNotFoundError,
    Vault,
    VaultExistsError,
    VaultLockedError,
    VaultNotFoundError,
    WrongSecretError,
)
from app.vault.database import open_database
from app.vault.errors import (
    DamagedSlotFileError,
    DatabaseDamagedError,
    KdfBelowFloorError,
    SqlcipherMissingError,
)
from app.vault.recovery_code import RecoveryCode
from tests.peers.vault_fixtures import TemplateVault, snapshot
from tests.unit.vault.fake_store import FakeStore

SENTINEL = "HUSHCHAT-SENTINEL-7d1f0c"


def test_create_refuses_to_overwrite(profile: Path) -> None:
    before = snapshot(profile)
    with pytest.raises(VaultExistsError, match="refusing to overwrite"):
        Vault.create(profile, "x", kdf=FLOOR_PARAMS)
    assert snapshot(profile) == before


def test_create_refuses_leftover_databases(tmp_path: Path) -> None:
    (tmp_path / "standard.db").write_bytes(b"junk")
    with pytest.raises(VaultExistsError, match=r"standard\.db"):
        Vault.create(tmp_path, "x", kdf=FLOOR_PARAMS)
    assert (tmp_path / "standard.db").read_bytes() == b"junk"


def test_create_refuses_weak_kdf(tmp_path: Path) -> None:
    from app.vault.kdf import KdfParams

    with pytest.raises(KdfBelowFloorError):
        Vault.create(tmp_path, "x", kdf=KdfParams(1024, 1, 1))


def test_open_missing_vault(tmp_path: Path) -> None:
    with pytest.raises(VaultNotFoundError, match="vault init"):
        Vault.open(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unlock_with_passphrase_and_recovery_code(
    profile: Path, template_vault: TemplateVault
) -> None:
    with Vault.open(profile) as vault:
        assert vault.is_locked
        vault.unlock_with_passphrase(template_vault.passphrase)
        assert not vault.is_locked
        vault.lock()
        assert vault.is_locked
        vault.unlock_with_recovery_code(template_vault.recovery_code.formatted())
        assert not vault.is_locked


@pytest.mark.parametrize(
    "attempt",
    ["wrong passphrase", "correct horse battery stapl", "", "correct horse battery staple "],
)
def test_wrong_passphrase_changes_nothing(profile: Path, attempt: str) -> None:
    before = snapshot(profile)
    with Vault.open(profile) as vault, pytest.raises(WrongSecretError, match="passphrase"):
        vault.unlock_with_passphrase(attempt)
    assert snapshot(profile) == before


def test_wrong_recovery_code_changes_nothing(profile: Path) -> None:
    before = snapshot(profile)
    with Vault.open(profile) as vault, pytest.raises(WrongSecretError, match="recovery code"):
        vault.unlock_with_recovery_code(RecoveryCode.generate())
    assert snapshot(profile) == before


def test_connect_needs_unlock_and_lock_closes_connections(unlocked: Vault) -> None:
    connection = unlocked.connect("standard")
    connection.execute("CREATE TABLE notes (body TEXT)")
    unlocked.lock()
    with pytest.raises(Exception, match="closed"):
        connection.execute("SELECT 1")
    with pytest.raises(VaultLockedError):
        unlocked.connect("private")


def test_connection_pragmas(unlocked: Vault) -> None:
    connection = unlocked.connect("private")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert connection.execute("PRAGMA temp_store").fetchone()[0] == 2
    # Deliberately off: see MEMORY_SECURITY in app/vault/database.py.
    assert connection.execute("PRAGMA cipher_memory_security").fetchone()[0] == "0"
    assert connection.execute("PRAGMA cipher_version").fetchone()[0]
    assert connection.execute("SELECT value FROM vault_meta WHERE name='tier'").fetchone() == (
        "private",
    )


def test_sqlcipher_missing_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "plain.db"
    sqlite3.connect(path).close()

    def plain(name: str) -> sqlite3.Connection:
        return sqlite3.connect(name)

    with pytest.raises(SqlcipherMissingError, match="cipher_version is empty"):
        open_database(path, bytes(32), factory=plain)


def test_change_passphrase_rewrites_only_the_slot_file(profile: Path) -> None:
    before = snapshot(profile)
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase("correct horse battery staple")
        vault.change_passphrase("a new and better passphrase")
    after = snapshot(profile)
    assert {name for name in before if before[name] != after.get(name)} == {"vault.json"}
    with Vault.open(profile) as vault:
        with pytest.raises(WrongSecretError):
            vault.unlock_with_passphrase("correct horse battery staple")
        vault.unlock_with_passphrase("a new and better passphrase")


def test_regenerate_recovery_code(unlocked: Vault, template_vault: TemplateVault) -> None:
    new_code = unlocked.regenerate_recovery_code()
    unlocked.lock()
    with pytest.raises(WrongSecretError):
        unlocked.unlock_with_recovery_code(template_vault.recovery_code)
    unlocked.unlock_with_recovery_code(str(new_code))
    assert [slot.kind for slot in unlocked.slots()] == ["passphrase", "recovery"]


def test_remove_slots_but_never_the_last(unlocked: Vault) -> None:
    passphrase_slot, recovery_slot = unlocked.slots()
    with pytest.raises(SlotNotFoundError):
        unlocked.remove_slot("00000000")
    unlocked.remove_slot(passphrase_slot.id)
    with pytest.raises(LastSlotError):
        unlocked.remove_slot(recovery_slot.id)
    unlocked.lock()
    with pytest.raises(NoSecretAvailableError, match="no passphrase slot"):
        unlocked.unlock_with_passphrase("correct horse battery staple")


def test_slot_operations_need_unlock(profile: Path) -> None:
    with Vault.open(profile) as vault:
        for call in (
            lambda: vault.change_passphrase("x"),
            vault.regenerate_recovery_code,
            lambda: vault.remove_slot("x"),
            vault.rekey,
            vault.verify_databases,
        ):
            with pytest.raises(VaultLockedError):
                call()


def test_idle_auto_lock_with_fake_clock(profile: Path) -> None:
    clock = ManualClock()
    with Vault.open(profile, idle_timeout_seconds=300, clock=clock) as vault:
        vault.unlock_with_passphrase("correct horse battery staple")
        clock.advance(200)
        assert not vault.lock_if_idle()
        vault.connect("standard")  # activity
        clock.advance(200)
        assert vault.seconds_until_idle_lock() == 100
        assert not vault.lock_if_idle()
        clock.advance(100)
        assert vault.lock_if_idle()
        assert vault.is_locked
        assert not vault.lock_if_idle()


def test_no_idle_timeout_never_locks(unlocked: Vault) -> None:
    assert unlocked.seconds_until_idle_lock() is None
    assert not unlocked.lock_if_idle()


def test_second_opener_in_same_process_is_refused(profile: Path) -> None:
    with Vault.open(profile), pytest.raises(ProfileInUseError, match="another Hushchat process"):
        Vault.open(profile)
    Vault.open(profile).close()  # released


def test_second_opener_in_another_process_is_refused(profile: Path) -> None:
    script = (
        "import sys\n"
        "from app.vault import Vault, ProfileInUseError\n"
        "try:\n"
        f"    Vault.open({str(profile)!r})\n"
        "except ProfileInUseError as e:\n"
        "    print(e); sys.exit(4)\n"
    )
    with Vault.open(profile):
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
        assert Vault.status(profile).in_use
    assert result.returncode == 4, result.stderr
    assert "another Hushchat process" in result.stdout
    assert not Vault.status(profile).in_use


def test_status_needs_no_secret_and_changes_nothing(profile: Path) -> None:
    before = snapshot(profile)
    status = Vault.status(profile)
    assert [slot.kind for slot in status.slots] == ["passphrase", "recovery"]
    assert all(db.exists and db.generation == 1 for db in status.databases)
    assert not status.rekey_pending
    assert snapshot(profile) == before


def test_rekey_keeps_data_and_changes_keys(unlocked: Vault, profile: Path) -> None:
    connection = unlocked.connect("standard")
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.executemany("INSERT INTO notes VALUES (?)", [(f"row {i}",) for i in range(500)])
    old_bytes = (profile / "standard.db").read_bytes()
    unlocked.rekey()
    assert [db.generation for db in Vault.status(profile).databases] == [2, 2]
    rows = unlocked.connect("standard").execute("SELECT count(*) FROM notes").fetchone()
    assert rows == (500,)
    assert (profile / "standard.db").read_bytes()[:4096] != old_bytes[:4096]
    assert not (profile / "standard.db.rekey").exists()
    unlocked.lock()
    unlocked.unlock_with_passphrase("correct horse battery staple")
    unlocked.verify_databases()


def _write_sentinel(vault: Vault) -> None:
    for tier in ("standard", "private"):
        connection = vault.connect(tier)  # type: ignore[arg-type]
        connection.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany(
            "INSERT INTO messages (body) VALUES (?)", [(f"{SENTINEL} {i}",) for i in range(200)]
        )
        connection.execute("UPDATE messages SET body = body || ' edited'")
        connection.execute("DELETE FROM messages WHERE id % 2 = 0")


def _assert_no_plaintext(profile: Path) -> None:
    files = [p for p in profile.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert SENTINEL.encode() not in data, path.name
        assert SENTINEL.encode("utf-16-le") not in data, path.name
        assert b"SQLite format 3\0" not in data, path.name
        assert b"CREATE TABLE" not in data, path.name


def test_no_plaintext_in_any_profile_file(profile: Path, template_vault: TemplateVault) -> None:
    log_file = profile / "logs" / "hushchat.log"
    log_file.parent.mkdir()
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with Vault.open(profile) as vault:
            vault.unlock_with_passphrase(template_vault.passphrase)
            _write_sentinel(vault)
            assert (profile / "standard.db-wal").exists()
            _assert_no_plaintext(profile)  # while open: WAL holds the fresh pages
            vault.change_passphrase(SENTINEL)
            vault.rekey()
            _write_sentinel_again = vault.connect("private")
            _write_sentinel_again.execute("INSERT INTO messages (body) VALUES (?)", (SENTINEL,))
            _assert_no_plaintext(profile)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
    assert log_file.stat().st_size > 0  # the vault did log, just nothing secret
    _assert_no_plaintext(profile)


def test_flipped_database_byte_is_detected_and_nothing_overwritten(
    profile: Path, template_vault: TemplateVault
) -> None:
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(template_vault.passphrase)
        _write_sentinel(vault)
    path = profile / "standard.db"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    before = snapshot(profile)
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(template_vault.passphrase)
        with pytest.raises(DatabaseDamagedError, match=r"standard\.db is damaged"):
            vault.verify_databases()
    assert snapshot(profile) == before


def test_flipped_first_page_byte_fails_connect(
    profile: Path, template_vault: TemplateVault
) -> None:
    path = profile / "private.db"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    before = snapshot(profile)
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(template_vault.passphrase)
        with pytest.raises(DatabaseDamagedError, match=r"private\.db"):
            vault.connect("private")
    assert snapshot(profile) == before


def test_truncated_slot_file_is_reported_and_kept(profile: Path) -> None:
    path = profile / "vault.json"
    path.write_bytes(path.read_bytes()[:-40])
    before = snapshot(profile)
    with pytest.raises(DamagedSlotFileError, match="damaged"):
        Vault.open(profile)
    with pytest.raises(DamagedSlotFileError):
        Vault.status(profile)
    assert snapshot(profile) == before


def test_keychain_slot_with_fake_store(unlocked: Vault) -> None:
    store = FakeStore()
    unlocked._secret_store = store
    info = unlocked.add_keychain()
    assert len(store.items) == 1
    unlocked.lock()
    unlocked.unlock_with_keychain()
    assert not unlocked.is_locked
    assert unlocked.open_tiers == ("standard",)  # the keychain opens Standard only
    unlocked.unlock_with_passphrase("correct horse battery staple")
    unlocked.remove_slot(info.id)
    assert store.items == {}
    unlocked.lock()
    with pytest.raises(NoSecretAvailableError):
        unlocked.unlock_with_keychain()


def test_keychain_entry_missing(unlocked: Vault, profile: Path) -> None:
    store = FakeStore()
    unlocked._secret_store = store
    unlocked.add_keychain()
    store.items.clear()
    unlocked.lock()
    before = snapshot(profile)
    with pytest.raises(NoSecretAvailableError, match="no entry"):
        unlocked.unlock_with_keychain()
    assert snapshot(profile) == before


def test_failed_rekey_is_abandoned_cleanly(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.vault import database

    def broken_export(source: Path, old: bytes, target: Path, new: bytes) -> None:
        target.write_bytes(b"partial")
        raise DatabaseDamagedError("disk full")

    connection = unlocked.connect("standard")
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.execute("INSERT INTO notes VALUES ('kept')")
    database_before = (profile / "private.db").read_bytes()
    monkeypatch.setattr(database, "export_with_new_key", broken_export)
    with pytest.raises(DatabaseDamagedError, match="disk full"):
        unlocked.rekey(("private",))
    assert not Vault.status(profile).rekey_pending
    assert not (profile / "private.db.rekey").exists()
    assert (profile / "private.db").read_bytes() == database_before
    monkeypatch.undo()
    unlocked.lock()
    unlocked.unlock_with_passphrase("correct horse battery staple")
    assert unlocked.connect("standard").execute("SELECT * FROM notes").fetchall() == [("kept",)]
    unlocked.verify_databases()

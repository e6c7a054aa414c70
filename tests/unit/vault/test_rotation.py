"""Key rotation: a new vault key and new database keys, so old copies of vault.json open
nothing current; failures before the commit change nothing, a crash after it is finished
by the next unlock."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.agent.client import stale_reason
from app.tiers import Tier
from app.vault import (
    FLOOR_PARAMS,
    DatabaseDamagedError,
    LastSlotError,
    RecoveryCode,
    Vault,
    VaultLockedError,
    WrongSecretError,
)
from app.vault.database import key_opens
from app.vault.slots import TIERS, SlotFile, unwrap_database_key
from tests.peers.vault_fixtures import PASSPHRASE, TemplateVault, snapshot
from tests.unit.vault.fake_store import FakeStore

NEW = "a rotated passphrase nobody has typed before"


def _seed(vault: Vault) -> None:
    for tier in TIERS:
        connection = vault.connect(tier)
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.executemany(
            "INSERT INTO notes VALUES (?)", [(f"{tier} {i}",) for i in range(50)]
        )


def _rows(vault: Vault, tier: Tier) -> int:
    return int(vault.connect(tier).execute("SELECT count(*) FROM notes").fetchone()[0])


def _slot_file(profile: Path) -> SlotFile:
    return SlotFile.from_bytes((profile / "vault.json").read_bytes())


def _old_copy_opens_nothing(profile: Path, old_json: bytes, tmp_path: Path, **unlock: str) -> None:
    """Put an old vault.json in a copy of the profile: the old secret still unlocks that
    file, and the database keys it holds open none of the current databases."""
    attacker = tmp_path / "attacker"
    shutil.copytree(profile, attacker)
    (attacker / "vault.json").write_bytes(old_json)
    with Vault.open(attacker) as vault:
        if "passphrase" in unlock:
            vault.unlock_with_passphrase(unlock["passphrase"])
        else:
            vault.unlock_with_recovery_code(unlock["recovery_code"])
        assert vault._vault_key is not None
        old_file = _slot_file(attacker)
        for tier in TIERS:
            key = unwrap_database_key(
                old_file.databases[tier], bytes(vault._vault_key), old_file.vault_id
            )
            assert not key_opens(attacker / f"{tier}.db", key), tier
            with pytest.raises(DatabaseDamagedError):
                vault.connect(tier)
    shutil.rmtree(attacker)


def test_old_vault_json_and_old_secrets_open_nothing_after_rotation(
    unlocked: Vault, profile: Path, template_vault: TemplateVault, tmp_path: Path
) -> None:
    _seed(unlocked)
    old_json = (profile / "vault.json").read_bytes()
    # Before the rotation the old copy opens everything: that is what rotation fixes.
    unlocked.change_passphrase(NEW, kdf=FLOOR_PARAMS)
    with _copy(profile, tmp_path / "before") as copy:
        (copy / "vault.json").write_bytes(old_json)
        with Vault.open(copy) as vault:
            vault.unlock_with_passphrase(PASSPHRASE)
            assert _rows(vault, Tier.PRIVATE) == 50

    rotation = unlocked.rotate_keys(passphrase=NEW, kdf=FLOOR_PARAMS)
    assert rotation.recovery_code is not None
    assert [slot.kind for slot in rotation.slots] == ["passphrase", "recovery"]
    assert rotation.dropped == ()
    assert rotation.unfinished is None
    assert all(_rows(unlocked, tier) == 50 for tier in TIERS)  # still unlocked, new keys
    after = _slot_file(profile)
    assert after.vault_id == SlotFile.from_bytes(old_json).vault_id
    assert [after.databases[tier].generation for tier in TIERS] == [2, 2]
    assert after.is_settled
    assert not any(path.name.endswith(".rekey") for path in profile.iterdir())
    unlocked.close()

    _old_copy_opens_nothing(profile, old_json, tmp_path, passphrase=PASSPHRASE)
    _old_copy_opens_nothing(
        profile, old_json, tmp_path, recovery_code=template_vault.recovery_code.formatted()
    )
    with Vault.open(profile) as vault:
        with pytest.raises(WrongSecretError):
            vault.unlock_with_passphrase(PASSPHRASE)
        with pytest.raises(WrongSecretError):
            vault.unlock_with_recovery_code(template_vault.recovery_code)
        vault.unlock_with_recovery_code(rotation.recovery_code)
        assert all(_rows(vault, tier) == 50 for tier in TIERS)
        vault.lock()
        vault.unlock_with_passphrase(NEW)
        vault.verify_databases()


class _copy:
    """A copy of a profile for the length of a ``with`` block."""

    def __init__(self, source: Path, target: Path) -> None:
        self.source, self.target = source, target

    def __enter__(self) -> Path:
        shutil.copytree(self.source, self.target, ignore=shutil.ignore_patterns("vault.lock"))
        return self.target

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.target)


def test_rotation_keeping_the_same_passphrase(
    unlocked: Vault, profile: Path, tmp_path: Path
) -> None:
    old_json = (profile / "vault.json").read_bytes()
    rotation = unlocked.rotate_keys(passphrase=PASSPHRASE)
    unlocked.close()
    assert rotation.recovery_code is not None
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(PASSPHRASE)  # the same passphrase, a new slot
        vault.verify_databases()
    _old_copy_opens_nothing(profile, old_json, tmp_path, passphrase=PASSPHRASE)


def test_rotation_makes_agents_stale(unlocked: Vault, profile: Path) -> None:
    keys = unlocked.agent_keys()
    assert stale_reason(profile, keys) is None
    unlocked.rotate_keys(passphrase=PASSPHRASE)
    assert stale_reason(profile, keys) is not None
    with pytest.raises(VaultLockedError, match="rekeyed"):
        Vault.attach(profile, keys)
    fresh = unlocked.agent_keys()
    assert stale_reason(profile, fresh) is None
    assert fresh.generations == {Tier.STANDARD: 2, Tier.PRIVATE: 2}
    keys.wipe()
    fresh.wipe()


def test_rotation_recreates_the_keychain_slot_and_forgets_the_old_item(
    unlocked: Vault, profile: Path, tmp_path: Path
) -> None:
    store = FakeStore()
    unlocked._secret_store = store
    unlocked.add_keychain()
    (old_item,) = store.items
    old_secret = store.items[old_item]
    old_json = (profile / "vault.json").read_bytes()
    rotation = unlocked.rotate_keys(passphrase=PASSPHRASE)
    assert [slot.kind for slot in rotation.slots] == ["passphrase", "recovery", "keychain"]
    assert old_item not in store.items and len(store.items) == 1
    unlocked.lock()
    unlocked.unlock_with_keychain()
    assert unlocked.open_tiers == (Tier.STANDARD,)
    unlocked.close()
    # The old keychain secret with the old vault.json: the Standard key it unwraps is stale.
    attacker = tmp_path / "attacker"
    shutil.copytree(profile, attacker, ignore=shutil.ignore_patterns("vault.lock"))
    (attacker / "vault.json").write_bytes(old_json)
    old_store = FakeStore()
    old_store.items[old_item] = old_secret
    with Vault.open(attacker, secret_store=old_store) as vault:
        vault.unlock_with_keychain()
        with pytest.raises(DatabaseDamagedError):
            vault.connect(Tier.STANDARD)


def test_rotation_drops_what_is_not_renewed(unlocked: Vault) -> None:
    store = FakeStore()
    unlocked._secret_store = store
    keychain = unlocked.add_keychain()
    passphrase_slot, recovery_slot = unlocked.slots()[:2]
    preview = unlocked.rotation_drops(keep_passphrase=False)
    assert [slot.id for slot in preview] == [passphrase_slot.id]
    preview = unlocked.rotation_drops(keep_passphrase=True, drop=[keychain.id], recovery_code=False)
    assert [slot.id for slot in preview] == [recovery_slot.id, keychain.id]

    rotation = unlocked.rotate_keys(passphrase=None, drop=[keychain.id])
    assert [slot.id for slot in rotation.dropped] == [passphrase_slot.id, keychain.id]
    assert [slot.kind for slot in rotation.slots] == ["recovery"]
    assert store.items == {}
    assert rotation.recovery_code is not None
    unlocked.lock()
    unlocked.unlock_with_recovery_code(rotation.recovery_code)
    with pytest.raises(LastSlotError):
        unlocked.rotate_keys(passphrase=None, recovery_code=False)


def test_store_unavailable_drops_the_keychain_slot_and_says_so(unlocked: Vault) -> None:
    store = FakeStore()
    unlocked._secret_store = store
    keychain = unlocked.add_keychain()
    store.unavailable = True
    rotation = unlocked.rotate_keys(passphrase=PASSPHRASE)
    assert [slot.id for slot in rotation.dropped] == [keychain.id]
    assert [slot.kind for slot in unlocked.slots()] == ["passphrase", "recovery"]


def test_rotation_needs_the_vault_key(unlocked: Vault, profile: Path) -> None:
    store = FakeStore()
    unlocked._secret_store = store
    unlocked.add_keychain()
    keys = unlocked.agent_keys()
    unlocked.lock()
    with pytest.raises(VaultLockedError, match="locked"):
        unlocked.rotate_keys(passphrase=PASSPHRASE)
    unlocked.unlock_with_keychain()
    with pytest.raises(VaultLockedError, match="Standard"):
        unlocked.rotate_keys(passphrase=PASSPHRASE)
    unlocked.close()
    attached = Vault.attach(profile, keys)
    with pytest.raises(VaultLockedError, match="agent"):
        attached.rotate_keys(passphrase=PASSPHRASE)
    attached.close()
    keys.wipe()


def test_failure_before_the_commit_changes_nothing(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.vault import database

    _seed(unlocked)
    store = FakeStore()
    unlocked._secret_store = store
    unlocked.add_keychain()
    items_before = dict(store.items)
    json_before = (profile / "vault.json").read_bytes()
    real_export = database.export_with_new_key

    def export_then_fail(source: Path, old: bytes, target: Path, new: bytes) -> None:
        if source.name == "private.db":
            target.write_bytes(b"half a database")
            raise DatabaseDamagedError("disk full")
        real_export(source, old, target, new)

    monkeypatch.setattr(database, "export_with_new_key", export_then_fail)
    with pytest.raises(DatabaseDamagedError, match="disk full"):
        unlocked.rotate_keys(passphrase=NEW)
    assert (profile / "vault.json").read_bytes() == json_before
    assert not any(path.name.endswith(".rekey") for path in profile.iterdir())
    assert store.items == items_before  # the new keychain item was deleted again
    assert all(_rows(unlocked, tier) == 50 for tier in TIERS)  # still unlocked, old keys
    unlocked.lock()
    unlocked.unlock_with_passphrase(PASSPHRASE)
    unlocked.verify_databases()


def test_crash_after_the_commit_is_finished_by_the_next_unlock(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _seed(unlocked)
    old_json = (profile / "vault.json").read_bytes()
    real_swap = Vault._swap_in

    class Killed(BaseException):
        """The process dying between the two renames."""

    def swap_one_then_die(self: Vault, path: Path, temp: Path, what: str) -> None:
        if path.name == "private.db":
            raise Killed
        real_swap(self, path, temp, what)

    monkeypatch.setattr(Vault, "_swap_in", swap_one_then_die)
    with pytest.raises(Killed):
        unlocked.rotate_keys(passphrase=NEW)
    monkeypatch.undo()
    unlocked.close()
    crashed = _slot_file(profile)
    assert set(crashed.previous_keys) == set(TIERS)
    assert (profile / "private.db.rekey").exists()
    assert Vault.status(profile).rekey_pending

    with Vault.open(profile) as vault:
        with pytest.raises(WrongSecretError):  # committed: only the new secrets open it
            vault.unlock_with_passphrase(PASSPHRASE)
        vault.unlock_with_passphrase(NEW)
        assert all(_rows(vault, tier) == 50 for tier in TIERS)
        vault.verify_databases()
    assert _slot_file(profile).is_settled
    assert not any(path.name.endswith(".rekey") for path in profile.iterdir())
    _old_copy_opens_nothing(profile, old_json, tmp_path, passphrase=PASSPHRASE)


def test_a_missing_copy_is_made_again_from_the_original(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(unlocked)

    class Killed(BaseException):
        pass

    def die(self: Vault, path: Path, temp: Path, what: str) -> None:
        raise Killed

    monkeypatch.setattr(Vault, "_swap_in", die)
    with pytest.raises(Killed):
        unlocked.rotate_keys(passphrase=NEW)
    monkeypatch.undo()
    unlocked.close()
    (profile / "standard.db.rekey").unlink()  # lost, or half-written by a crashed finish
    (profile / "private.db.rekey").write_bytes(b"half")
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(NEW)
        assert all(_rows(vault, tier) == 50 for tier in TIERS)
        vault.verify_databases()


def test_a_swap_that_fails_after_the_commit_still_returns_the_code(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(unlocked)

    def refuse(self: Vault, path: Path, temp: Path, what: str) -> None:
        raise DatabaseDamagedError(f"{path.name} still has an unmerged write-ahead log")

    monkeypatch.setattr(Vault, "_swap_in", refuse)
    rotation = unlocked.rotate_keys(passphrase=NEW)
    monkeypatch.undo()
    assert rotation.recovery_code is not None
    assert rotation.unfinished is not None and "unlock again" in rotation.unfinished
    assert unlocked.is_locked
    unlocked.unlock_with_recovery_code(rotation.recovery_code)
    assert all(_rows(unlocked, tier) == 50 for tier in TIERS)
    assert _slot_file(profile).is_settled


def test_stray_copies_from_a_crash_before_the_commit_are_removed(
    unlocked: Vault, profile: Path
) -> None:
    unlocked.close()
    before = snapshot(profile)
    (profile / "standard.db.rekey").write_bytes(b"under a key nobody wrote down")
    (profile / "standard.db.rekey-journal").write_bytes(b"x")
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(PASSPHRASE)
    assert not (profile / "standard.db.rekey").exists()
    assert not (profile / "standard.db.rekey-journal").exists()
    assert snapshot(profile).keys() == before.keys()


def test_verify_passphrase(unlocked: Vault) -> None:
    unlocked.verify_passphrase(PASSPHRASE)
    with pytest.raises(WrongSecretError):
        unlocked.verify_passphrase("not it")


def test_recovery_code_type(unlocked: Vault) -> None:
    rotation = unlocked.rotate_keys(passphrase=PASSPHRASE, recovery_code=True)
    assert isinstance(rotation.recovery_code, RecoveryCode)
    assert "output" not in repr(rotation)


def test_rotation_refusals(unlocked: Vault) -> None:
    from app.vault import SlotNotFoundError, TouchedKey

    with pytest.raises(WrongSecretError, match="empty"):
        unlocked.rotate_keys(passphrase="")
    recovery = next(slot for slot in unlocked.slots() if slot.kind == "recovery")
    fake = TouchedKey(recovery.id, bytes(32), bytes(32), user_verified=False)
    with pytest.raises(SlotNotFoundError, match="security-key"):
        unlocked.rotate_keys(passphrase=PASSPHRASE, touched=[fake])
    assert unlocked.slots()[1].id == recovery.id  # nothing changed


def test_a_new_passphrase_slot_when_there_was_none(unlocked: Vault) -> None:
    passphrase_slot = unlocked.slots()[0]
    unlocked.remove_slot(passphrase_slot.id)
    rotation = unlocked.rotate_keys(passphrase=NEW, kdf=FLOOR_PARAMS)
    assert [slot.kind for slot in rotation.slots] == ["passphrase", "recovery"]
    unlocked.lock()
    unlocked.unlock_with_passphrase(NEW)


def test_a_database_neither_key_opens_is_reported_not_overwritten(
    unlocked: Vault, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Killed(BaseException):
        pass

    def die(self: Vault, path: Path, temp: Path, what: str) -> None:
        raise Killed

    monkeypatch.setattr(Vault, "_swap_in", die)
    with pytest.raises(Killed):
        unlocked.rotate_keys(passphrase=NEW)
    monkeypatch.undo()
    unlocked.close()
    (profile / "private.db").write_bytes(b"\0" * 8192)  # neither key opens this
    before = snapshot(profile)
    with Vault.open(profile) as vault:
        with pytest.raises(DatabaseDamagedError, match="Neither the new nor the previous"):
            vault.unlock_with_passphrase(NEW)
        assert vault.is_locked
    assert snapshot(profile)["private.db"] == before["private.db"]

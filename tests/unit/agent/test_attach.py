"""``Vault.agent_keys`` and ``Vault.attach``: an agent's keys open the databases, nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.agent.keys import AgentKeys
from app.tiers import STORED_TIERS, Tier
from app.vault import FLOOR_PARAMS, Vault, VaultLockedError, VaultNotFoundError
from app.vault.profile import ProfileLock
from tests.peers.vault_fixtures import TemplateVault, snapshot


def assert_locked(vault: Vault) -> None:
    assert vault.is_locked


@pytest.fixture
def keys(unlocked: Vault) -> Iterator[AgentKeys]:
    handed = unlocked.agent_keys()
    yield handed
    handed.wipe()


def test_agent_keys_are_copies_with_generations(unlocked: Vault) -> None:
    keys = unlocked.agent_keys()
    assert keys.vault_id == unlocked.vault_id
    assert set(keys.database_keys) == set(STORED_TIERS)
    assert keys.generations == {Tier.STANDARD: 1, Tier.PRIVATE: 1}
    assert all(len(key) == 32 for key in keys.database_keys.values())
    keys.wipe()
    assert keys.is_wiped
    unlocked.connect(Tier.STANDARD).execute("SELECT count(*) FROM sqlite_master").fetchone()


def test_repr_never_shows_keys(keys: AgentKeys) -> None:
    text = repr(keys)
    for key in keys.database_keys.values():
        assert key.hex() not in text
        assert repr(bytes(key)) not in text


def test_attach_connects_without_the_profile_lock(
    profile: Path, unlocked: Vault, keys: AgentKeys
) -> None:
    unlocked.connect(Tier.STANDARD).execute("CREATE TABLE t(x)").connection.commit()
    unlocked.close()  # the agent serves while nobody holds the profile
    before = snapshot(profile)
    attached = Vault.attach(profile, keys)
    try:
        assert not attached.is_locked
        assert not attached.has_vault_key
        with ProfileLock(profile):  # another process (the window) can still open the profile
            pass
        connection = attached.connect(Tier.STANDARD)
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert "t" in names
        attached.connect(Tier.PRIVATE).execute("SELECT 1")
        attached.verify_databases()
    finally:
        attached.close()
    assert_locked(attached)
    assert snapshot(profile)["vault.json"] == before["vault.json"]


def test_attach_with_a_held_profile_lock(profile: Path, unlocked: Vault, keys: AgentKeys) -> None:
    attached = Vault.attach(profile, keys)  # the window holds the lock and serves the agent
    attached.connect(Tier.PRIVATE).execute("SELECT 1")
    attached.close()
    unlocked.connect(Tier.PRIVATE).execute("SELECT 1")  # the window's vault is untouched


def test_attached_vault_refuses_slot_operations(profile: Path, keys: AgentKeys) -> None:
    attached = Vault.attach(profile, keys)
    try:
        for operation in (
            lambda: attached.change_passphrase("another passphrase", kdf=FLOOR_PARAMS),
            attached.regenerate_recovery_code,
            attached.rekey,
            lambda: attached.remove_slot("nope"),
        ):
            with pytest.raises(VaultLockedError, match="needs your passphrase"):
                operation()
    finally:
        attached.close()


def test_attach_after_lock_is_locked(profile: Path, keys: AgentKeys) -> None:
    attached = Vault.attach(profile, keys)
    attached.lock()
    with pytest.raises(VaultLockedError, match="locked; unlock it first"):
        attached.connect(Tier.STANDARD)
    with pytest.raises(VaultLockedError, match="locked"):
        attached.agent_keys()


def test_attach_refuses_another_vault(
    tmp_path: Path, template_vault: TemplateVault, keys: AgentKeys
) -> None:
    other, _code = Vault.create(tmp_path / "other", "another passphrase", kdf=FLOOR_PARAMS)
    other.close()
    with pytest.raises(VaultLockedError, match="another vault"):
        Vault.attach(tmp_path / "other", keys)


def test_attach_refuses_stale_generation(profile: Path, unlocked: Vault, keys: AgentKeys) -> None:
    unlocked.rekey()
    with pytest.raises(VaultLockedError, match="rekeyed"):
        Vault.attach(profile, keys)
    fresh = unlocked.agent_keys()
    assert fresh.generations == {Tier.STANDARD: 2, Tier.PRIVATE: 2}
    Vault.attach(profile, fresh).close()


def test_attach_without_a_vault(tmp_path: Path, keys: AgentKeys) -> None:
    with pytest.raises(VaultNotFoundError):
        Vault.attach(tmp_path / "empty", keys)


def test_agent_keys_validate() -> None:
    good = {tier: bytearray(32) for tier in STORED_TIERS}
    generations = dict.fromkeys(STORED_TIERS, 1)
    with pytest.raises(ValueError, match="16 bytes"):
        AgentKeys(b"short", good, generations)
    with pytest.raises(ValueError, match="32 bytes"):
        AgentKeys(bytes(16), {**good, Tier.PRIVATE: bytearray(31)}, generations)
    with pytest.raises(ValueError, match="stored tiers"):
        AgentKeys(bytes(16), {Tier.STANDARD: bytearray(32)}, generations)
    with pytest.raises(ValueError, match="generation"):
        AgentKeys(bytes(16), good, {**generations, Tier.PRIVATE: 0})
    copy = AgentKeys(bytes(16), good, generations).copy()
    copy.wipe()
    assert copy.database_keys[Tier.STANDARD] is not good[Tier.STANDARD]

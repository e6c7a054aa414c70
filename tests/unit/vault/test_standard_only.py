"""Keychain and Touch ID slots open the Standard tier only; format-1 slots (which wrapped
the vault key) are re-created Standard-only; Windows keeps keychain items on the machine."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.tiers import Tier
from app.vault import DamagedSlotFileError, Vault, VaultLockedError, WrongSecretError
from app.vault.database import key_opens
from app.vault.keychain import KEYCHAIN_SERVICE, KeyringStore
from app.vault.slots import SlotFile, canonical_json, open_slot, open_tier_slot
from tests.peers.vault_fixtures import PASSPHRASE, snapshot
from tests.unit.vault.fake_store import FakeStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vault"


def _slot_file(profile: Path) -> SlotFile:
    return SlotFile.from_bytes((profile / "vault.json").read_bytes())


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def with_keychain(unlocked: Vault, store: FakeStore) -> Vault:
    unlocked._secret_store = store
    unlocked.add_keychain()
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        connection = unlocked.connect(tier)
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.execute("INSERT INTO notes VALUES (?)", (f"{tier} secret",))
    unlocked.lock()
    return unlocked


def test_the_keychain_secret_alone_opens_only_standard(
    with_keychain: Vault, store: FakeStore, profile: Path
) -> None:
    (secret,) = store.items.values()
    slot_file = _slot_file(profile)
    (slot,) = slot_file.slots_of("keychain")
    assert slot.params["tier"] == "standard"
    # What an attacker holding the keychain secret and vault.json can unwrap: the
    # Standard database key, and nothing else (no vault key, so no Private key).
    standard_key = open_tier_slot(slot, secret, slot_file.vault_id, slot_file.databases["standard"])
    assert key_opens(profile / "standard.db", standard_key)
    assert not key_opens(profile / "private.db", standard_key)
    with pytest.raises(WrongSecretError):
        open_slot(slot, secret, slot_file.vault_id)  # it is not a wrap of the vault key
    stale = replace(slot_file.databases["standard"], generation=2)
    with pytest.raises(WrongSecretError):  # bound to the record of the key it wraps
        open_tier_slot(slot, secret, slot_file.vault_id, stale)


def test_a_keychain_unlock_opens_standard_and_keeps_private_closed(
    with_keychain: Vault, profile: Path
) -> None:
    vault = with_keychain
    before = snapshot(profile)
    vault.unlock_with_keychain()
    assert vault.open_tiers == (Tier.STANDARD,)
    assert vault.unlocked_with == "keychain"
    assert not vault.has_vault_key
    assert vault.connect(Tier.STANDARD).execute("SELECT body FROM notes").fetchall() == [
        ("standard secret",)
    ]
    with pytest.raises(VaultLockedError, match="Private chats are locked"):
        vault.connect(Tier.PRIVATE)
    with pytest.raises(VaultLockedError, match="both Standard and Private"):
        vault.agent_keys()
    assert vault.verify_databases() == (Tier.STANDARD,)
    for operation in (
        lambda: vault.change_passphrase("another one"),
        vault.regenerate_recovery_code,
        vault.rekey,
        lambda: vault.rotate_keys(passphrase=PASSPHRASE),
        lambda: vault.remove_slot(vault.slots()[0].id),
    ):
        with pytest.raises(VaultLockedError, match="passphrase, a security key or the recovery"):
            operation()
    # The passphrase then opens Private too.
    vault.unlock_with_passphrase(PASSPHRASE)
    assert vault.open_tiers == (Tier.STANDARD, Tier.PRIVATE)
    assert vault.connect(Tier.PRIVATE).execute("SELECT count(*) FROM notes").fetchone() == (1,)
    assert snapshot(profile)["vault.json"] == before["vault.json"]


def test_passphrase_recovery_code_open_everything(
    with_keychain: Vault, template_vault: Any
) -> None:
    with_keychain.unlock_with_recovery_code(template_vault.recovery_code)
    assert with_keychain.open_tiers == (Tier.STANDARD, Tier.PRIVATE)
    with_keychain.lock()
    with_keychain.unlock_with_passphrase(PASSPHRASE)
    assert with_keychain.open_tiers == (Tier.STANDARD, Tier.PRIVATE)
    assert with_keychain.unlocked_with == "passphrase"


def _rewrite(profile: Path, edit: Any) -> None:
    path = profile / "vault.json"
    document = json.loads(path.read_bytes())
    edit(document)
    document.pop("checksum")
    document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
    path.write_text(json.dumps(document, indent=2))


def test_the_file_mac_is_checked_at_the_next_full_unlock(
    with_keychain: Vault, profile: Path
) -> None:
    # An edit outside what a Standard-only unlock uses: it cannot see it (no vault key)
    # and needs nothing from it; the next full unlock refuses the file.
    with_keychain.close()
    _rewrite(profile, lambda d: d.update(created="2000-01-01T00:00:00+00:00"))
    with Vault.open(profile, secret_store=with_keychain._secret_store) as vault:
        vault.unlock_with_keychain()
        assert vault.open_tiers == (Tier.STANDARD,)
        vault.lock()
        with pytest.raises(DamagedSlotFileError, match="modified outside Hushchat"):
            vault.unlock_with_passphrase(PASSPHRASE)


@pytest.mark.parametrize(
    ("edit", "opens"),
    [
        (lambda slot, d: None, True),  # the checksum rewritten, nothing else: still opens
        (lambda slot, d: d["databases"]["standard"].update(generation=7), False),
        (lambda slot, d: slot.update(label="Someone else's keychain"), False),
        (lambda slot, d: slot["params"].update(tier="private"), None),  # refused as damage
    ],
)
def test_what_a_standard_only_unlock_uses_is_bound_by_its_wrap(
    with_keychain: Vault, profile: Path, edit: Any, opens: bool | None
) -> None:
    with_keychain.close()

    def apply(document: dict[str, Any]) -> None:
        slot = next(s for s in document["slots"] if s["type"] == "keychain")
        edit(slot, document)

    _rewrite(profile, apply)
    if opens is None:
        with pytest.raises(DamagedSlotFileError, match="tier"):
            Vault.open(profile)
        return
    with Vault.open(profile, secret_store=with_keychain._secret_store) as vault:
        if opens:
            vault.unlock_with_keychain()
        else:
            with pytest.raises(WrongSecretError, match="keychain entry does not open"):
                vault.unlock_with_keychain()


def test_an_unfinished_rekey_needs_a_full_unlock(with_keychain: Vault, profile: Path) -> None:
    with_keychain.unlock_with_passphrase(PASSPHRASE)
    assert with_keychain._vault_key is not None
    slot_file = _slot_file(profile)
    record = slot_file.databases["standard"]
    pending = {"standard": record.to_json()}
    with_keychain.close()
    _rewrite(profile, lambda d: d.update(pending_rekey=pending))
    with (
        Vault.open(profile, secret_store=with_keychain._secret_store) as vault,
        pytest.raises(VaultLockedError, match="interrupted"),
    ):
        vault.unlock_with_keychain()


def test_rekey_recreates_the_standard_only_slot(
    with_keychain: Vault, store: FakeStore, profile: Path
) -> None:
    with_keychain.unlock_with_passphrase(PASSPHRASE)
    (old_item,) = store.items
    with_keychain.rekey()
    (new_item,) = store.items
    assert new_item != old_item
    with_keychain.lock()
    with_keychain.unlock_with_keychain()
    assert with_keychain.connect(Tier.STANDARD).execute("SELECT count(*) FROM notes").fetchone()
    store.unavailable = True
    with_keychain.unlock_with_passphrase(PASSPHRASE)
    with_keychain.rekey((Tier.STANDARD,))  # the store is gone: the slot cannot follow
    assert [slot.kind for slot in with_keychain.slots()] == ["passphrase", "recovery"]


# ----------------------------------------------------------------- format 1 migration


@pytest.fixture
def old_profile(tmp_path: Path) -> tuple[Path, FakeStore, dict[str, Any]]:
    """A profile written before Standard-only slots: format 1, a keychain slot wrapping
    the vault key (tests/fixtures/vault/v1-keychain, made by the release before)."""
    profile = tmp_path / "old"
    shutil.copytree(FIXTURES / "v1-keychain", profile)
    secrets_of = json.loads((FIXTURES / "v1-keychain.secrets.json").read_text())
    store = FakeStore()
    item = secrets_of["keychain"]
    store.items[(item["service"], item["account"])] = base64.b64decode(item["secret"])
    return profile, store, secrets_of


def test_the_old_fixture_is_format_1_with_a_vault_key_slot(
    old_profile: tuple[Path, FakeStore, dict[str, Any]],
) -> None:
    profile, store, _ = old_profile
    data = (profile / "vault.json").read_bytes()
    slot_file = SlotFile.from_bytes(data)
    assert slot_file.version == 1
    assert slot_file.to_bytes() == data  # read and written back as it is
    (slot,) = slot_file.slots_of("keychain")
    assert slot.is_legacy_store_slot
    (secret,) = store.items.values()
    open_slot(slot, secret, slot_file.vault_id)  # it does wrap the vault key


def test_a_full_unlock_migrates_old_keychain_slots(
    old_profile: tuple[Path, FakeStore, dict[str, Any]],
) -> None:
    profile, store, secrets_of = old_profile
    (old_item,) = store.items
    with Vault.open(profile, secret_store=store) as vault:
        vault.unlock_with_passphrase(secrets_of["passphrase"])
        assert vault.connect(Tier.PRIVATE).execute("SELECT count(*) FROM notes").fetchone() == (3,)
    slot_file = _slot_file(profile)
    assert slot_file.version == 2
    (slot,) = slot_file.slots_of("keychain")
    assert slot.tier == "standard"
    assert old_item not in store.items and len(store.items) == 1
    with Vault.open(profile, secret_store=store) as vault:
        vault.unlock_with_keychain()
        assert vault.open_tiers == (Tier.STANDARD,)
        assert vault.connect(Tier.STANDARD).execute("SELECT count(*) FROM notes").fetchone() == (3,)


def test_an_old_keychain_slot_opens_standard_only_and_is_migrated_when_used(
    old_profile: tuple[Path, FakeStore, dict[str, Any]],
) -> None:
    profile, store, _ = old_profile
    with Vault.open(profile, secret_store=store) as vault:
        vault.unlock_with_keychain()
        assert vault.open_tiers == (Tier.STANDARD,)
        assert not vault.has_vault_key
        with pytest.raises(VaultLockedError):
            vault.connect(Tier.PRIVATE)
    (slot,) = _slot_file(profile).slots_of("keychain")
    assert slot.tier == "standard"


def test_without_the_keychain_the_old_slot_waits_for_the_next_full_unlock(
    old_profile: tuple[Path, FakeStore, dict[str, Any]],
) -> None:
    profile, store, secrets_of = old_profile
    store.unavailable = True
    with Vault.open(profile, secret_store=store) as vault:
        vault.unlock_with_passphrase(secrets_of["passphrase"])
        assert vault.open_tiers == (Tier.STANDARD, Tier.PRIVATE)
    assert _slot_file(profile).slots_of("keychain")[0].is_legacy_store_slot
    store.unavailable = False
    with Vault.open(profile, secret_store=store) as vault:
        vault.unlock_with_recovery_code(secrets_of["recovery_code"])
    assert not _slot_file(profile).slots_of("keychain")[0].is_legacy_store_slot


# ----------------------------------------------------------------- Windows keyring


def _fake_windows_backend() -> Any:
    from keyring.backends.Windows import WinVaultKeyring

    class FakeWinVault(WinVaultKeyring):
        """WinVaultKeyring's persistence handling without Windows underneath."""

        persist: Any = "enterprise"  # keyring's default, CRED_PERSIST_ENTERPRISE
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            self.written: list[tuple[str, str, Any]] = []

        def set_password(self, service: str, username: str, password: str) -> None:
            self.written.append((service, username, self.persist))

        def get_password(self, service: str, username: str) -> str | None:
            return None

        def delete_password(self, service: str, username: str) -> None:
            return None

    return FakeWinVault()


def test_windows_keychain_items_stay_on_this_machine() -> None:
    import keyring

    backend = _fake_windows_backend()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        KeyringStore().store(KEYCHAIN_SERVICE, "account", b"secret")
    finally:
        keyring.set_keyring(previous)
    assert backend.written == [(KEYCHAIN_SERVICE, "account", "local machine")]


def test_windows_backend_inside_a_chainer_is_found_too() -> None:
    from app.vault.keychain import _prefer_local_persistence

    backend = _fake_windows_backend()

    class Chainer:
        backends = (object(), backend)

    _prefer_local_persistence(Chainer())
    assert backend.persist == "local machine"
    _prefer_local_persistence(object())  # any other backend: untouched, no error


def test_an_interrupted_rekey_is_finished_with_a_new_keychain_slot(
    with_keychain: Vault, store: FakeStore, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_keychain.unlock_with_passphrase(PASSPHRASE)
    (old_item,) = store.items

    class Killed(BaseException):
        pass

    real_promote = Vault._promote_pending

    def die(self: Vault, tier: Tier, new_key: bytes) -> None:
        raise Killed

    monkeypatch.setattr(Vault, "_promote_pending", die)
    with pytest.raises(Killed):  # renamed in, but not yet recorded as current
        with_keychain.rekey((Tier.STANDARD,))
    monkeypatch.setattr(Vault, "_promote_pending", real_promote)
    with_keychain.close()
    assert _slot_file(profile).pending_rekey
    with Vault.open(profile, secret_store=store) as vault:
        with pytest.raises(VaultLockedError, match="interrupted"):
            vault.unlock_with_keychain()
        vault.unlock_with_passphrase(PASSPHRASE)  # finishes the rekey, re-creates the slot
        assert _slot_file(profile).is_settled
        assert old_item not in store.items and len(store.items) == 1
        vault.lock()
        vault.unlock_with_keychain()
        assert vault.connect(Tier.STANDARD).execute("SELECT count(*) FROM notes").fetchone()
        vault.unlock_with_keychain()  # again, already unlocked: nothing changes
        assert vault.open_tiers == (Tier.STANDARD,)

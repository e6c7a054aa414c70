"""The "remember on this device" slot against a real Secret Service (gnome-keyring)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import SecretService

from app.vault import KeyringStore, NoSecretAvailableError, Vault
from app.vault.keychain import KEYCHAIN_SERVICE
from tests.peers.keychain import secret_service
from tests.peers.vault_fixtures import snapshot

pytestmark = pytest.mark.keychain


@pytest.fixture
def session_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with secret_service(tmp_path / "secret-service") as env:
        for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "HOME"):
            monkeypatch.setenv(name, env[name])
        previous = keyring.get_keyring()
        keyring.set_keyring(SecretService.Keyring())
        try:
            yield env
        finally:
            keyring.set_keyring(previous)


def _secret_tool_lookup(env: dict[str, str], account: str) -> str:
    result = subprocess.run(
        ["secret-tool", "lookup", "service", KEYCHAIN_SERVICE, "username", account],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout


def test_remember_unlock_forget(session_env: dict[str, str], unlocked: Vault) -> None:
    info = unlocked.add_keychain()
    account = info.detail.split(" / ")[1]
    assert _secret_tool_lookup(session_env, account)  # really in the Secret Service
    unlocked.lock()
    unlocked.unlock_with_keychain()
    assert not unlocked.is_locked
    assert unlocked.open_tiers == ("standard",)  # the keychain opens Standard only
    unlocked.unlock_with_passphrase("correct horse battery staple")
    unlocked.remove_slot(info.id)
    assert _secret_tool_lookup(session_env, account) == ""


def test_entry_deleted_behind_our_back(
    session_env: dict[str, str], unlocked: Vault, profile: Path
) -> None:
    info = unlocked.add_keychain()
    account = info.detail.split(" / ")[1]
    subprocess.run(
        ["secret-tool", "clear", "service", KEYCHAIN_SERVICE, "username", account],
        env=session_env,
        check=True,
    )
    unlocked.lock()
    before = snapshot(profile)
    with pytest.raises(NoSecretAvailableError, match="no entry"):
        unlocked.unlock_with_keychain()
    assert snapshot(profile) == before


def test_store_round_trip(session_env: dict[str, str]) -> None:
    store = KeyringStore()
    store.store("Hushchat test", "acct", b"\x00\xffsecret")
    assert store.load("Hushchat test", "acct") == b"\x00\xffsecret"
    store.delete("Hushchat test", "acct")
    store.delete("Hushchat test", "acct")  # already gone: fine
    with pytest.raises(NoSecretAvailableError):
        store.load("Hushchat test", "acct")

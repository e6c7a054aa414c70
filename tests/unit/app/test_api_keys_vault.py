"""API keys kept in the vault (the Standard database) when no OS keychain answers: saved,
read back across a lock, never in plain text on disk, moved to and from the keychain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from app.api_keys import ApiKeys, keychain_account
from app.config import LLMEntry, LoadedConfig, parse_config
from app.errors import ConfigError
from app.provider_setup import remove_provider, save_provider
from app.tiers import Tier
from app.vault import Vault
from app.vault.keychain import KEYCHAIN_SERVICE, KeyringStore
from tests.peers.keychain import MemoryKeyring, replaced_keyring
from tests.peers.vault_fixtures import PASSPHRASE
from tests.unit.app.test_api_keys import FakeStore

KEY = "sk-vault-kept-NEVER-PLAIN-0123456789"


@pytest.fixture
def no_keychain() -> Iterator[None]:
    """keyring's own "no backend" keyring: every call raises NoKeyringError."""
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def _entry(api_key: str | None, name: str = "cloud") -> LLMEntry:
    return LLMEntry.model_validate(
        {
            "provider_name": name,
            "type": "openai",
            "base_url": "https://api.example.com/v1",
            "model_name": "big",
            "locality": "paid_cloud",
            "api_key": api_key,
        }
    )


def _keys(vault: Vault, store: object | None = None) -> ApiKeys:
    return ApiKeys(store or KeyringStore(), vault_connect=lambda: vault.connection(Tier.STANDARD))  # type: ignore[arg-type]


def _plain_anywhere(profile: Path, secret: str) -> list[str]:
    return [p.name for p in profile.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_without_a_keychain_the_key_is_kept_in_the_vault(
    unlocked: Vault, profile: Path, no_keychain: None
) -> None:
    keys = _keys(unlocked)
    assert keys.save("cloud", KEY) == "vault"
    keys.forget()
    assert keys.resolve_now(_entry("vault")) == KEY
    assert _plain_anywhere(profile, KEY) == []  # encrypted, WAL included

    # Still there after a lock and a new unlock (another process, say).
    unlocked.close()
    again = Vault.open(profile)
    try:
        again.unlock_with_passphrase(PASSPHRASE)
        assert _keys(again).resolve_now(_entry("vault")) == KEY
    finally:
        again.close()


def test_choosing_the_keychain_without_one_is_one_clear_sentence(
    unlocked: Vault, no_keychain: None
) -> None:
    with pytest.raises(ConfigError) as caught:
        _keys(unlocked).save("cloud", KEY, "keychain")
    text = str(caught.value)
    assert text.count(". ") == 0 and text.endswith(".")
    assert "vault" in text
    for internal in ("Keyring", "keyring", "NoKeyringError", "Error", "backend"):
        assert internal not in text


def test_a_key_in_the_vault_needs_the_vault_open(unlocked: Vault, no_keychain: None) -> None:
    keys = _keys(unlocked)
    keys.save("cloud", KEY, "vault")
    keys.forget()
    unlocked.lock()
    with pytest.raises(ConfigError, match=r"cloud: its API key is kept in the vault; .*unlock"):
        keys.resolve_now(_entry("vault"))
    with pytest.raises(ConfigError, match="this command does not open"):
        ApiKeys(KeyringStore()).resolve_now(_entry("vault"))


def test_keys_move_between_the_keychain_and_the_vault(unlocked: Vault) -> None:
    with replaced_keyring() as backend:
        keys = _keys(unlocked)
        assert keys.save("cloud", KEY) == "keychain"  # a keychain answers: it stays the default
        assert (KEYCHAIN_SERVICE, keychain_account("cloud")) in backend.passwords
        keys.move("cloud", "keychain", "cloud", "vault")
        assert backend.passwords == {}
        keys.forget()
        assert keys.resolve_now(_entry("vault")) == KEY
        keys.move("cloud", "vault", "cloud", "keychain")
        keys.forget()
        assert keys.resolve_now(_entry("keychain")) == KEY
        keys.forget()
        with pytest.raises(ConfigError, match="no API key for it in the vault"):
            keys.resolve_now(_entry("vault"))
        keys.delete("cloud")
        assert backend.passwords == {}


def test_saving_a_provider_without_a_keychain_writes_api_key_vault(
    unlocked: Vault, tmp_path: Path, no_keychain: None
) -> None:
    path = tmp_path / "config.yml"
    keys = _keys(unlocked)
    form = {"provider_name": "cloud", "type": "openai", "base_url": "https://a.example/v1",
            "model_name": "m", "locality": "paid_cloud"}  # fmt: skip
    empty = LoadedConfig(parse_config("", str(path), {}), path, {})
    saved = save_provider(empty, form, keys=keys, api_key=KEY)
    text = path.read_text(encoding="utf-8")
    assert KEY not in text and "api_key: vault" in text
    keys.forget()
    entry = saved.config.llm("cloud")
    assert entry.to_spec(keys.resolve_now(entry)).api_key.get_secret_value() == KEY  # type: ignore[union-attr]

    # A rename takes the key along; the old name keeps nothing.
    renamed = save_provider(saved, {**form, "provider_name": "work"}, keys=keys, replaces="cloud")
    keys.forget()
    assert keys.resolve_now(renamed.config.llm("work")) == KEY
    with pytest.raises(ConfigError, match="no API key"):
        keys.resolve_now(_entry("vault"))
    remove_provider(renamed, "work", keys=keys)
    with pytest.raises(ConfigError, match="no API key"):
        keys.resolve_now(_entry("vault", "work"))


def test_changing_where_the_key_is_kept_moves_it(unlocked: Vault, tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    store = FakeStore()
    keys = _keys(unlocked, store)
    form = {"provider_name": "cloud", "type": "openai", "base_url": "https://a.example/v1",
            "model_name": "m", "locality": "paid_cloud"}  # fmt: skip
    empty = LoadedConfig(parse_config("", str(path), {}), path, {})
    saved = save_provider(empty, form, keys=keys, api_key=KEY, key_place="keychain")
    assert saved.config.llm("cloud").api_key == "keychain"
    moved = save_provider(saved, form, keys=keys, key_place="vault", replaces="cloud")
    assert moved.config.llm("cloud").api_key == "vault"
    assert store.secrets == {}
    keys.forget()
    assert keys.resolve_now(moved.config.llm("cloud")) == KEY


def test_a_memory_keyring_is_what_the_tests_replace(unlocked: Vault) -> None:
    """The keychain path still goes through keyring (existing keychain keys keep working)."""
    with replaced_keyring() as backend:
        assert isinstance(backend, MemoryKeyring)
        backend.passwords[(KEYCHAIN_SERVICE, keychain_account("cloud"))] = "c2stb2xk"  # sk-old
        assert _keys(unlocked).resolve_now(_entry("keychain")) == "sk-old"

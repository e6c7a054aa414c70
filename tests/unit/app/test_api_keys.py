"""Provider API keys: environment or keychain, read off the loop's thread, cached until
lock, clear errors when there is no keychain or no key."""

from __future__ import annotations

import threading

import pytest

from app.api_keys import ApiKeys, keychain_account, provider_spec
from app.config import LLMEntry, LoadedConfig, parse_config
from app.errors import ConfigError
from app.executor import BlockingRunner
from app.vault.errors import NoSecretAvailableError, UnlockMethodUnavailableError
from app.vault.keychain import KEYCHAIN_SERVICE


class FakeStore:
    """A SecretStore in a dict that records the thread of each call."""

    def __init__(self, *, available: bool = True) -> None:
        self.secrets: dict[tuple[str, str], bytes] = {}
        self.available = available
        self.loads = 0
        self.threads: list[str] = []

    def _check(self) -> None:
        self.threads.append(threading.current_thread().name)
        if not self.available:
            raise UnlockMethodUnavailableError("no keychain here")

    def store(self, service: str, account: str, secret: bytes) -> None:
        self._check()
        self.secrets[(service, account)] = secret

    def load(self, service: str, account: str) -> bytes:
        self._check()
        self.loads += 1
        try:
            return self.secrets[(service, account)]
        except KeyError:
            raise NoSecretAvailableError("none") from None

    def delete(self, service: str, account: str) -> None:
        self._check()
        self.secrets.pop((service, account), None)


def _entry(api_key: str | None) -> LLMEntry:
    return LLMEntry.model_validate(
        {
            "provider_name": "cloud",
            "type": "openai",
            "base_url": "https://api.example.com/v1",
            "model_name": "big",
            "locality": "paid_cloud",
            "api_key": api_key,
        }
    )


async def test_keychain_key_is_read_on_a_worker_thread_once_until_forgotten() -> None:
    store = FakeStore()
    store.secrets[(KEYCHAIN_SERVICE, keychain_account("cloud"))] = b"sk-from-keychain-1"
    runner = BlockingRunner()
    keys = ApiKeys(store, runner)
    try:
        assert await keys.resolve(_entry("keychain")) == "sk-from-keychain-1"
        assert await keys.resolve(_entry("keychain")) == "sk-from-keychain-1"
        assert store.loads == 1  # cached: a turn does not ask the keychain again
        assert store.threads == ["hushchat-work_0"]  # never the event loop's thread
        keys.forget()
        assert await keys.resolve(_entry("keychain")) == "sk-from-keychain-1"
        assert store.loads == 2
    finally:
        runner.shutdown()


async def test_environment_keys_and_no_key_never_touch_the_keychain() -> None:
    store = FakeStore(available=False)
    keys = ApiKeys(store, BlockingRunner())
    assert await keys.resolve(_entry("sk-from-env-123")) == "sk-from-env-123"
    assert await keys.resolve(_entry(None)) is None
    assert store.threads == []


def test_missing_key_and_missing_keychain_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"cloud: no API key for it in the OS keychain"):
        ApiKeys(FakeStore()).resolve_now(_entry("keychain"))
    with pytest.raises(ConfigError, match=r"keychain is not available.*api_key: \$\{VAR\}"):
        ApiKeys(FakeStore(available=False)).resolve_now(_entry("keychain"))


def test_save_and_delete_use_one_service_and_the_provider_account() -> None:
    store = FakeStore()
    keys = ApiKeys(store)
    keys.save("cloud", "sk-saved-456")
    assert store.secrets == {(KEYCHAIN_SERVICE, "provider/cloud"): b"sk-saved-456"}
    assert keys.resolve_now(_entry("keychain")) == "sk-saved-456"
    keys.delete("cloud")
    assert store.secrets == {}
    with pytest.raises(ConfigError, match="no API key"):
        keys.resolve_now(_entry("keychain"))


def test_saving_without_a_keychain_says_what_to_do_instead() -> None:
    # Without a vault to fall back on (the command line), the environment is the way.
    with pytest.raises(ConfigError, match=r"no OS keychain.*environment variable"):
        ApiKeys(FakeStore(available=False)).save("cloud", "sk-x-123456")
    ApiKeys(FakeStore(available=False)).delete("cloud")  # gone is fine, no keychain too


def test_provider_spec_for_the_command_line() -> None:
    text = (
        "llms:\n  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',"
        " model_name: big, locality: paid_cloud, api_key: '${KEY}'}\n"
    )
    config = LoadedConfig(
        parse_config(text, "test", {"KEY": "sk-env-789"}, lambda: ["openai"]), None, {}
    )
    spec = provider_spec(config, "cloud")
    assert spec.api_key is not None and spec.api_key.get_secret_value() == "sk-env-789"


def test_a_key_saved_by_version_0_1_is_moved_to_todays_entry() -> None:
    from app.api_keys import LEGACY_KEYCHAIN_SERVICE
    from app.vault.keychain import KeyringStore
    from tests.peers.keychain import replaced_keyring

    with replaced_keyring() as backend:
        backend.set_password(LEGACY_KEYCHAIN_SERVICE, "cloud", "sk-from-0.1")
        keys = ApiKeys(KeyringStore())
        assert keys.resolve_now(_entry("keychain")) == "sk-from-0.1"
        assert (LEGACY_KEYCHAIN_SERVICE, "cloud") not in backend.passwords
        # Stored where this version looks, so the next session finds it directly.
        assert KeyringStore().load(KEYCHAIN_SERVICE, keychain_account("cloud")) == b"sk-from-0.1"
        keys.forget()
        assert ApiKeys(KeyringStore()).resolve_now(_entry("keychain")) == "sk-from-0.1"
        # Nothing anywhere: the error says what to do.
        backend.passwords.clear()
        with pytest.raises(ConfigError, match="enter the key again"):
            ApiKeys(KeyringStore()).resolve_now(_entry("keychain"))

"""Saving a provider from the window edits the config file without losing anything the
form does not show (proxy, timeouts, template) and keeps keys out of the file."""

from __future__ import annotations

from pathlib import Path

from app.api_keys import ApiKeys
from app.config import LoadedConfig, load_config, parse_config
from app.provider_setup import remove_provider, save_provider
from tests.unit.app.test_api_keys import FakeStore

CONFIG = """\
# my providers
llms:
  - provider_name: work
    type: openai
    base_url: https://llm.example.com/v1
    model_name: big
    locality: paid_cloud
    proxy: http://proxy.example.com:3128
    proxy_locality: paid_cloud
    stream_idle_timeout: 30
    api_key: ${WORK_KEY}
"""


def test_editing_keeps_fields_the_form_does_not_show(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = load_config(path, {"WORK_KEY": "sk-work-123456"})
    form = {
        "provider_name": "work",
        "type": "openai",
        "base_url": "https://llm.example.com/v1",
        "model_name": "bigger",
        "locality": "paid_cloud",
    }
    saved = save_provider(loaded, form, keys=ApiKeys(FakeStore()), replaces="work")
    entry = saved.config.llm("work")
    assert entry.model_name == "bigger"
    assert entry.proxy is not None and entry.stream_idle_timeout == 30
    text = path.read_text(encoding="utf-8")
    assert "${WORK_KEY}" in text and "sk-work-123456" not in text
    assert text.startswith("# my providers")


def test_a_typed_key_goes_to_the_keychain_never_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    store = FakeStore()
    keys = ApiKeys(store)
    form = {"provider_name": "cloud", "type": "openai", "base_url": "https://a.example/v1",
            "model_name": "m", "locality": "paid_cloud"}  # fmt: skip
    empty = LoadedConfig(parse_config("", str(path), {}), path, {})
    saved = save_provider(empty, form, keys=keys, api_key="sk-typed-987654")
    assert "sk-typed-987654" not in path.read_text(encoding="utf-8")
    assert saved.config.llm("cloud").api_key == "keychain"
    assert keys.resolve_now(saved.config.llm("cloud")) == "sk-typed-987654"
    remove_provider(saved, "cloud", keys=keys)
    assert store.secrets == {}

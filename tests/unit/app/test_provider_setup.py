"""Saving a provider from the window edits the config file without losing anything the
form does not show (proxy, timeouts, template) and keeps keys out of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api_keys import ApiKeys
from app.config import LoadedConfig, load_config, parse_config
from app.errors import ConfigError
from app.provider_setup import (
    add_system_voices,
    remove_provider,
    save_provider,
    save_voice_settings,
)
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


VOICES = """\
# my speech engines
tts:
  - type: openai  # Kokoro on this machine
    name: kokoro
    base_url: http://127.0.0.1:8880/v1
    voice: af_heart
    speed: 1.2
"""


def test_voice_settings_set_the_default_engine_its_voice_and_rate(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(VOICES, encoding="utf-8")
    saved = save_voice_settings(load_config(path, {}), "kokoro", "af_bella", 0.8)
    assert saved.config.default_tts == "kokoro"
    assert (saved.config.tts[0].voice, saved.config.tts[0].speed) == ("af_bella", 0.8)
    text = path.read_text(encoding="utf-8")
    assert "# my speech engines" in text and "# Kokoro on this machine" in text
    # The engine's default voice and the normal rate are written as nothing.
    saved = save_voice_settings(saved, "kokoro", "  ", 1.0)
    assert (saved.config.tts[0].voice, saved.config.tts[0].speed) == (None, 1.0)
    assert "voice:" not in path.read_text(encoding="utf-8")
    assert "speed:" not in path.read_text(encoding="utf-8")


def test_voice_settings_of_an_unknown_engine_or_rate_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(VOICES, encoding="utf-8")
    config = load_config(path, {})
    with pytest.raises(ConfigError, match="no speech engine named 'gone'"):
        save_voice_settings(config, "gone", None, 1.0)
    with pytest.raises(ConfigError, match="speed"):
        save_voice_settings(config, "kokoro", None, 9.0)
    assert path.read_text(encoding="utf-8") == VOICES


def test_system_voices_are_added_under_a_free_name(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    first = add_system_voices(load_config(path, {}))
    assert [(e.type, e.name) for e in first.config.tts] == [("system", "system-voice")]
    assert first.config.default_tts == "system-voice"
    second = add_system_voices(first)
    assert [e.name for e in second.config.tts] == ["system-voice", "system-voice-2"]
    assert second.config.default_tts == "system-voice"  # the default stays

"""The ``tts:`` list of .config.yml: speech engines, their locality (the llms entries'
rule), key references, and the errors a person can act on."""

from __future__ import annotations

import pytest

from app.config import Config, parse_config
from app.errors import ConfigError
from providers import Locality


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, "cfg.yml", env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    return str(caught.value).splitlines()


def test_engines_of_each_type_with_their_defaults() -> None:
    config = parse(
        """
default_tts: kokoro
tts:
  - type: openai
    name: kokoro
    base_url: http://127.0.0.1:8880/v1/
    voice: af_heart
  - type: xtts
    name: xtts
    base_url: http://192.168.1.20:8020
  - type: system
    name: voices
  - type: openai
    name: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    locality: paid_cloud
    format: opus
    speed: 1.5
""",
        {"OPENAI_API_KEY": "sk-test-1234"},
    )
    kokoro, xtts, system, cloud = config.tts
    assert kokoro.base_url == "http://127.0.0.1:8880/v1"
    assert (kokoro.audio_format, kokoro.speed, kokoro.timeout) == ("mp3", 1.0, 60.0)
    assert xtts.audio_format == "wav" and xtts.language == "en"
    assert kokoro.effective_locality is Locality.ON_PREM  # loopback
    assert xtts.effective_locality is Locality.ON_PREM  # private network
    assert system.effective_locality is Locality.ON_PREM  # the computer's own voices
    assert cloud.effective_locality is Locality.PAID_CLOUD
    assert cloud.api_key == "sk-test-1234" and cloud.audio_format == "opus"
    assert cloud.provider_name == "tts/openai"  # its kept key, apart from the llms entry's
    assert config.default_tts == "kokoro"


def test_a_remote_engine_must_say_where_it_runs_as_llms_entries_must() -> None:
    lines = problems(
        """tts:
  - type: openai
    name: cloud
    base_url: https://speech.example.com/v1
"""
    )
    assert lines == [
        "cfg.yml:4: tts[0].locality: required because https://speech.example.com/v1 is not a "
        "local address; set on_prem, free_cloud or paid_cloud"
    ]


def test_the_llms_locality_message_is_unchanged_by_the_shared_check() -> None:
    lines = problems(
        """llms:
  - provider_name: cloud
    type: openai
    base_url: https://api.example.com/v1
    model_name: m
"""
    )
    assert lines == [
        "cfg.yml:4: llms[0].locality: required because https://api.example.com/v1 is not a "
        "local address; set on_prem, free_cloud or paid_cloud"
    ]


def test_an_unknown_engine_type_lists_the_known_ones() -> None:
    assert problems("tts:\n  - type: espeak\n    name: e\n") == [
        "cfg.yml:2: tts[0].type: 'espeak' is not allowed; use one of 'system', 'openai' or 'xtts'"
    ]


def test_semantic_tts_problems() -> None:
    lines = problems(
        """default_tts: kokor
tts:
  - type: openai
    name: kokoro
  - type: xtts
    name: kokoro
    base_url: http://127.0.0.1:8020
    format: mp3
  - type: system
    name: voices
    base_url: http://127.0.0.1:1
"""
    )
    assert lines == [
        "cfg.yml:3: tts[0].base_url: required for an openai engine (its server's URL)",
        "cfg.yml:8: tts[1].format: XTTS API servers answer wav only; write format: wav",
        "cfg.yml:6: tts[1].name: 'kokoro' is used twice; names must be unique",
        "cfg.yml:11: tts[2].base_url: system voices have no server; remove base_url",
        "cfg.yml:1: default_tts: 'kokor' is not the name of any tts entry; did you mean 'kokoro'?",
    ]


def test_an_unknown_key_in_an_engine_suggests_the_right_one() -> None:
    lines = problems("tts:\n  - type: system\n    name: v\n    voise: x\n")
    assert len(lines) == 1
    assert "cfg.yml:4: tts[0].voise: unknown setting; did you mean 'voice'?" in lines[0]


def test_a_literal_key_is_refused_as_for_llms_entries() -> None:
    lines = problems(
        "tts:\n  - type: openai\n    name: o\n    base_url: http://127.0.0.1:1/v1\n"
        "    api_key: sk-live-abcdef123456\n"
    )
    assert "write a reference, not the key itself" in lines[0]
    assert "sk-live-abcdef123456" not in "\n".join(lines)


@pytest.mark.parametrize(("speed", "ok"), [(0.25, True), (4.0, True), (0.2, False), (5, False)])
def test_speed_range(speed: float, ok: bool) -> None:
    text = f"tts:\n  - type: system\n    name: v\n    speed: {speed}\n"
    if ok:
        assert parse(text).tts[0].speed == speed
    else:
        assert problems(text)[0].startswith("cfg.yml:4: tts[0].speed:")


async def test_an_engine_key_kept_in_the_keychain_is_its_own_not_the_llms_entrys() -> None:
    """A tts entry and an llms entry of the same name keep separate keys."""
    from app.api_keys import ApiKeys, keychain_account
    from app.vault.keychain import KEYCHAIN_SERVICE
    from tests.unit.app.test_api_keys import FakeStore

    store = FakeStore()
    keys = ApiKeys(store)
    keys.save("tts/openai", "sk-speech-key", "keychain")
    keys.save("openai", "sk-chat-key", "keychain")
    assert (KEYCHAIN_SERVICE, keychain_account("tts/openai")) in store.secrets
    entry = parse(
        "tts:\n  - {type: openai, name: openai, base_url: 'https://api.openai.com/v1', "
        "locality: paid_cloud, api_key: keychain}\n"
    ).tts[0]
    keys.forget()
    assert await keys.resolve(entry) == "sk-speech-key"

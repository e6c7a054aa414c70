"""The tiers' policy for speech engines: the models' rule, applied to ``tts:`` entries."""

from __future__ import annotations

import pytest

from app.config import Config, parse_config
from app.errors import ConfigError, ExitCode, PolicyRefusedError
from app.speech import default_engine, engine_decision, find_engine, open_engine, require_engine
from app.tiers import Tier

ENGINES = """
tts:
  - {type: openai, name: paid, base_url: "https://api.openai.com/v1", locality: paid_cloud}
  - {type: openai, name: free, base_url: "https://free.example/v1", locality: free_cloud}
  - {type: xtts, name: local-xtts, base_url: "http://127.0.0.1:8020"}
  - {type: system, name: voices}
"""


def config(text: str = ENGINES) -> Config:
    return parse_config(text, "cfg.yml", {})


@pytest.mark.parametrize(
    ("tier", "allowed"),
    [
        (Tier.STANDARD, {"paid", "free", "local-xtts", "voices"}),
        (Tier.EPHEMERAL, {"free", "local-xtts", "voices"}),
        (Tier.PRIVATE, {"local-xtts", "voices"}),
    ],
)
def test_each_tier_allows_what_it_allows_for_models(tier: Tier, allowed: set[str]) -> None:
    entries = config().tts
    assert {e.name for e in entries if engine_decision(tier, e).allowed} == allowed


def test_a_refusal_says_why_and_exits_5() -> None:
    paid = find_engine(config(), "paid")
    verdict = engine_decision(Tier.PRIVATE, paid)
    assert verdict.reason == (
        "Private chats only use on-prem models, so nothing leaves your network; paid is paid cloud"
    )
    with pytest.raises(PolicyRefusedError) as caught:
        require_engine(Tier.PRIVATE, paid)
    assert caught.value.exit_code == ExitCode.POLICY


def test_open_engine_refuses_before_building_anything() -> None:
    paid = find_engine(config(), "paid")
    with pytest.raises(PolicyRefusedError):
        open_engine(paid, tier=Tier.EPHEMERAL)


def test_the_default_engine_is_the_first_one_the_tier_allows() -> None:
    loaded = config(ENGINES + "default_tts: paid\n")
    assert default_engine(loaded, Tier.STANDARD).name == "paid"
    assert default_engine(loaded, Tier.EPHEMERAL).name == "free"
    assert default_engine(loaded, Tier.PRIVATE).name == "local-xtts"


def test_no_allowed_engine_is_a_refusal_naming_them() -> None:
    only_cloud = config(
        'tts:\n  - {type: openai, name: paid, base_url: "https://a.example/v1", '
        "locality: paid_cloud}\n"
    )
    with pytest.raises(PolicyRefusedError, match="paid is paid cloud"):
        default_engine(only_cloud, Tier.PRIVATE)


def test_no_engine_or_an_unknown_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no speech engines are configured"):
        default_engine(config(""), Tier.STANDARD)
    with pytest.raises(ConfigError, match="configured: paid, free, local-xtts, voices"):
        find_engine(config(), "kokoro")


def test_system_voices_are_not_an_http_engine() -> None:
    with pytest.raises(ConfigError, match="system voices play in the window only"):
        open_engine(find_engine(config(), "voices"), tier=Tier.PRIVATE)

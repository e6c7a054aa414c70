"""``hushchat speak``'s choices before any audio: the engine, system voices, empty
messages (a stand-in session: the subprocess path is tests/e2e/test_speak_cli.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.config import parse_config
from app.errors import ConfigError, PolicyRefusedError, UsageError
from app.speech.cli import speak
from app.tiers import Tier

CONFIG = """
tts:
  - {type: system, name: voices}
  - {type: openai, name: cloud, base_url: "https://api.openai.com/v1", locality: paid_cloud}
"""


def session(tier: Tier, content: str) -> Any:
    """Enough of a Session for ``speak``: the message's chat, the config, the keys."""

    async def readable(reference: str) -> tuple[Any, Any]:
        return SimpleNamespace(tier=tier), SimpleNamespace(id=reference, content=content)

    async def resolve(entry: Any) -> None:
        raise AssertionError("no key is read for an engine that is not used")

    return SimpleNamespace(
        service=SimpleNamespace(readable=readable),
        config=SimpleNamespace(config=parse_config(CONFIG, "cfg.yml", {})),
        api_keys=SimpleNamespace(resolve=resolve),
    )


async def test_system_voices_only_play_in_the_window() -> None:
    with pytest.raises(UsageError, match="system voices play in the window only"):
        await speak(session(Tier.STANDARD, "Hi."), "m1", None, "out.mp3")


async def test_a_named_engine_the_tier_refuses_is_refused_before_its_key_is_read() -> None:
    with pytest.raises(PolicyRefusedError):
        await speak(session(Tier.PRIVATE, "Hi."), "m1", "cloud", "out.mp3")


async def test_an_unknown_engine_names_the_configured_ones() -> None:
    with pytest.raises(ConfigError, match="configured: voices, cloud"):
        await speak(session(Tier.STANDARD, "Hi."), "m1", "kokoro", "out.mp3")


async def test_a_message_with_nothing_to_say_is_a_usage_error() -> None:
    async def no_key(entry: Any) -> None:
        return None

    quiet = session(Tier.STANDARD, "---\n")
    quiet.api_keys.resolve = no_key
    with pytest.raises(UsageError, match="has nothing to read aloud"):
        await speak(quiet, "m1", "cloud", "out.mp3")

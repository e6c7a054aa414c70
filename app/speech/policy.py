"""Which speech engines a chat's privacy tier allows: the models' policy, reused.

The tiers judge an engine exactly as they judge a model (``app.privacy.policy``):
Private chats use on-prem engines and system voices only, Ephemeral chats on-prem
or free ones, Standard chats any. System voices are always on-prem. Every request
to an engine goes through ``open_engine`` (app/speech/engines.py), which calls
``require_engine`` first, so a refused engine never receives one.
"""

from __future__ import annotations

from app.config import Config, TTSEntry
from app.errors import ConfigError, PolicyRefusedError
from app.privacy import policy
from app.privacy.policy import Decision
from app.tiers import Tier

__all__ = ["default_engine", "engine_decision", "find_engine", "require_engine"]


def engine_decision(tier: Tier, entry: TTSEntry) -> Decision:
    """Whether ``tier`` may send text to ``entry``, and why not (for a disabled entry)."""
    return policy.decision(tier, entry.effective_locality, entry.name)


def require_engine(tier: Tier, entry: TTSEntry) -> None:
    """PolicyRefusedError (exit 5) when ``tier`` may not send text to ``entry``."""
    policy.require(tier, entry.effective_locality, entry.name)


def find_engine(config: Config, name: str) -> TTSEntry:
    """The tts entry called ``name``; ConfigError naming the configured ones if none is."""
    for entry in config.tts:
        if entry.name == name:
            return entry
    names = [entry.name for entry in config.tts]
    if not names:
        raise ConfigError(
            "no speech engines are configured; add one under 'tts:' in your config file "
            "(see .config.yml.example)"
        )
    raise ConfigError(f"no speech engine named '{name}'; configured: {', '.join(names)}")


def default_engine(config: Config, tier: Tier) -> TTSEntry:
    """The engine a chat of ``tier`` reads aloud with: ``default_tts`` if the tier allows
    it, else the first configured engine it allows (as new chats pick their model).

    ConfigError when none is configured; PolicyRefusedError when the tier allows none.
    """
    if not config.tts:
        raise ConfigError(
            "no speech engines are configured; add one under 'tts:' in your config file "
            "(see .config.yml.example)"
        )
    first = find_engine(config, config.default_tts) if config.default_tts else config.tts[0]
    for entry in [first, *(e for e in config.tts if e is not first)]:
        if engine_decision(tier, entry).allowed:
            return entry
    summary = policy.refusals_summary(
        tier, [(entry.name, entry.effective_locality) for entry in config.tts]
    )
    raise PolicyRefusedError(
        f"refused: {summary} Add an on-prem speech engine (or system voices) under 'tts:'"
    )

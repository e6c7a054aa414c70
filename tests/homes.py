"""The environment of a ``hushchat`` subprocess that lives in a HOME of its own."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path


def home_env(
    home: Path, profile: Path, config: Path, *, drop: Collection[str] = ()
) -> dict[str, str]:
    """This process's environment without any ``HUSHCHAT_*`` or ``XDG_*`` variable (nor
    the upper-case names in ``drop``), with HOME, TMPDIR and the XDG folders inside
    ``home`` and the profile and config file named."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HUSHCHAT_", "XDG_")) and name.upper() not in drop
    }
    env.update(
        HOME=str(home),
        TMPDIR=str(home / "tmp"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        HUSHCHAT_PROFILE=str(profile),
        HUSHCHAT_CONFIG=str(config),
    )
    return env

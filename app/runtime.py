"""What every ``hushchat`` command needs: the config, logging, and shared argument types."""

from __future__ import annotations

import argparse

from app.config import LoadedConfig, load_config
from app.logs import configure_logging


def load(args: argparse.Namespace) -> LoadedConfig:
    """Load the config named on the command line (or found by default); applies logging."""
    loaded = load_config(getattr(args, "config", None))
    settings = loaded.config.logging
    configure_logging(
        "DEBUG" if getattr(args, "debug", False) else settings.level,
        getattr(args, "log_format", None) or settings.format,
    )
    return loaded


def positive_int(text: str) -> int:
    """An argparse type: a whole number greater than 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value

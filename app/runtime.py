"""What every ``hushchat`` command needs: the config, logging, the front door (a
:class:`~app.session.Session` opened as the command line asks), argument types."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from app.logs import configure_logging

if TYPE_CHECKING:  # the schema (pydantic, ruamel.yaml) loads when a config is: start-up time
    from app.config import LoadedConfig
    from app.session import Session


def load(args: argparse.Namespace) -> LoadedConfig:
    """Load the config named on the command line (or found by default); applies logging."""
    from app.config import load_config

    loaded = load_config(getattr(args, "config", None))
    settings = loaded.config.logging
    configure_logging(
        "DEBUG" if getattr(args, "debug", False) else settings.level,
        getattr(args, "log_format", None) or settings.format,
    )
    return loaded


@contextlib.asynccontextmanager
async def open_session(
    args: argparse.Namespace, *, with_vault: bool = True
) -> AsyncIterator[Session]:
    """The command's session, unlocked: the same front door the window uses.

    With the vault, a running unlock agent (``hushchat unlock``) is asked first unless
    the command names how to unlock; otherwise the secret is asked for as
    ``--unlock-with`` says. Without it (Ephemeral chats) nothing is read from or
    written to the profile. Closed (locked, threads stopped) on exit.
    """
    from app.session import Session

    config = load(args)
    if with_vault:
        from app.vault.cli import unlock_session
        from app.vault.profile import resolve_profile_dir

        session = Session(config, resolve_profile_dir(getattr(args, "profile", None)))
    else:
        session = Session.ephemeral_only(config)
    try:
        if with_vault:
            await unlock_session(session, args)
        yield session
    finally:
        await session.aclose()


def positive_int(text: str) -> int:
    """An argparse type: a whole number greater than 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value

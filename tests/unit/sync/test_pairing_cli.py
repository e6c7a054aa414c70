"""``hushchat sync link`` and ``sync join CODE``: the parser (join signs in exactly like
``sync login``) and the code check before anything is sent."""

from __future__ import annotations

import argparse

import pytest

from app.cli import build_parser
from app.sync.pairing import PairingCodeError
from app.sync.pairing_cli import _join


def _sync_commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sync = next(
        action
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction)
    ).choices["sync"]
    commands = next(
        action
        for action in sync._subparsers._group_actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return dict(commands.choices)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def test_join_takes_the_sign_in_options_of_login() -> None:
    commands = _sync_commands()
    assert _options(commands["join"]) == _options(commands["login"]) - {"--recovery-code"}
    args = commands["join"].parse_args(
        ["4127-abacus-nimble-tundra", "--server", "https://sync.example.org", "--local", "a@b.c"]
    )
    assert args.code == "4127-abacus-nimble-tundra" and args.local == "a@b.c"
    assert args.recovery_code is False  # read by the shared sign-in path
    with pytest.raises(SystemExit):
        commands["join"].parse_args(["1-a-b-c", "--server", "u", "--device", "--no-browser"])
    assert {"--passphrase-stdin", "--unlock-with"} <= _options(commands["link"])


def test_a_mistyped_code_stops_before_signing_in() -> None:
    args = _sync_commands()["join"].parse_args(
        ["4127-abacus-nimble", "--server", "http://127.0.0.1:9"]
    )
    with pytest.raises(PairingCodeError, match="a number and 3 words"):
        _join(args)

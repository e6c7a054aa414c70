"""The vault's public surface and its boundaries."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import app.vault
from app.vault.cli import register


def test_all_names_exist_and_are_sorted() -> None:
    names = app.vault.__all__
    assert all(hasattr(app.vault, name) for name in names)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))


def test_vault_imports_no_qt() -> None:
    code = "import sys, app.vault, app.vault.cli; print('PySide6' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_every_error_has_exit_code_4() -> None:
    from app.errors import ExitCode, VaultError

    for name in app.vault.__all__:
        value = getattr(app.vault, name)
        if isinstance(value, type) and issubclass(value, VaultError):
            assert value.exit_code == ExitCode.VAULT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hushchat")
    parser.add_argument("--profile")
    register(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["vault", "init", "--passphrase-stdin"],
        ["vault", "status"],
        ["vault", "verify", "--unlock-with", "recovery-code"],
        ["vault", "passwd"],
        ["vault", "slots"],
        ["vault", "add-key", "--label", "Blue key"],
        ["vault", "add-keychain"],
        ["vault", "remove-slot", "0123abcd", "--yes"],
        ["vault", "recover", "--new-recovery-code"],
        ["vault", "rekey"],
    ],
)
def test_every_subcommand_has_a_handler(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert callable(args.handler)


def test_unknown_unlock_method_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as raised:
        _parser().parse_args(["vault", "verify", "--unlock-with", "telepathy"])
    assert raised.value.code == 2

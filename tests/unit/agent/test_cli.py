"""``hushchat unlock``/``lock`` argument handling and the agent process's key intake."""

from __future__ import annotations

import argparse
import io
import struct

import pytest

from app.agent import cli
from app.agent.__main__ import read_keys
from app.agent.errors import AgentUnavailableError
from app.agent.keys import AgentKeys
from app.agent.protocol import ProtocolError, encode_frame, keys_to_json
from app.errors import ExitCode
from app.tiers import STORED_TIERS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2m5s", 125), (" 10M ", 600)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1d", "-5m", "0s", "0h0m", "1.5h", "15 m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1 second"),
        (90, "90 seconds"),
        (60, "1 minute"),
        (900, "15 minutes"),
        (3600, "1 hour"),
        (5400, "1 h 30 min"),
        (7200, "2 hours"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert cli.format_duration(seconds) == text


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hushchat")
    top.add_argument("--profile")
    cli.register(top.add_subparsers())
    return top


def test_unlock_arguments() -> None:
    args = parser().parse_args(["unlock", "--for", "1h", "--passphrase-stdin"])
    assert args.duration == 3600 and args.passphrase_stdin
    assert args.unlock_with in (None, "passphrase")  # None: the passphrase, for unlock
    assert parser().parse_args(["unlock"]).duration == 15 * 60
    with pytest.raises(SystemExit):
        parser().parse_args(["unlock", "--for", "soon"])


@pytest.mark.parametrize("command", [["unlock"], ["lock"]])
def test_not_on_windows_yet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, command: list[str]
) -> None:
    monkeypatch.setattr(cli, "is_supported", lambda: False)
    args = parser().parse_args(["--profile", str(tmp_path), *command])
    with pytest.raises(AgentUnavailableError, match="not available on Windows yet") as caught:
        args.handler(args)
    assert caught.value.exit_code == ExitCode.USAGE


def test_agent_environment_drops_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUSHCHAT_PASSPHRASE", "secret one")
    monkeypatch.setenv("HUSHCHAT_NEW_PASSPHRASE", "secret two")
    monkeypatch.setenv("HUSHCHAT_RECOVERY_CODE", "123456")
    monkeypatch.setenv("HUSHCHAT_PROFILE", "/somewhere")
    env = cli._agent_environment()
    assert "secret one" not in env.values() and "secret two" not in env.values()
    assert "HUSHCHAT_RECOVERY_CODE" not in env
    assert env["HUSHCHAT_PROFILE"] == "/somewhere"


def keys() -> AgentKeys:
    return AgentKeys(
        bytes(16),
        {tier: bytearray([index + 1] * 32) for index, tier in enumerate(STORED_TIERS)},
        dict.fromkeys(STORED_TIERS, 2),
    )


def test_agent_reads_its_keys_from_a_pipe() -> None:
    sent = keys()
    received = read_keys(io.BytesIO(encode_frame(keys_to_json(sent))))
    assert received.generations == sent.generations
    assert all(received.key(t) == sent.key(t) for t in STORED_TIERS)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00", struct.pack(">I", 100) + b"{}", b"\xff\xff\xff\xff", encode_frame({})],
)
def test_agent_refuses_bad_key_input(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_keys(io.BytesIO(data))

"""``hushchat unlock [--for DURATION]`` and ``hushchat lock``: an unlock that lasts.

``unlock`` unlocks the vault once, here in the foreground (so prompts, security keys and
``--passphrase-stdin`` work as for every command), then starts the background agent
(``python -m app.agent``), hands it the two database keys through a pipe — never argv or
the environment — and returns once it listens. Until DURATION passes without a command
using it, the machine suspends, or ``hushchat lock``, commands of this user that only
need the databases get their keys from it and ask for no secret.

On Windows both commands say the agent is not available yet and exit 2.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from app.agent import client
from app.agent.errors import AgentError, AgentUnavailableError
from app.agent.keys import AgentKeys
from app.agent.protocol import encode_frame, is_supported, keys_to_json

__all__ = [
    "LOCK_HELP",
    "UNLOCK_HELP",
    "format_duration",
    "parse_duration",
    "register",
    "register_lock",
    "register_unlock",
    "start_agent",
]

DEFAULT_DURATION: Final = 15 * 60.0
START_TIMEOUT: Final = 15.0
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_NOT_ON_THIS_PLATFORM: Final = (
    "The unlock agent is not available on Windows yet: each command asks for the secret "
    "(or reads it with --passphrase-stdin)."
)


def parse_duration(text: str) -> float:
    """An argparse type: ``90s``, ``15m``, ``1h``, ``1h30m`` … as seconds (more than 0)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a duration; write it like 90s, 15m, 1h or 1h30m"
        )
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError("the duration must be longer than 0 seconds")
    return float(total)


def format_duration(seconds: float) -> str:
    """``900.0`` as ``15 minutes``, ``5400.0`` as ``1 h 30 min``, ``90.0`` as ``90 seconds``."""
    whole = round(seconds)
    if whole % 60 or whole < 60:
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} hour{'s' if hours != 1 else ''}"


UNLOCK_HELP: Final = "unlock once; later commands need no secret until idle, suspend or lock"
LOCK_HELP: Final = "lock now: the unlock agent forgets the keys"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``unlock`` and ``lock`` to the top-level parser."""
    register_unlock(subparsers)
    register_lock(subparsers)


def register_unlock(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hushchat unlock [--for DURATION] [--unlock-with …] [--passphrase-stdin]``."""
    from app.vault.cli import unlock_parent_parsers

    unlock = subparsers.add_parser(
        "unlock",
        parents=unlock_parent_parsers(),
        help=UNLOCK_HELP,
        description=(
            "Unlock the vault once and keep its database keys in a background agent (like "
            "ssh-agent) so that later hushchat commands of this user need no secret. The "
            "agent forgets them after DURATION without use, when the machine suspends, or "
            "on 'hushchat lock'. Not available on Windows yet."
        ),
    )
    unlock.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        default=DEFAULT_DURATION,
        metavar="DURATION",
        help="lock after this long without use: 90s, 15m, 1h, 1h30m (default: 15m)",
    )
    unlock.set_defaults(handler=_cmd_unlock)


def register_lock(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hushchat lock``."""
    subparsers.add_parser(
        "lock",
        help=LOCK_HELP,
        description="Stop the profile's unlock agent (or lock the window serving it).",
    ).set_defaults(handler=_cmd_lock)


def _profile(args: argparse.Namespace) -> Path:
    from app.vault.profile import resolve_profile_dir

    return resolve_profile_dir(getattr(args, "profile", None))


def _describe(status: client.AgentStatus) -> str:
    who = "the Hushchat window" if status.kind == "window" else f"unlock agent pid {status.pid}"
    if status.idle_seconds_left is None:
        return who
    return f"{who}, locks after {format_duration(status.idle_seconds_left)} more without use"


def _cmd_unlock(args: argparse.Namespace) -> int:
    if not is_supported():
        raise AgentUnavailableError(_NOT_ON_THIS_PLATFORM)
    from app.vault.cli import unlocked_vault

    profile = _profile(args)
    running = client.status(profile)
    if running is not None:
        keys = client.request_keys(profile)  # checks the generations; locks a stale agent
        if keys is not None:
            keys.wipe()
            print(f"Already unlocked ({_describe(running)}); 'hushchat lock' locks it.")
            return 0
    if getattr(args, "unlock_with", None) is None:  # "default: the agent" makes no sense here
        args.unlock_with = "passphrase"
    with unlocked_vault(args) as vault:
        keys = vault.agent_keys()
    try:
        pid = start_agent(profile, keys, idle_timeout=args.duration)
    finally:
        keys.wipe()
    print(
        f"Unlocked (agent pid {pid}): hushchat commands need no secret until it goes "
        f"unused for {format_duration(args.duration)}, the computer sleeps, or 'hushchat lock'."
    )
    return 0


def _cmd_lock(args: argparse.Namespace) -> int:
    if not is_supported():
        raise AgentUnavailableError(_NOT_ON_THIS_PLATFORM)
    profile = _profile(args)
    running = client.status(profile)
    if client.lock(profile):
        who = "the Hushchat window" if running and running.kind == "window" else "the agent"
        print(f"Locked: {who} forgot the keys; commands ask for the secret again.")
    else:
        print("No unlock agent was running for this profile; nothing to lock.")
    return 0


def _agent_environment() -> dict[str, str]:
    """Ours, without the secrets a script may have passed to this command."""
    from app.vault.cli import NEW_PASSPHRASE_ENV, PASSPHRASE_ENV, RECOVERY_CODE_ENV

    secret = {PASSPHRASE_ENV, NEW_PASSPHRASE_ENV, RECOVERY_CODE_ENV}
    return {name: value for name, value in os.environ.items() if name not in secret}


def start_agent(
    profile_dir: Path, keys: AgentKeys, *, idle_timeout: float, timeout: float = START_TIMEOUT
) -> int:
    """Start the detached agent process with ``keys``; return its pid once it listens.

    The keys go through the agent's standard input; its standard streams are pipes that
    it lets go of once ready, so it holds nothing of the terminal. Raises
    :class:`AgentError` when it does not report ready within ``timeout`` seconds.
    """
    command = [
        sys.executable,
        "-m",
        "app.agent",
        "--profile",
        str(Path(profile_dir).expanduser().resolve()),  # the agent works from /
        "--idle-timeout",
        repr(float(idle_timeout)),
    ]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
        start_new_session=True,
        env=_agent_environment(),
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    try:
        try:
            process.stdin.write(encode_frame(keys_to_json(keys)))
            process.stdin.close()
        except BrokenPipeError:
            pass  # it died early; what it said follows
        line = _read_line(process.stdout.fileno(), time.monotonic() + timeout)
        if line.startswith("ready "):
            return int(line.split()[1])
        problem = line.removeprefix("error: ") or _tail(process.stderr.fileno())
        raise AgentError(f"The unlock agent did not start: {problem or 'no answer in time'}")
    finally:
        process.stdout.close()
        process.stderr.close()
        try:
            process.wait(timeout=timeout)  # the intermediate child exits at once
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_line(fd: int, deadline: float) -> str:
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data and len(data) < 4096:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


def _tail(fd: int) -> str:
    """The last line of what the agent wrote on stderr (a crash), without blocking long."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        if not selector.select(0.5):
            return ""
    lines = os.read(fd, 65536).decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""

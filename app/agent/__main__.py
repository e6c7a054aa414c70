"""The standalone unlock agent process: ``python -m app.agent --profile DIR --idle-timeout S``.

Started by ``hushchat unlock`` (``app.agent.cli``), never by hand. It reads the keys as
one frame from standard input (a pipe: never argv or the environment), detaches (a
second fork, so it is no child of the command and holds no terminal), serves them with
an :class:`~app.agent.server.AgentServer`, writes ``ready <pid>`` (or ``error: …``) on
standard output, then points its standard streams at ``/dev/null``. It exits when the
server locks. It never opens the vault, so it holds no profile lock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import IO

from app.agent.errors import AgentError
from app.agent.keys import AgentKeys
from app.agent.protocol import (
    HEADER,
    MAX_RESPONSE_BYTES,
    ProtocolError,
    decode_body,
    frame_length,
    keys_from_json,
)
from app.agent.server import AgentServer


def _read_exactly(stream: IO[bytes], size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = stream.readinto(view[received:])  # type: ignore[attr-defined]
        if not count:
            raise ProtocolError("the keys ended early")
        received += count
    return buffer


def read_keys(stream: IO[bytes]) -> AgentKeys:
    """The keys frame ``hushchat unlock`` writes to the agent's stdin."""
    length = frame_length(bytes(_read_exactly(stream, HEADER.size)), MAX_RESPONSE_BYTES)
    body = _read_exactly(stream, length)
    try:
        return keys_from_json(decode_body(body))
    finally:
        body[:] = bytes(len(body))


def _harden() -> None:
    """No core dumps of a process that holds keys; on Linux also no ptrace by our uid."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_dumpable = 4
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)


def _detach_streams() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


async def _serve(keys: AgentKeys, profile_dir: Path, idle_timeout: float | None) -> int:
    server = AgentServer(keys, profile_dir=profile_dir, idle_timeout=idle_timeout, kind="agent")
    try:
        await server.start()
    except AgentError as error:
        keys.wipe()
        print(f"error: {error}", flush=True)
        return 1
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, server.close)
    print(f"ready {os.getpid()}", flush=True)
    _detach_streams()
    await server.wait_closed()
    await asyncio.sleep(0.05)  # let a lock request's answer go out
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the agent; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m app.agent")
    parser.add_argument("--profile", required=True, type=Path)
    parser.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--no-fork", action="store_true", help="stay in the foreground (tests)")
    args = parser.parse_args(argv)
    profile_dir = args.profile.expanduser().resolve()  # before leaving the working directory
    if not args.no_fork and os.fork() > 0:
        os._exit(0)  # the intermediate child: the command reaps it at once
    os.chdir("/")
    os.umask(0o077)
    _harden()
    try:
        keys = read_keys(sys.stdin.buffer)
    except (ProtocolError, OSError) as error:
        print(f"error: could not read the keys: {error}", flush=True)
        return 1
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # let go of the pipe
    os.close(devnull)
    return asyncio.run(_serve(keys, profile_dir, args.idle_timeout))


if __name__ == "__main__":
    sys.exit(main())

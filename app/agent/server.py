"""The unlock agent's server: hands the database keys to this user's processes.

An :class:`AgentServer` runs on an asyncio loop: in the standalone agent process
(``python -m app.agent``, started by ``hushchat unlock``) or inside the window's qasync
loop while the vault is unlocked. It serves one profile's socket (``app.agent.protocol``)
and locks — overwrites its key buffers, stops listening, removes the socket — on:

* idle: no ``keys`` request for ``idle_timeout`` seconds (None: never);
* suspend: the gap between a clock that counts suspend and one that does not grows
  (Linux ``CLOCK_BOOTTIME`` vs ``CLOCK_MONOTONIC``; macOS ``CLOCK_MONOTONIC`` vs
  ``CLOCK_UPTIME_RAW``), polled every ``poll_interval`` seconds;
* a ``lock`` request (``hushchat lock``), or :meth:`AgentServer.close` by its owner.

Only connections from this user's uid (peer credentials) get an answer. Each connection
carries one bounded request and gets one answer within ``connection_timeout``; at most
``max_connections`` are served at once. Keys are never logged or written anywhere.

Lifecycle from a running loop (the window)::

    server = AgentServer(vault.agent_keys(), profile_dir=..., idle_timeout=None,
                         kind="window", on_locked=lambda reason: ...)
    await server.start()          # AgentRunningError if another agent serves the profile
    ...
    server.close()                # when the window locks: keys wiped, socket removed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final

from app.agent.errors import AgentError, AgentRunningError, AgentUnavailableError
from app.agent.keys import AgentKeys
from app.agent.protocol import (
    HEADER,
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_body,
    encode_frame,
    frame_length,
    is_supported,
    keys_to_json,
    lock_file_path,
    peer_uid,
    private_dir_problem,
    socket_path,
)

__all__ = ["AgentServer", "LockReason", "SuspendDetector"]

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL: Final = 5.0
DEFAULT_CONNECTION_TIMEOUT: Final = 2.0
DEFAULT_MAX_CONNECTIONS: Final = 8
SUSPEND_THRESHOLD: Final = 1.0


class LockReason(StrEnum):
    """Why an agent locked."""

    IDLE = "idle"
    SUSPEND = "suspend"
    REQUEST = "request"  # hushchat lock (or a stale-key client)
    CLOSED = "closed"  # its owner called close()


class SuspendDetector:
    """Notices a system suspend: one clock runs on through suspend, the other stops.

    ``counts_suspend() - skips_suspend()`` is constant while the machine runs and grows
    by the time spent suspended; a growth above ``threshold`` seconds between two
    :meth:`has_suspended` calls is a suspend.
    """

    def __init__(
        self,
        counts_suspend: Callable[[], float],
        skips_suspend: Callable[[], float],
        *,
        threshold: float = SUSPEND_THRESHOLD,
    ) -> None:
        self._counts_suspend = counts_suspend
        self._skips_suspend = skips_suspend
        self._threshold = threshold
        self._offset = self._read_offset()

    def _read_offset(self) -> float:
        return self._counts_suspend() - self._skips_suspend()

    def has_suspended(self) -> bool:
        """Whether the machine was suspended since the last call (or construction)."""
        offset = self._read_offset()
        jumped = offset - self._offset > self._threshold
        self._offset = offset
        return jumped

    @classmethod
    def for_platform(cls, platform: str = sys.platform) -> SuspendDetector | None:
        """The detector for this OS, or None where no such clock pair is known."""
        if platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
            boot, mono = time.CLOCK_BOOTTIME, time.CLOCK_MONOTONIC
            return cls(lambda: time.clock_gettime(boot), lambda: time.clock_gettime(mono))
        uptime = getattr(time, "CLOCK_UPTIME_RAW", None)
        if platform == "darwin" and uptime is not None:
            mono = time.CLOCK_MONOTONIC  # on macOS this one counts sleep
            return cls(lambda: time.clock_gettime(mono), lambda: time.clock_gettime(uptime))
        return None


class AgentServer:
    """Serves one profile's database keys on its per-user socket until it locks."""

    def __init__(
        self,
        keys: AgentKeys,
        *,
        profile_dir: Path,
        idle_timeout: float | None,
        on_locked: Callable[[LockReason], None] | None = None,
        kind: str = "agent",
        clock: Callable[[], float] = time.monotonic,
        suspend_detector: SuspendDetector | None = None,
        detect_suspend: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        connection_timeout: float = DEFAULT_CONNECTION_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        allowed_uid: int | None = None,
    ) -> None:
        """Take ownership of ``keys`` (they are wiped on lock; pass a copy to keep yours).

        ``on_locked`` is called once when the server locks by itself (idle, suspend, a
        ``lock`` request), not after :meth:`close`. ``kind`` is what ``status`` reports
        (``"agent"`` or ``"window"``). ``clock``, ``suspend_detector`` and
        ``allowed_uid`` (default: our own uid) are for tests.
        """
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("the idle timeout must be positive (or None for never)")
        self._keys = keys
        self.profile_dir = Path(profile_dir)
        self.idle_timeout = idle_timeout
        self.kind = kind
        self._on_locked = on_locked
        self._clock = clock
        if suspend_detector is None and detect_suspend:
            suspend_detector = SuspendDetector.for_platform()
        self._suspend = suspend_detector
        self._poll_interval = poll_interval
        self._connection_timeout = connection_timeout
        self._max_connections = max_connections
        self._allowed_uid = allowed_uid  # our own, read in start() (Windows has no getuid)
        self._last_request = clock()
        self._server: asyncio.AbstractServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lock_file: IO[bytes] | None = None
        self._socket_path: Path | None = None
        self._socket_identity: tuple[int, int] | None = None
        self._active_connections = 0
        self._locked = False
        self._closed: asyncio.Event | None = None
        self.lock_reason: LockReason | None = None

    # ----------------------------------------------------------------- state

    @property
    def is_locked(self) -> bool:
        """Whether the keys are gone (the server has stopped or never started)."""
        return self._locked

    @property
    def socket_path(self) -> Path | None:
        """The socket this server listens on (None before :meth:`start`)."""
        return self._socket_path

    def seconds_until_idle_lock(self) -> float | None:
        """Seconds until the idle lock, or None without an idle timeout."""
        if self.idle_timeout is None:
            return None
        return max(0.0, self._last_request + self.idle_timeout - self._clock())

    # ----------------------------------------------------------------- start and stop

    async def start(self) -> None:
        """Listen on the profile's socket.

        Raises :class:`AgentUnavailableError` on a platform without the agent (Windows)
        or when the socket directory is not private, :class:`AgentRunningError` when
        another process serves this profile already. A stale socket file is replaced.
        A server that fails to start has wiped its keys: build a new one to try again.
        """
        if self._locked:
            raise AgentError("This agent has locked; start a new one with fresh keys.")
        try:
            await self._listen()
        except BaseException:
            self._locked = True
            self._keys.wipe()
            if self._closed is not None:
                self._closed.set()
            raise
        log.info("unlock agent (%s) listening on %s", self.kind, self._socket_path)

    async def _listen(self) -> None:
        if not is_supported():
            raise AgentUnavailableError(
                "The unlock agent is not available on this platform yet; commands ask for "
                "the secret each time."
            )
        if self._allowed_uid is None:
            self._allowed_uid = os.getuid()
        self._closed = asyncio.Event()
        path = socket_path(self.profile_dir)
        _make_private_dir(path.parent)
        self._lock_file = _take_lock_file(lock_file_path(self.profile_dir))
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale socket: we hold the lock, so nobody serves it
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(str(path))
                path.chmod(0o600)
                info = path.stat()
                self._server = await asyncio.start_unix_server(
                    self._serve_connection, sock=listener, limit=MAX_REQUEST_BYTES + HEADER.size
                )
            except BaseException:
                listener.close()
                raise
        except BaseException:
            self._release_lock_file()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        self._socket_path = path
        self._socket_identity = (info.st_dev, info.st_ino)
        self._last_request = self._clock()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def close(self) -> None:
        """Lock now: wipe the keys, stop listening, remove the socket. Idempotent."""
        self._lock(LockReason.CLOSED)

    async def wait_closed(self) -> None:
        """Return once the server has locked (for any reason)."""
        if self._closed is None:
            return
        await self._closed.wait()

    def lock_if_due(self) -> LockReason | None:
        """Lock if the machine was suspended or the idle timeout has passed; say why."""
        if self._locked:
            return None
        reason: LockReason | None = None
        if self._suspend is not None and self._suspend.has_suspended():
            reason = LockReason.SUSPEND
        elif self.idle_timeout is not None and self.seconds_until_idle_lock() == 0.0:
            reason = LockReason.IDLE
        if reason is not None:
            self._lock(reason)
        return reason

    def _lock(self, reason: LockReason) -> None:
        if self._locked:
            return
        self._locked = True
        self.lock_reason = reason
        self._keys.wipe()
        if self._server is not None:
            self._server.close()  # stops listening; open connections end on their own
        self._remove_socket()
        self._release_lock_file()
        watcher = self._watcher
        if watcher is not None and watcher is not _current_task():
            watcher.cancel()
        if self._closed is not None:
            self._closed.set()
        log.info("unlock agent (%s) locked: %s", self.kind, reason.value)
        if reason is not LockReason.CLOSED and self._on_locked is not None:
            try:
                self._on_locked(reason)
            except Exception:
                log.exception("the unlock agent's on_locked callback failed")

    def _remove_socket(self) -> None:
        path = self._socket_path
        if path is None:
            return
        try:
            info = path.stat()
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == self._socket_identity:  # not a successor's socket
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _release_lock_file(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the flock
            self._lock_file = None

    async def _watch(self) -> None:
        while not self._locked:
            delay = self._poll_interval
            left = self.seconds_until_idle_lock()
            if left is not None:
                delay = min(delay, left + 0.01)
            await asyncio.sleep(max(delay, 0.01))
            self.lock_if_due()

    # ----------------------------------------------------------------- connections

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._active_connections >= self._max_connections:
            log.warning("unlock agent: too many connections at once; refusing one")
            writer.transport.abort()
            return
        self._active_connections += 1
        try:
            async with asyncio.timeout(self._connection_timeout):
                await self._answer_connection(reader, writer)
        except TimeoutError:
            log.info("unlock agent: a connection took too long; closed it")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._active_connections -= 1
            writer.close()  # sends what is buffered, then closes

    async def _answer_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid is None or uid != self._allowed_uid:
            log.warning("unlock agent: refused a connection from uid %s", uid)
            return
        try:
            length = frame_length(await reader.readexactly(HEADER.size), MAX_REQUEST_BYTES)
            request = decode_body(await reader.readexactly(length))
        except ProtocolError as error:
            reply: dict[str, Any] = {"ok": False, "error": str(error)}
        else:
            reply = self._answer(request)
        writer.write(encode_frame(reply))
        await writer.drain()

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("v") != PROTOCOL_VERSION:
            return {"ok": False, "error": f"protocol version {PROTOCOL_VERSION} expected"}
        op = request.get("op")
        if op == "status":
            return {
                "ok": True,
                "kind": self.kind,
                "pid": os.getpid(),
                "idle_timeout": self.idle_timeout,
                "idle_seconds_left": self.seconds_until_idle_lock(),
            }
        if op == "lock":
            self._lock(LockReason.REQUEST)
            return {"ok": True}
        if op == "keys":
            if self._locked:
                return {"ok": False, "error": "locked"}
            self._last_request = self._clock()
            return {"ok": True, **keys_to_json(self._keys)}
        return {"ok": False, "error": "unknown request"}


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _make_private_dir(path: Path) -> None:
    """Create the socket directory 0700, or check an existing one is ours and private."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    problem = private_dir_problem(path)
    if problem is not None:
        raise AgentUnavailableError(
            f"The unlock agent's directory is not private: {problem}. Remove it (or fix its "
            "owner and mode 0700) and try again."
        )


def _take_lock_file(path: Path) -> IO[bytes]:
    import fcntl

    handle = path.open("a+b")
    try:
        path.chmod(0o600)
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise AgentRunningError(
            "Another unlock agent (or an unlocked window) already serves this profile; "
            "'hushchat lock' stops it."
        ) from None
    return handle

"""Ask a running unlock agent (or unlocked window) for the database keys; lock it.

On the start-up path of every ``hushchat`` command that needs the databases, so it
imports only the standard library (plus the small ``app.agent`` modules) and costs
about one connection attempt when no agent runs: no socket file, no answer, or a
socket that is not ours all mean "no agent" (``None``/``False``), never an exception.

The keys an agent hands out are checked against the profile's slot file: another
vault's id, another key generation (after ``hushchat vault rekey``) or a rekey in
flight make the agent stale; the client then asks it to lock and returns ``None``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.agent.keys import AgentKeys
from app.agent.protocol import (
    HEADER,
    MAX_RESPONSE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_body,
    encode_frame,
    frame_length,
    is_supported,
    keys_from_json,
    peer_uid,
    private_dir_problem,
    socket_path,
)

__all__ = ["AgentKeys", "AgentStatus", "lock", "request_keys", "stale_reason", "status"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentStatus:
    """What a running agent says about itself (no secret)."""

    kind: str  # "agent" (hushchat unlock) or "window"
    pid: int
    idle_timeout: float | None
    idle_seconds_left: float | None


def request_keys(profile_dir: Path, *, timeout: float = 1.0) -> AgentKeys | None:
    """The database keys from the profile's agent, or None when none answers usefully.

    Never raises for "no agent" (nor for a broken or stale one). A stale agent (other
    vault id, other key generation, a rekey in flight) is asked to lock.
    """
    reply = _exchange(profile_dir, "keys", timeout)
    if reply is None:
        return None
    try:
        keys = keys_from_json(reply)
    except ProtocolError:
        log.warning("the unlock agent answered with keys that do not parse; ignoring it")
        return None
    reason = stale_reason(profile_dir, keys)
    if reason is not None:
        keys.wipe()
        log.info("ignoring the unlock agent and asking it to lock: %s", reason)
        _exchange(profile_dir, "lock", timeout)
        return None
    return keys


def lock(profile_dir: Path, *, timeout: float = 1.0) -> bool:
    """Ask the profile's agent to drop its keys and stop; True if one was running."""
    return _exchange(profile_dir, "lock", timeout) is not None


def status(profile_dir: Path, *, timeout: float = 1.0) -> AgentStatus | None:
    """What the profile's agent says about itself, or None when none answers."""
    reply = _exchange(profile_dir, "status", timeout)
    if reply is None:
        return None
    try:
        return AgentStatus(
            kind=str(reply["kind"]),
            pid=int(reply["pid"]),
            idle_timeout=_optional_float(reply.get("idle_timeout")),
            idle_seconds_left=_optional_float(reply.get("idle_seconds_left")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def stale_reason(profile_dir: Path, keys: AgentKeys) -> str | None:
    """Why ``keys`` do not fit the profile's slot file now, or None when they do.

    The slot file is read without the profile lock (it is only ever replaced
    atomically). An unreadable or damaged file is reported as a reason too: the
    command then unlocks the usual way and reports the damage itself.
    """
    from app.vault.errors import VaultError
    from app.vault.slots import SLOT_FILE_NAME, SlotFile  # needed next anyway, to connect

    try:
        slot_file = SlotFile.from_bytes((Path(profile_dir) / SLOT_FILE_NAME).read_bytes())
    except (OSError, VaultError) as error:
        return f"the slot file cannot be read ({type(error).__name__})"
    if slot_file.vault_id != keys.vault_id:
        return "it holds the keys of another vault"
    if slot_file.pending_rekey:
        return "a rekey of the vault is unfinished"
    for tier, record in slot_file.databases.items():
        if keys.generations[tier] != record.generation:
            have, want = keys.generations[tier], record.generation
            return f"its {tier} key is generation {have}, the vault's is {want}"
    return None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _exchange(profile_dir: Path, op: str, timeout: float) -> dict[str, Any] | None:
    """Send one request and return the ``ok`` answer, or None for any failure."""
    if not is_supported():
        return None
    try:
        path = socket_path(Path(profile_dir))
        if not path.exists() or private_dir_problem(path.parent) is not None:
            return None
        reply = _round_trip(path, {"v": PROTOCOL_VERSION, "op": op}, timeout)
    except (OSError, ProtocolError) as error:
        log.debug("no usable unlock agent: %s", type(error).__name__)
        return None
    if reply is None or reply.get("ok") is not True:
        if reply is not None:
            log.debug("the unlock agent refused %s: %s", op, str(reply.get("error"))[:200])
        return None
    return reply


def _round_trip(path: Path, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        if peer_uid(sock) != os.getuid():
            log.warning("the unlock agent socket %s is served by another user; ignoring it", path)
            return None
        sock.sendall(encode_frame(request))
        header = _receive(sock, HEADER.size, deadline)
        body = _receive(sock, frame_length(bytes(header), MAX_RESPONSE_BYTES), deadline)
        try:
            return decode_body(body)
        finally:
            body[:] = bytes(len(body))  # the answer may hold keys


def _receive(sock: socket.socket, size: int, deadline: float) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the unlock agent did not answer in time")
        sock.settimeout(left)
        count = sock.recv_into(view[received:])
        if count == 0:
            raise ProtocolError("the unlock agent closed the connection mid-answer")
        received += count
    return buffer

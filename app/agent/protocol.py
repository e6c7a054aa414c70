"""What the agent and its clients agree on: where the socket is, frames, peer checks.

Socket: ``$XDG_RUNTIME_DIR/hushchat/agent-<hash>.sock`` when that variable names a
directory, else ``<temp dir>/hushchat-<uid>/agent-<hash>.sock``; ``<hash>`` is 24 hex
digits of SHA-256 of the resolved profile path, so each profile has its own agent. The
directory must be ours and mode 0700 (else nobody uses it), the socket is 0600, and both
sides check the other's uid with peer credentials (Linux ``SO_PEERCRED``, macOS
``LOCAL_PEERCRED``).

Frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object).
One request and one answer per connection::

    {"v": 1, "op": "keys"}   -> {"ok": true, "vault_id": b64, "databases":
                                  {"standard": {"key": b64, "generation": 1}, "private": …}}
    {"v": 1, "op": "status"} -> {"ok": true, "kind": "agent"|"window", "pid": 123,
                                  "idle_timeout": 900.0|null, "idle_seconds_left": …}
    {"v": 1, "op": "lock"}   -> {"ok": true}   (the agent has dropped its keys and stopped)
    anything else            -> {"ok": false, "error": "…"}

Requests are at most 1 KiB, answers at most 16 KiB. The same frame carries the keys
from ``hushchat unlock`` to the agent process over a pipe. Stdlib only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import socket
import stat
import struct
import sys
from pathlib import Path
from typing import Any, Final

from app.agent.keys import AgentKeys
from app.tiers import STORED_TIERS

__all__ = [
    "HEADER",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "decode_body",
    "encode_frame",
    "frame_length",
    "is_supported",
    "keys_from_json",
    "keys_to_json",
    "lock_file_path",
    "peer_uid",
    "private_dir_problem",
    "runtime_dir",
    "socket_path",
]

PROTOCOL_VERSION: Final = 1
HEADER: Final = struct.Struct(">I")
MAX_REQUEST_BYTES: Final = 1024
MAX_RESPONSE_BYTES: Final = 16 * 1024
_HASH_CHARS: Final = 24
_MAX_SOCKET_PATH_BYTES: Final = 104
# macOS <sys/un.h>: SOL_LOCAL = 0, LOCAL_PEERCRED = 1 (a struct xucred).
_SOL_LOCAL: Final = 0
_LOCAL_PEERCRED: Final = 1
_XUCRED: Final = struct.Struct("=Ii")  # cr_version, cr_uid (then ngroups and groups)
_XUCRED_SIZE: Final = 76
_LINUX_UCRED: Final = struct.Struct("=iII")  # pid, uid, gid
_NO_UID: Final = 0xFFFFFFFF  # (uid_t) -1: no peer (not connected, not a Unix socket)
_SO_PEERCRED: Final[int] = getattr(socket, "SO_PEERCRED", 17)  # Linux <asm/socket.h>


class ProtocolError(ValueError):
    """A frame or message that does not follow the protocol."""


def is_supported() -> bool:
    """Whether this platform has the agent (Unix sockets with peer credentials)."""
    return sys.platform.startswith("linux") or sys.platform == "darwin"


def runtime_dir() -> Path:
    """The per-user directory that holds the agents' sockets (not created here).

    ``$XDG_RUNTIME_DIR/hushchat``, else ``hushchat-UID`` in the temporary directory, else
    in ``/tmp``: the first whose socket paths fit a Unix socket address (about 100 bytes;
    a deep ``$TMPDIR``, as macOS gives, would make binding fail)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_absolute() and Path(xdg).is_dir() and _fits(Path(xdg) / "hushchat"):
        return Path(xdg) / "hushchat"
    import tempfile  # only on this path: XDG_RUNTIME_DIR is the common case on Linux

    private = Path(tempfile.gettempdir()) / f"hushchat-{os.getuid()}"
    return private if _fits(private) else Path("/tmp") / f"hushchat-{os.getuid()}"  # noqa: S108


def _fits(directory: Path) -> bool:
    """Whether a socket in ``directory`` fits ``sockaddr_un`` (104 bytes on macOS, 108 on
    Linux, with the terminating NUL)."""
    longest = directory / f"agent-{'0' * _HASH_CHARS}.sock"
    return len(os.fsencode(longest)) < _MAX_SOCKET_PATH_BYTES


def _profile_hash(profile_dir: Path) -> str:
    resolved = os.fsencode(Path(profile_dir).expanduser().resolve())
    return hashlib.sha256(resolved).hexdigest()[:_HASH_CHARS]


def socket_path(profile_dir: Path) -> Path:
    """The agent socket of a profile."""
    return runtime_dir() / f"agent-{_profile_hash(profile_dir)}.sock"


def lock_file_path(profile_dir: Path) -> Path:
    """The file the serving process holds an OS lock on while it serves the socket."""
    return runtime_dir() / f"agent-{_profile_hash(profile_dir)}.lock"


def private_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a safe socket directory (ours, a real directory, 0700), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o077:
        return f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def peer_uid(sock: Any, *, platform: str = sys.platform) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, or None.

    ``sock`` is a ``socket.socket`` or asyncio's ``TransportSocket``. None also on a
    platform without a known peer-credential call: callers then refuse the peer.
    """
    try:
        if platform.startswith("linux"):
            data = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, _LINUX_UCRED.size)
            _pid, uid, _gid = _LINUX_UCRED.unpack(data)
            return None if uid == _NO_UID else int(uid)
        if platform == "darwin":
            data = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE)
            _version, uid = _XUCRED.unpack_from(data)
            return None if uid in (-1, _NO_UID) else int(uid)
    except (OSError, struct.error):
        return None
    return None


def encode_frame(message: dict[str, Any]) -> bytes:
    """One frame: the length, then the message as compact UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, limit: int) -> int:
    """The body length a 4-byte header announces; ProtocolError above ``limit``."""
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"a frame of {length} bytes is over the limit of {limit}")
    return int(length)


def decode_body(body: bytes | bytearray) -> dict[str, Any]:
    """The JSON object of a frame body; ProtocolError for anything else."""
    try:
        message = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError("a frame that is not UTF-8 JSON") from error
    if not isinstance(message, dict):
        raise ProtocolError("a frame that is not a JSON object")
    return message


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def keys_to_json(keys: AgentKeys) -> dict[str, Any]:
    """The keys as JSON values (standard base64)."""
    return {
        "vault_id": _b64(keys.vault_id),
        "databases": {
            tier.value: {
                "key": _b64(keys.database_keys[tier]),
                "generation": keys.generations[tier],
            }
            for tier in STORED_TIERS
        },
    }


def keys_from_json(message: dict[str, Any]) -> AgentKeys:
    """Parse :func:`keys_to_json`'s shape; ProtocolError when anything is off."""
    try:
        vault_id = base64.b64decode(message["vault_id"], validate=True)
        databases = message["databases"]
        if not isinstance(databases, dict) or set(databases) != {t.value for t in STORED_TIERS}:
            raise ProtocolError("the databases of an answer are not the stored tiers")
        keys = {}
        generations = {}
        for tier in STORED_TIERS:
            entry = databases[tier.value]
            keys[tier] = bytearray(base64.b64decode(entry["key"], validate=True))
            generations[tier] = entry["generation"]
        return AgentKeys(vault_id, keys, generations)
    except (KeyError, TypeError, binascii.Error, ValueError) as error:
        if isinstance(error, ProtocolError):
            raise
        raise ProtocolError("an answer whose keys do not parse") from error

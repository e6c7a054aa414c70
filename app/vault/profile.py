"""Where a profile lives, which files it holds, and the one-process-at-a-time lock.

A profile directory holds ``vault.json`` (the key slots), ``standard.db`` and
``private.db`` (SQLCipher, with their ``-wal``/``-shm`` companions while open) and
``vault.lock``, an empty file that a running Hushchat holds an OS lock on (``flock`` on
POSIX, ``msvcrt.locking`` on Windows). The OS drops the lock when the process dies, so
a crash never leaves a profile stuck.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from app.vault.errors import ProfileInUseError

__all__ = [
    "LOCK_FILE_NAME",
    "PROFILE_ENV",
    "SLOT_FILE_NAME",
    "ProfileLock",
    "holds_vault",
    "resolve_profile_dir",
]

PROFILE_ENV: Final = "HUSHCHAT_PROFILE"
LOCK_FILE_NAME: Final = "vault.lock"
#: The key slots (``app.vault.slots`` reads and writes it); a profile has a vault if it exists.
SLOT_FILE_NAME: Final = "vault.json"


def resolve_profile_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """Return the profile directory: ``--profile``, else ``$HUSHCHAT_PROFILE``, else the
    platform's user data directory ``hushchat/profile``."""
    if option:
        return Path(option).expanduser()
    from_env = os.environ.get(PROFILE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs  # only for the default location: start-up time

    return platformdirs.user_data_path("hushchat", appauthor=False) / "profile"


def holds_vault(profile_dir: Path) -> bool:
    """Whether ``profile_dir`` holds a vault (else the window starts with the first run)."""
    return (profile_dir / SLOT_FILE_NAME).exists()


class ProfileLock:
    """An exclusive, non-blocking OS lock on ``vault.lock`` inside a profile directory."""

    def __init__(self, profile_dir: Path) -> None:
        self.path = profile_dir / LOCK_FILE_NAME
        self._handle: IO[bytes] | None = None

    @property
    def is_held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._handle is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`ProfileInUseError` at once."""
        if self._handle is not None:
            return
        handle = self.path.open("a+b")
        self.path.chmod(0o600)
        try:
            _lock(handle)
        except OSError:
            handle.close()
            raise ProfileInUseError(
                f"The profile {self.path.parent} is open in another Hushchat process. Close "
                "that one first (or use another --profile)."
            ) from None
        self._handle = handle

    def release(self) -> None:
        """Release the lock if held."""
        if self._handle is None:
            return
        try:
            _unlock(self._handle)
        finally:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ProfileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


if sys.platform == "win32":
    import msvcrt

    def _lock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

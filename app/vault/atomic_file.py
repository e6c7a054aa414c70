"""Crash-safe file replacement: temp file, fsync, rename, fsync of the directory.

After a crash at any instant the path holds either the complete old content or the
complete new content, never a mixture or a truncated file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically", "write_chunks_atomically"]


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename or unlink) to disk where the OS allows."""
    if os.name == "nt":  # Windows cannot open a directory for fsync; NTFS journals renames.
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either old or new content."""
    write_chunks_atomically(path, (data,), mode=mode)


def write_chunks_atomically(path: Path, chunks: Iterable[bytes], *, mode: int = 0o600) -> None:
    """``write_atomically`` for content too large to hold at once: the chunks are written
    one by one to the temp file. If the iterator raises, the temp file is removed and
    ``path`` is untouched."""
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        temp_path.chmod(mode)
        temp_path.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
        raise
    fsync_directory(directory)

"""Opening the SQLCipher databases with a raw key, and the checks around it.

Every connection is keyed with the raw 256-bit key (no passphrase KDF inside SQLCipher:
the vault already did the expensive part), then set to WAL, memory security, secure
delete and in-memory temp storage. A build without SQLCipher (empty ``cipher_version``)
is refused before any data could be written in the clear.

File modes: every database file this module creates (a new vault's databases, the
re-encrypted copy a rekey or rotation renames into place) is created empty with mode
0600 *before* SQLite opens it; SQLite then gives its ``-wal``, ``-shm`` and ``-journal``
files the database's own mode. No umask is changed (it is process-wide, and the app has
other threads).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import sqlcipher3

from app.vault.atomic_file import fsync_directory
from app.vault.errors import DatabaseDamagedError, SqlcipherMissingError

__all__ = [
    "ConnectionFactory",
    "check_integrity",
    "create_database",
    "create_private_file",
    "export_with_new_key",
    "key_opens",
    "open_database",
]

logger = logging.getLogger(__name__)

ConnectionFactory = Callable[[str], Any]

# SQLCipher's memory security (wipe-on-free and mlock of every allocation) stays OFF,
# against DESIGN §4: measured here it makes inserts 17x and full-text queries 10x
# slower (tests/benchmarks/bench_store.py), breaking the store's budgets, while it
# protects little: the decrypted messages also live in Python strings, which no
# setting can wipe, and a memory-reading attacker on an unlocked machine is outside
# the threat model (docs/security.md). SQLCipher itself has defaulted it to OFF
# since 4.5. The vault still overwrites the key buffers it owns on lock.
MEMORY_SECURITY: Final = "OFF"
_COMPANIONS: Final = ("-journal", "-wal", "-shm")
_META_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
)


def _default_factory(path: str) -> Any:
    return sqlcipher3.connect(path, check_same_thread=False, isolation_level=None)


def _key_literal(raw_key: bytes) -> str:
    if len(raw_key) != 32:
        raise ValueError("a database key is 32 bytes")
    return f"\"x'{raw_key.hex()}'\""


def _apply_key(connection: Any, raw_key: bytes) -> None:
    connection.execute(f"PRAGMA key = {_key_literal(raw_key)}")
    row = connection.execute("PRAGMA cipher_version").fetchone()
    if not row or not row[0]:
        connection.close()
        raise SqlcipherMissingError(
            "This build's SQLite has no SQLCipher encryption (cipher_version is empty), so "
            "Hushchat refuses to open the vault. Reinstall Hushchat with the pinned "
            "sqlcipher3 package."
        )


def is_open(connection: Any) -> bool:
    """Whether ``connection`` has not been closed."""
    try:
        connection.execute("SELECT 1")
    except sqlcipher3.ProgrammingError:
        return False
    return True


def _damaged(path: Path, detail: str) -> DatabaseDamagedError:
    return DatabaseDamagedError(
        f"The database {path.name} is damaged or does not match its key ({detail}). Restore "
        "the profile from a backup; nothing was overwritten."
    )


def open_database(
    path: Path, raw_key: bytes, *, factory: ConnectionFactory = _default_factory
) -> Any:
    """Open an existing SQLCipher database with its raw key and the hardening pragmas.

    Raises :class:`DatabaseDamagedError` when the key does not decrypt the first page
    (wrong key or a damaged file); nothing is written in that case.
    """
    if not path.exists():
        raise DatabaseDamagedError(
            f"The database {path.name} is missing from the profile. Restore the profile from "
            "a backup."
        )
    connection = factory(str(path))
    try:
        _apply_key(connection, raw_key)
        connection.execute(f"PRAGMA cipher_memory_security = {MEMORY_SECURITY}")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        connection.execute("PRAGMA secure_delete = ON")
        connection.execute("PRAGMA temp_store = MEMORY")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if not mode or str(mode[0]).lower() != "wal":
            raise _damaged(path, "cannot switch to WAL mode")
        connection.execute("PRAGMA foreign_keys = ON")
    except sqlcipher3.DatabaseError as error:
        connection.close()
        raise _damaged(path, type(error).__name__) from None
    except BaseException:
        connection.close()
        raise
    return connection


def key_opens(path: Path, raw_key: bytes, *, factory: ConnectionFactory = _default_factory) -> bool:
    """Return whether ``raw_key`` decrypts the database, without changing any file."""
    connection = factory(str(path))
    try:
        _apply_key(connection, raw_key)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        return False
    finally:
        connection.close()
    return True


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (owner only); FileExistsError if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    os.close(fd)


def create_database(
    path: Path, raw_key: bytes, *, factory: ConnectionFactory = _default_factory
) -> None:
    """Create a new, empty encrypted database (WAL) holding only the ``vault_meta`` table."""
    if path.exists():
        raise FileExistsError(path)
    create_private_file(path)  # SQLite accepts an empty file as a new database
    connection = factory(str(path))
    try:
        _apply_key(connection, raw_key)
        connection.execute(f"PRAGMA cipher_memory_security = {MEMORY_SECURITY}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(_META_TABLE)
        connection.execute("INSERT INTO vault_meta (name, value) VALUES ('tier', ?)", (path.stem,))
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    path.chmod(0o600)
    _fsync_file(path)


def check_integrity(
    path: Path, raw_key: bytes, *, factory: ConnectionFactory = _default_factory
) -> None:
    """Check every page's HMAC and the b-tree structure; raise :class:`DatabaseDamagedError`."""
    connection = open_database(path, raw_key, factory=factory)
    try:
        problems = [row[0] for row in connection.execute("PRAGMA cipher_integrity_check")]
        if problems:
            raise _damaged(path, f"{len(problems)} page(s) fail authentication")
        result = connection.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise _damaged(path, "the b-tree is inconsistent")
    except sqlcipher3.DatabaseError as error:
        raise _damaged(path, type(error).__name__) from None
    finally:
        connection.close()


def export_with_new_key(
    source: Path,
    old_key: bytes,
    target: Path,
    new_key: bytes,
    *,
    factory: ConnectionFactory = _default_factory,
) -> None:
    """Copy ``source`` into a new database ``target`` keyed with ``new_key``, then verify it.

    The source is checkpointed first so its WAL is empty; the target is fsynced and
    re-opened with the new key and checked before the caller may swap it in.
    """
    for stale in (target, *(target.with_name(target.name + s) for s in _COMPANIONS)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    create_private_file(target)
    try:
        _export(source, old_key, target, new_key, factory)
    except sqlcipher3.DatabaseError as error:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise DatabaseDamagedError(
            f"Re-encrypting {source.name} failed ({type(error).__name__}); the "
            "original is untouched. Check free disk space and retry."
        ) from None
    check_integrity(target, new_key, factory=factory)
    _fsync_file(target)
    fsync_directory(target.parent)


def _export(
    source: Path, old_key: bytes, target: Path, new_key: bytes, factory: ConnectionFactory
) -> None:
    connection = open_database(source, old_key, factory=factory)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        user_version = connection.execute("PRAGMA user_version").fetchone()[0]
        connection.execute(
            f"ATTACH DATABASE ? AS rekeyed KEY {_key_literal(new_key)}", (str(target),)
        )
        connection.execute("SELECT sqlcipher_export('rekeyed')")
        connection.execute(f"PRAGMA rekeyed.user_version = {int(user_version)}")
        connection.execute("DETACH DATABASE rekeyed")
        expected = _table_counts(connection)
    finally:
        connection.close()
    copy = open_database(target, new_key, factory=factory)
    try:
        copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if _table_counts(copy) != expected:
            raise DatabaseDamagedError(
                f"The re-encrypted copy of {source.name} does not match the original; the "
                "rekey was abandoned and the original is untouched."
            )
    finally:
        copy.close()


def _table_counts(connection: Any) -> dict[str, int]:
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        # Table names come from sqlite_master and are quoted: not user input.
        name: connection.execute(
            f"SELECT count(*) FROM main.{_quote(name)}"  # noqa: S608
        ).fetchone()[0]
        for name in names
    }


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'

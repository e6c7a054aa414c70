"""The SQLCipher helpers when SQLite misbehaves: each failure is reported, nothing is kept.

Real SQLCipher files, opened through the ``factory`` seam with a connection that answers
chosen statements differently (a database that refuses WAL, reports damage, fails an
export, or whose copy loses a row).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

from app.vault import database
from app.vault.errors import DatabaseDamagedError

KEY = b"\x01" * 32
NEW_KEY = b"\x02" * 32


class Rows(list[tuple[Any, ...]]):
    """What a scripted statement returns: a cursor's ``fetchone`` / ``fetchall``."""

    def fetchone(self) -> tuple[Any, ...] | None:
        return self[0] if self else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self)


class Scripted:
    """A real connection, except for the statements in ``answers`` (matched by prefix)."""

    def __init__(self, real: Any, answers: dict[str, Callable[[Any], Any]]) -> None:
        self.real = real
        self.answers = answers

    def execute(self, sql: str, *args: Any) -> Any:
        for prefix, answer in self.answers.items():
            if sql.startswith(prefix):
                return answer(self.real)
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def scripted(answers: dict[str, Callable[[Any], Any]]) -> Callable[[str], Any]:
    def factory(path: str) -> Any:
        real = sqlcipher3.connect(path, check_same_thread=False, isolation_level=None)
        return Scripted(real, answers)

    return factory


def fail(real: Any) -> Any:
    raise sqlcipher3.OperationalError("disk I/O error")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "standard.db"
    database.create_database(path, KEY)
    connection = database.open_database(path, KEY)
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.executemany("INSERT INTO notes VALUES (?)", [("a",), ("b",), ("c",)])
    connection.close()
    return path


def test_a_key_of_the_wrong_size_is_a_programming_error(db: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        database.open_database(db, KEY[:16])


def test_a_missing_database_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatabaseDamagedError, match=r"standard\.db is missing from the profile"):
        database.open_database(tmp_path / "standard.db", KEY)


def test_create_never_overwrites(db: Path) -> None:
    before = db.read_bytes()
    with pytest.raises(FileExistsError):
        database.create_database(db, NEW_KEY)
    assert db.read_bytes() == before


def test_a_database_that_refuses_wal_is_not_used(db: Path) -> None:
    factory = scripted({"PRAGMA journal_mode": lambda real: Rows([("delete",)])})
    with pytest.raises(DatabaseDamagedError, match="cannot switch to WAL mode"):
        database.open_database(db, KEY, factory=factory)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            {"PRAGMA cipher_integrity_check": lambda real: Rows([("page 3",), ("page 9",)])},
            "2 page",
        ),
        ({"PRAGMA integrity_check": lambda real: Rows([("row 4 missing",)])}, "b-tree"),
        ({"PRAGMA integrity_check": fail}, "OperationalError"),
    ],
)
def test_integrity_problems_are_reported(
    db: Path, answers: dict[str, Callable[[Any], Any]], message: str
) -> None:
    database.check_integrity(db, KEY)  # the real file is fine
    with pytest.raises(DatabaseDamagedError, match=message):
        database.check_integrity(db, KEY, factory=scripted(answers))


def test_an_export_that_fails_leaves_no_target(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "standard.db.rekey"
    target.write_bytes(b"left over from an earlier attempt")
    factory = scripted({"SELECT sqlcipher_export": fail})
    with pytest.raises(DatabaseDamagedError, match=r"Re-encrypting standard\.db failed"):
        database.export_with_new_key(db, KEY, target, NEW_KEY, factory=factory)
    assert not target.exists()
    assert database.key_opens(db, KEY)


def test_a_copy_that_lost_rows_is_refused(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "standard.db.rekey"

    def checkpoint_then_lose_a_row(real: Any) -> Any:
        # Only the copy is checkpointed after the export; the source never loses a row.
        if real.execute("PRAGMA database_list").fetchone()[2] == str(target):
            real.execute("DELETE FROM notes WHERE rowid = 1")
        return real.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    factory = scripted({"PRAGMA wal_checkpoint": checkpoint_then_lose_a_row})
    with pytest.raises(DatabaseDamagedError, match="does not match the original"):
        database.export_with_new_key(db, KEY, target, NEW_KEY, factory=factory)
    assert database.key_opens(db, KEY)
    connection = database.open_database(db, KEY)
    assert connection.execute("SELECT count(*) FROM notes").fetchone() == (3,)
    connection.close()


def test_a_good_export_opens_with_the_new_key_only(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "standard.db.rekey"
    database.export_with_new_key(db, KEY, target, NEW_KEY)
    assert database.key_opens(target, NEW_KEY)
    assert not database.key_opens(target, KEY)

"""Attachments in the chat databases (issue 14, storage): chunked content-addressed blobs,
dedupe, limits, deletion and garbage collection, migration, encryption at rest,
Ephemeral in memory only, and a kill -9 while a 50 MB file is being stored."""

from __future__ import annotations

import hashlib
import io
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

from app.errors import UsageError
from app.store import blobs
from app.store.blobs import CHUNK_SIZE, AttachmentRefusedError
from app.store.chats import ChatNotFoundError, ChatStore, StorageError
from app.store.library import Library
from app.store.migrations import LATEST, current_version, migrate
from app.store.models import Tier
from app.vault.database import create_database, open_database
from tests.unit.store.support import Clock

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "store"
REPO = Path(__file__).resolve().parents[3]
LIMIT = 10 * CHUNK_SIZE
BIG = 50 * 1024 * 1024


@pytest.fixture
def store(library: Library) -> ChatStore:
    return library.store(Tier.STANDARD)


def message_in(store: ChatStore, chat_id: str | None = None) -> str:
    chat_id = chat_id or store.create_chat().id
    return store.add_message(chat_id, "user", "see attached", parent_id=None).id


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def counts(conn: Any) -> tuple[int, int, int]:
    """(attachments, blobs, chunks) in the database."""
    return tuple(  # type: ignore[return-value]
        int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        for table in ("attachments", "blobs", "blob_chunks")
    )


def content(store: ChatStore, attachment_id: str) -> bytes:
    return b"".join(store.read_attachment(attachment_id))


# --- round trip ------------------------------------------------------------------------------


def test_a_multi_chunk_file_round_trips_in_chunks(store: ChatStore, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(2 * CHUNK_SIZE + 123)
    message_id = message_in(store)
    attachment = store.add_attachment(
        message_id, write(tmp_path / "report.pdf", data), max_size=LIMIT
    )
    assert attachment.name == "report.pdf" and attachment.media_type == "application/pdf"
    assert attachment.size == len(data)
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    chunks = list(store.read_attachment(attachment.id))
    assert [len(c) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, 123]
    assert b"".join(chunks) == data
    assert counts(store._conn) == (1, 1, 3)

    (tmp_path / "out").mkdir()
    saved = store.save_attachment(attachment.id, tmp_path / "out" / "copy.pdf")
    assert saved.read_bytes() == data
    assert sorted(p.name for p in saved.parent.iterdir()) == ["copy.pdf"]  # no temp file left


def test_attachments_of_a_message_and_of_a_chat_in_order(store: ChatStore) -> None:
    chat_id = store.create_chat().id
    first, second = message_in(store, chat_id), message_in(store, chat_id)
    a = store.add_attachment(first, io.BytesIO(b"one"), name="a.txt", max_size=LIMIT)
    b = store.add_attachment(first, io.BytesIO(b"two"), name="dir/b.png", max_size=LIMIT)
    c = store.add_attachment(second, io.BytesIO(b"three"), name="", max_size=LIMIT)
    assert [(x.name, x.position) for x in store.attachments(first)] == [("a.txt", 0), ("b.png", 1)]
    assert store.attachments(first)[1].media_type == "image/png"
    assert (c.name, c.media_type) == ("attachment", "application/octet-stream")
    assert [x.id for x in store.chat_attachments(chat_id)] == [a.id, b.id, c.id]
    assert store.attachment(b.id) == b and b.chat_id == chat_id and b.message_id == first
    with pytest.raises(ChatNotFoundError):
        store.attachment("nope")
    with pytest.raises(ChatNotFoundError):
        store.add_attachment("no-such-message", io.BytesIO(b"x"), max_size=LIMIT)


# --- dedupe ----------------------------------------------------------------------------------


def test_the_same_content_is_stored_once_and_not_written_again(
    store: ChatStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(2).randbytes(CHUNK_SIZE + 5)
    path = write(tmp_path / "photo.jpg", data)
    first = store.add_attachment(message_in(store), path, max_size=LIMIT)

    def must_not_write(*args: Any, **kwargs: Any) -> tuple[str, int]:
        raise AssertionError("a stored blob was written again")

    with monkeypatch.context() as patch:
        patch.setattr(blobs, "store_blob", must_not_write)
        second = store.add_attachment(message_in(store), path, name="again.jpg", max_size=LIMIT)
    assert second.sha256 == first.sha256 and second.id != first.id
    assert counts(store._conn) == (2, 1, 2)
    assert content(store, second.id) == data


class Pipe(io.RawIOBase):
    """A stream that cannot seek (like stdin): hashed only as it is written."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def test_an_unseekable_duplicate_is_dropped_before_commit(store: ChatStore) -> None:
    data = random.Random(3).randbytes(CHUNK_SIZE * 2)
    store.add_attachment(message_in(store), io.BytesIO(data), name="a.bin", max_size=LIMIT)
    again = store.add_attachment(message_in(store), Pipe(data), name="b.bin", max_size=LIMIT)  # type: ignore[arg-type]
    assert counts(store._conn) == (2, 1, 2)
    assert content(store, again.id) == data
    other = store.add_attachment(message_in(store), Pipe(b"new"), name="c.bin", max_size=LIMIT)  # type: ignore[arg-type]
    assert content(store, other.id) == b"new"
    assert counts(store._conn) == (3, 2, 3)
    pending = "SELECT COUNT(*) FROM blobs WHERE sha256 LIKE 'pending:%'"
    assert store._conn.execute(pending).fetchone()[0] == 0


# --- limits and refusals ---------------------------------------------------------------------


def test_a_file_over_the_limit_is_refused_naming_the_limit_and_the_setting(
    store: ChatStore, tmp_path: Path
) -> None:
    message_id = message_in(store)
    path = write(tmp_path / "huge.bin", b"x" * (LIMIT + 1))
    with pytest.raises(AttachmentRefusedError) as refused:
        store.add_attachment(message_id, path, max_size=LIMIT)
    text = str(refused.value)
    assert "huge.bin is 10.0 MB" in text and "limited to 10.0 MB" in text
    assert blobs.SIZE_SETTING in text and refused.value.exit_code == 2
    # A stream whose size is only found by reading it: refused part way, nothing kept.
    with pytest.raises(AttachmentRefusedError, match=r"larger than that.*limited to 10\.0 MB"):
        store.add_attachment(message_id, Pipe(b"y" * (LIMIT + 1)), name="s", max_size=LIMIT)  # type: ignore[arg-type]
    assert counts(store._conn) == (0, 0, 0)
    assert store.attachments(message_id) == []


def test_empty_and_unreadable_files_are_refused_and_nothing_is_written(
    store: ChatStore, tmp_path: Path
) -> None:
    message_id = message_in(store)
    with pytest.raises(AttachmentRefusedError, match=r"empty\.txt is empty \(0 bytes\)"):
        store.add_attachment(message_id, write(tmp_path / "empty.txt", b""), max_size=LIMIT)
    with pytest.raises(AttachmentRefusedError, match="is empty"):
        store.add_attachment(message_id, Pipe(b""), name="p", max_size=LIMIT)  # type: ignore[arg-type]
    with pytest.raises(AttachmentRefusedError, match=r"gone\.txt could not be opened"):
        store.add_attachment(message_id, tmp_path / "gone.txt", max_size=LIMIT)
    assert counts(store._conn) == (0, 0, 0)


def test_a_refusal_inside_the_callers_transaction_undoes_only_the_attachment(
    store: ChatStore,
) -> None:
    chat_id = store.create_chat().id
    with store.transaction():
        message_id = message_in(store, chat_id)
        with pytest.raises(AttachmentRefusedError):
            store.add_attachment(message_id, Pipe(b"z" * (LIMIT + 1)), name="z", max_size=LIMIT)  # type: ignore[arg-type]
        store.add_attachment(message_id, io.BytesIO(b"fine"), name="ok.txt", max_size=LIMIT)
    assert store.count_messages(chat_id) == 1
    assert counts(store._conn) == (1, 1, 1)


# --- deletion and garbage collection ---------------------------------------------------------


def test_deleting_a_message_collects_its_blobs_but_keeps_shared_ones(store: ChatStore) -> None:
    chat_id = store.create_chat().id
    first, second = message_in(store, chat_id), message_in(store, chat_id)
    shared = random.Random(4).randbytes(CHUNK_SIZE + 1)
    store.add_attachment(first, io.BytesIO(shared), name="shared", max_size=LIMIT)
    store.add_attachment(first, io.BytesIO(b"only mine"), name="mine", max_size=LIMIT)
    kept = store.add_attachment(second, io.BytesIO(shared), name="shared", max_size=LIMIT)
    assert counts(store._conn) == (3, 2, 3)
    store.delete_message(first)
    assert counts(store._conn) == (1, 1, 2)
    assert content(store, kept.id) == shared
    store.delete_message(second)
    assert counts(store._conn) == (0, 0, 0)


def test_reset_collects_a_chats_blobs_and_keeps_another_chats(store: ChatStore) -> None:
    chat, other = store.create_chat().id, store.create_chat().id
    data = b"common content"
    store.add_attachment(message_in(store, chat), io.BytesIO(data), name="a", max_size=LIMIT)
    store.add_attachment(message_in(store, chat), io.BytesIO(b"solo"), name="b", max_size=LIMIT)
    survivor = store.add_attachment(
        message_in(store, other), io.BytesIO(data), name="c", max_size=LIMIT
    )
    store.reset(chat)
    assert store.chat_attachments(chat) == []
    assert counts(store._conn) == (1, 1, 1)
    assert content(store, survivor.id) == data


def test_soft_deleted_chats_keep_attachments_until_purged(library: Library, clock: Clock) -> None:
    store = library.store(Tier.STANDARD)
    chat_id = store.create_chat().id
    store.add_attachment(message_in(store, chat_id), io.BytesIO(b"keep"), name="k", max_size=LIMIT)
    library.delete(chat_id)
    assert counts(store._conn) == (1, 1, 1)
    library.undo_delete(chat_id)
    assert len(store.chat_attachments(chat_id)) == 1
    library.delete(chat_id)
    clock.now += 3600
    assert library.purge_deleted(older_than=60) == [chat_id]
    assert counts(store._conn) == (0, 0, 0)


def test_a_move_between_tiers_carries_attachments(library: Library) -> None:
    standard, private = library.store(Tier.STANDARD), library.store(Tier.PRIVATE)
    chat_id = standard.create_chat().id
    data = random.Random(5).randbytes(CHUNK_SIZE * 2 + 7)
    before = standard.add_attachment(
        message_in(standard, chat_id), io.BytesIO(data), name="scan.png", max_size=LIMIT
    )
    library.move(chat_id, Tier.PRIVATE)
    (after,) = private.chat_attachments(chat_id)
    assert after == before
    assert content(private, after.id) == data
    assert counts(standard._conn) == (0, 0, 0)
    assert counts(private._conn) == (1, 1, 3)


def test_save_refuses_damaged_content_and_leaves_the_target_alone(
    store: ChatStore, tmp_path: Path
) -> None:
    attachment = store.add_attachment(
        message_in(store), io.BytesIO(b"original bytes"), name="a.txt", max_size=LIMIT
    )
    target = write(tmp_path / "a.txt", b"what was there")
    store._conn.execute("UPDATE blob_chunks SET data = ?", (b"tampered bytes",))
    with pytest.raises(StorageError, match="missing or damaged"):
        store.save_attachment(attachment.id, target)
    assert target.read_bytes() == b"what was there"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


class FailingDisk(Pipe):
    """A stream whose second read fails, like a file on a disk that went away."""

    def __init__(self) -> None:
        super().__init__(b"a" * (3 * CHUNK_SIZE))
        self._reads = 0

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads == 2:
            raise OSError(5, "Input/output error")
        return super().read(size)


def test_a_read_error_half_way_refuses_the_file_and_keeps_nothing(store: ChatStore) -> None:
    message_id = message_in(store)
    with pytest.raises(AttachmentRefusedError, match=r"disk\.bin could not be read \(Input/output"):
        store.add_attachment(message_id, FailingDisk(), name="disk.bin", max_size=LIMIT)  # type: ignore[arg-type]
    assert counts(store._conn) == (0, 0, 0)


def test_saving_to_a_missing_folder_says_so(store: ChatStore, tmp_path: Path) -> None:
    attachment = store.add_attachment(
        message_in(store), io.BytesIO(b"x"), name="x.txt", max_size=LIMIT
    )
    with pytest.raises(UsageError, match=r"x\.txt could not be saved to .*choose another folder"):
        store.save_attachment(attachment.id, tmp_path / "no" / "such" / "x.txt")


def test_missing_chunks_are_reported_as_damage(store: ChatStore) -> None:
    attachment = store.add_attachment(
        message_in(store), io.BytesIO(b"y" * (CHUNK_SIZE + 1)), name="y", max_size=LIMIT
    )
    store._conn.execute("DELETE FROM blob_chunks WHERE idx = 1")
    with pytest.raises(StorageError, match="y is missing or damaged"):
        content(store, attachment.id)
    store._conn.execute("DELETE FROM blob_chunks")
    store._conn.execute("PRAGMA foreign_keys = OFF")
    store._conn.execute("DELETE FROM blobs")
    with pytest.raises(StorageError, match="y is missing or damaged"):
        store.read_attachment(attachment.id)


@pytest.mark.parametrize(
    ("size", "text"),
    [(1, "1 byte"), (512, "512 bytes"), (1536, "1.5 KB"), (50 * 2**20, "50.0 MB"),
     (3 * 2**30, "3.0 GB")],
)  # fmt: skip
def test_sizes_read_as_people_write_them(size: int, text: str) -> None:
    assert blobs.format_size(size) == text


# --- migration -------------------------------------------------------------------------------


def test_a_version_5_database_upgrades_and_takes_attachments() -> None:
    conn = sqlcipher3.connect(":memory:", isolation_level=None)
    conn.executescript((FIXTURES / "schema_v5.sql").read_text(encoding="utf-8"))
    assert current_version(conn) == 5
    migrate(conn)
    assert current_version(conn) == LATEST
    store = ChatStore(conn, Tier.STANDARD)
    assert store.chat("c1").params.temperature == 0.5
    attachment = store.add_attachment("m2", io.BytesIO(b"fixture file"), name="f", max_size=LIMIT)
    assert store.chat_attachments("c1") == [attachment]
    store.delete_message("m2")
    assert counts(conn) == (0, 0, 0)
    assert store.integrity_problems() == []


# --- at rest ---------------------------------------------------------------------------------

SENTINEL = b"quokkasentinel-7f3a"


def sentinel_file(path: Path) -> Path:
    """Two chunks and a bit of noise with the sentinel in many places (some straddle a
    chunk boundary, most lie whole in a database page)."""
    rng = random.Random(6)
    data = bytearray(rng.randbytes(2 * CHUNK_SIZE + 4096))
    for offset in [*range(1000, len(data) - 100, 40_000), CHUNK_SIZE - 7]:
        data[offset : offset + len(SENTINEL)] = SENTINEL
    return write(path, bytes(data))


def database_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_an_attachment_in_an_encrypted_store_is_not_in_plaintext_on_disk(tmp_path: Path) -> None:
    source = sentinel_file(tmp_path / "secret.txt")
    for name, keyed in (("plain", False), ("encrypted", True)):
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "standard.db"
        if keyed:
            key = secrets.token_bytes(32)
            create_database(path, key)
            conn = open_database(path, key)
        else:  # the control: the same store unencrypted shows the sentinel, so the check works
            conn = sqlcipher3.connect(str(path), isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
        store = ChatStore(conn, Tier.STANDARD)
        attachment = store.add_attachment(message_in(store), source, max_size=LIMIT)
        assert SENTINEL in content(store, attachment.id)
        while_open = database_files(folder)
        assert any(n.endswith("-wal") for n in while_open)
        conn.close()
        after_close = database_files(folder)
        found = [
            n for files in (while_open, after_close) for n, b in files.items() if SENTINEL in b
        ]
        if keyed:
            assert found == []
        else:
            assert found


def test_an_ephemeral_attachment_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = {name: tmp_path / name for name in ("home", "tmp", "cwd")}
    for folder in watched.values():
        folder.mkdir()
    monkeypatch.setenv("HOME", str(watched["home"]))
    for variable in ("TMPDIR", "TMP", "TEMP", "SQLITE_TMPDIR"):
        monkeypatch.setenv(variable, str(watched["tmp"]))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.chdir(watched["cwd"])
    library = Library()
    try:
        store = library.store(Tier.EPHEMERAL)
        chat_id = store.create_chat().id
        data = random.Random(7).randbytes(3 * CHUNK_SIZE)
        attachment = store.add_attachment(
            message_in(store, chat_id), io.BytesIO(data), name="e.bin", max_size=LIMIT
        )
        assert content(store, attachment.id) == data
        store.reset(chat_id)
        assert counts(store._conn) == (0, 0, 0)
    finally:
        library.close()
    left = [p for folder in watched.values() for p in folder.rglob("*")]
    assert left == []


# --- kill -9 while storing a 50 MB file ------------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    rng = random.Random(8)
    with path.open("wb") as handle:
        for _ in range(BIG // CHUNK_SIZE):
            block = rng.randbytes(CHUNK_SIZE)
            digest.update(block)
            handle.write(block)
    return path, digest.hexdigest()


def start_worker(mode: str, database: Path, key: bytes, source: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.store.attachment_worker", mode, str(database),
         key.hex(), str(source)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line == "READY", process.stderr.read() if process.stderr else line
    return process


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def whole_or_nothing(database: Path, key: bytes, sha256: str) -> bool:
    """Open the database after the crash; True when the message and its attachment are
    there whole, False when there is no trace of either (anything else fails)."""
    conn = open_database(database, key)
    try:
        store = ChatStore(conn, Tier.STANDARD)
        assert store.integrity_problems() == []
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        (chat,) = store.list_chats()
        messages = store.count_messages(chat.id)
        if messages == 0:
            assert counts(conn) == (0, 0, 0)  # no row, no orphan chunk
            return False
        (attachment,) = store.chat_attachments(chat.id)
        assert (attachment.size, attachment.sha256) == (BIG, sha256)
        assert counts(conn) == (1, 1, BIG // CHUNK_SIZE)
        digest = hashlib.sha256()
        for chunk in store.read_attachment(attachment.id):
            digest.update(chunk)
        assert digest.hexdigest() == sha256
        return True
    finally:
        conn.close()


def new_database(folder: Path) -> tuple[Path, bytes]:
    key = secrets.token_bytes(32)
    path = folder / "standard.db"
    create_database(path, key)
    return path, key


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_9_midway_through_a_50_mb_attachment_leaves_no_trace(
    tmp_path: Path, big_file: tuple[Path, str]
) -> None:
    source, sha256 = big_file
    database, key = new_database(tmp_path)
    process = start_worker("stall", database, key, source)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "MIDWAY"
    # Ten chunks are in the open transaction, some already spilled to the WAL.
    wal = database.with_name(database.name + "-wal")
    assert wal.stat().st_size > CHUNK_SIZE
    kill(process)
    assert whole_or_nothing(database, key, sha256) is False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_9_after_the_commit_or_at_moments_near_it_leaves_whole_or_nothing(
    tmp_path: Path, big_file: tuple[Path, str]
) -> None:
    source, sha256 = big_file
    # Killed right after COMMITTED (before the connection closes): the attachment is whole.
    database, key = new_database(tmp_path)
    process = start_worker("run", database, key, source)
    assert process.stdout is not None
    started = time.perf_counter()
    lines = [process.stdout.readline().strip() for _ in range(2)]
    duration = time.perf_counter() - started
    assert lines == ["MIDWAY", "COMMITTED"]
    kill(process)
    assert whole_or_nothing(database, key, sha256) is True
    # Killed at moments spread up to the commit: each run is one outcome or the other.
    for run, share in enumerate((0.6, 0.8), start=1):
        folder = tmp_path / str(run)
        folder.mkdir()
        database, key = new_database(folder)
        process = start_worker("run", database, key, source)
        time.sleep(duration * share)
        kill(process)
        whole_or_nothing(database, key, sha256)


@pytest.mark.slow
def test_storing_a_50_mb_file_peaks_well_under_twice_its_size(
    tmp_path: Path, big_file: tuple[Path, str]
) -> None:
    source, sha256 = big_file
    database, key = new_database(tmp_path)
    process = start_worker("measure", database, key, source)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    _, _seconds, peak = stdout.split()
    assert int(peak) < BIG, f"peak {int(peak) / 2**20:.1f} MB above baseline"
    assert whole_or_nothing(database, key, sha256) is True

"""Database engine, sessions and schema migrations (SQLAlchemy 2 async + Alembic).

SQLite (default) runs in WAL mode with foreign keys on. Transactions are begun explicitly:
``BEGIN IMMEDIATE`` for writes (the write lock is taken at the start, so a transaction that
read ``accounts.last_seq`` cannot lose a race to another process), plain ``BEGIN`` for
reads. Because SQLite has one writer, write transactions in this process also take an
asyncio lock (:meth:`Database.write`, :meth:`Database.run`) instead of spinning on
SQLITE_BUSY; several processes on one file wait for each other with ``busy_timeout``.
PostgreSQL needs no lock: pushes serialise per account on the account row
(``SELECT … FOR UPDATE``), which also keeps the per-user sequence in commit order, so a
cursor never skips a record.

The request hot path (token lookup, push, pull) runs through :meth:`Database.run`: a plain
function over a synchronous :class:`~sqlalchemy.Connection`, executed as one transaction.
On SQLite it runs on a small thread pool with the stdlib ``sqlite3`` driver — one thread
hop per transaction instead of several per statement through aiosqlite; on PostgreSQL it
runs in one greenlet (``greenlet_spawn``, as ``AsyncConnection.run_sync`` does) over the
async engine's synchronous engine: the connection is checked out, used and returned inside
that greenlet, where ``AsyncConnection`` needed three (connect, run, close) and cost
~45 µs more per transaction. A PostgreSQL
read (:meth:`Database.run`, :meth:`Database.run_short`) runs in autocommit, without
``BEGIN`` and ``COMMIT``: two round trips less per pull, and the same answers, since under
PostgreSQL's default ``READ COMMITTED`` every statement of a transaction takes its own
snapshot anyway (the reads of a request never relied on one snapshot; pushes, which
do, keep their transaction and ``FOR UPDATE``).

Short transactions (:meth:`Database.run_short`, :meth:`Database.run_write_short`: the fast
lane's push of at most ``max_unauthenticated_body_bytes`` and its pull of a default-sized
page) on a SQLite file served by one process with ``synchronous=NORMAL`` (no fsync in a
commit) run on the event loop's own thread instead:
they take well under a millisecond of SQLite, and the hop to a thread cost more than that
(futures, wake-ups and the GIL passed back and forth: at 100 devices the writer thread's
queue put the push p99 at 130-190 ms, inline it is ~20 ms; ``tests/benchmarks/
bench_sync.py``). Inline writes take the same asyncio write lock as :meth:`Database.write`,
so they never wait on a SQLite lock held by this process's aiosqlite connection (which would
need the blocked loop to commit). Those connections do not checkpoint the WAL on commit
(``wal_autocheckpoint=0``): a checkpoint copies and syncs pages for tens of milliseconds,
which would stall the loop; :meth:`Database.checkpoint_periodically` runs passive
checkpoints on a thread instead (they never block readers or writers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import greenlet_spawn

from sync_server.errors import DatabaseNotMigratedError
from sync_server.settings import Settings


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration from the ``alembic.ini`` shipped inside the package."""
    ini = Path(str(resources.files("sync_server") / "alembic.ini"))
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent / "migrations"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Execution option naming the statement that begins a transaction on SQLite.
SQLITE_BEGIN = "hushchat_sqlite_begin"
#: SQLite page cache per connection (KiB, as a negative ``cache_size``) and memory map.
SQLITE_CACHE_KIB = 16384
SQLITE_MMAP_BYTES = 256 * 1024 * 1024
#: PostgreSQL's ``plan_cache_mode`` for the server's connections (see :func:`create_engine`).
GENERIC_PLANS = "force_generic_plan"
#: Seconds between two background WAL checkpoints when requests run on the event loop.
SQLITE_CHECKPOINT_SECONDS = 1.0
#: The WAL file is truncated back to this size after a checkpoint lets it restart.
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine for the configured database."""
    url = make_url(settings.effective_database_url)
    kwargs: dict[str, Any]
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"pool_size": settings.db_pool_size, "max_overflow": 0}
    else:
        # No pre-ping round trip per checkout (it halves request throughput); connections
        # are recycled instead, and a connection broken by a database restart fails one
        # request, which the client retries. Up to 2 x DB_POOL_SIZE connections, all kept
        # once opened: an "overflow" connection closed after each burst was opened again
        # by the next one (a SCRAM authentication each), which cost a 100-device burst a
        # quarter of its pull throughput (docs/server.md, "Performance"). Last in, first
        # out: the connection (and PostgreSQL backend process) used last is used next,
        # warm in the CPU's caches, instead of every pooled connection in turn (pulls at
        # 10 and 100 clients +8-15 %).
        kwargs = {
            "pool_size": 2 * settings.db_pool_size,
            "max_overflow": 0,
            "pool_recycle": 1800,
            "pool_use_lifo": True,
        }
        if url.get_driver_name() == "asyncpg":
            # Generic plans from a prepared statement's first run: PostgreSQL otherwise
            # plans it anew for its first five runs on every connection (a pull's page
            # query took 2-3 ms instead of 0.2 ms for the first pages after each start or
            # recycle). The statements are shaped so that the generic plan uses the right
            # index without statistics (tests/integration/sync_server/test_query_plans.py).
            kwargs["connect_args"] = {"server_settings": {"plan_cache_mode": GENERIC_PLANS}}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _sqlite_events(engine.sync_engine, settings.sqlite_synchronous)
    return engine


def _sqlite_file_url(settings: Settings) -> URL | None:
    """The stdlib-driver URL of a file-backed SQLite database, else ``None``."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:") or url.query:
        return None
    return url.set(drivername="sqlite+pysqlite")


def create_sqlite_sync_engine(
    url: URL, pool_size: int, synchronous: str, *, autocheckpoint: bool = True
) -> Engine:
    """Synchronous engine (stdlib ``sqlite3``) on the same file, for :meth:`Database.run`.

    ``autocheckpoint=False``: its connections never checkpoint the WAL on commit (someone
    must call :meth:`Database.checkpoint`).
    """
    engine = create_sync_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    _sqlite_events(engine, synchronous, autocheckpoint=autocheckpoint)
    return engine


def _sqlite_events(engine: Engine, synchronous: str, *, autocheckpoint: bool = True) -> None:
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"unsupported SQLite synchronous mode {synchronous!r}")
    pragmas = functools.partial(
        _sqlite_pragmas, synchronous=synchronous, autocheckpoint=autocheckpoint
    )
    event.listen(engine, "connect", pragmas)
    event.listen(engine, "begin", _sqlite_begin)


def _sqlite_pragmas(
    dbapi_connection: Any, _record: Any, *, synchronous: str, autocheckpoint: bool = True
) -> None:
    # The driver must not open transactions by itself (it would BEGIN DEFERRED just before
    # the first write); _sqlite_begin emits BEGIN / BEGIN IMMEDIATE instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is durable against process crashes; an OS crash or
        # power loss can lose the last commits (docs/server.md, "Performance"). FULL syncs
        # the WAL on every commit.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    options = connection.get_execution_options()
    if options.get(_RAW_BEGUN):
        raw = connection.connection.driver_connection
        if raw is not None and raw.in_transaction:
            return  # the inline connection, begun on the driver already (_inline_transaction)
    connection.exec_driver_sql(options.get(SQLITE_BEGIN, "BEGIN"))


#: Execution option of the inline connection (:func:`_inline_transaction`).
_RAW_BEGUN = "hushchat_sqlite_raw_begun"


def _inline_transaction(
    connection: Connection, fn: Callable[..., T], args: tuple[Any, ...], begin: str
) -> T:
    """:func:`_transaction` on the inline connection, begun and ended on ``sqlite3`` itself.

    ``BEGIN`` and ``COMMIT`` through SQLAlchemy's transaction objects and ``begin`` event
    cost more than the statements of a short transaction (:mod:`sync_server.prepared`).
    A statement ``fn`` runs through SQLAlchemy still works: its autobegin finds the
    transaction open (``_sqlite_begin``), and it is then ended through SQLAlchemy.
    """
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute(begin)
    try:
        result = fn(connection, *args)
        if connection.in_transaction():
            connection.commit()
        else:
            raw.commit()
    except BaseException:
        if connection.in_transaction():
            connection.rollback()
        if raw.in_transaction:
            raw.rollback()
        raise
    return result


def _pg_read(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``fn(connection, *args)`` on a PostgreSQL connection in autocommit (in a greenlet)."""
    with engine.connect() as connection:
        return fn(connection.execution_options(isolation_level="AUTOCOMMIT"), *args)


def _in_pg_transaction(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``fn(connection, *args)`` in one PostgreSQL transaction (in a greenlet)."""
    with engine.connect() as connection, connection.begin():
        return fn(connection, *args)


def _in_transaction(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...], begin: str) -> T:
    with engine.connect() as connection:
        return _transaction(connection, fn, args, begin)


def _transaction(
    connection: Connection, fn: Callable[..., T], args: tuple[Any, ...], begin: str
) -> T:
    """``fn(connection, *args)`` in one transaction begun with ``begin`` on ``connection``."""
    connection = connection.execution_options(**{SQLITE_BEGIN: begin})
    with connection.begin():
        return fn(connection, *args)


class Database:
    """Engine, session factory and the SQLite write lock, owned by the app."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.is_sqlite = settings.is_sqlite
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            self.engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            if self.is_sqlite
            else self.engine,
            expire_on_commit=False,
        )
        self._write_lock = asyncio.Lock()
        self._sync_engine: Engine | None = None
        sqlite_file = _sqlite_file_url(settings)
        #: Short transactions run on the event loop's thread (module docstring).
        self.inline = (
            sqlite_file is not None
            and settings.workers == 1
            and settings.sqlite_synchronous == "NORMAL"  # FULL: an fsync in every commit
        )
        #: The connection of the inline transactions (made on first use; only the event
        #: loop's thread uses it, one transaction at a time, so it is never checked out
        #: and back into the pool per transaction).
        self._inline_connection: Connection | None = None
        if sqlite_file is not None:
            self._sync_engine = create_sqlite_sync_engine(
                sqlite_file,
                # The readers, the writer thread, and the inline connection.
                settings.db_pool_size + 1 + int(self.inline),
                settings.sqlite_synchronous,
                autocheckpoint=not self.inline,
            )
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hushchat-db-write")
        self._readers = ThreadPoolExecutor(
            max_workers=settings.db_pool_size, thread_name_prefix="hushchat-db-read"
        )

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args)`` in one read transaction; return its result."""
        return await self._run(functools.partial(fn, **kwargs), args, write=False)

    async def run_write(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args)`` in one write transaction (committed unless it raises)."""
        return await self._run(functools.partial(fn, **kwargs), args, write=True)

    async def run_short(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`run` for a transaction known to be short: on the loop's thread when
        :attr:`inline` (module docstring), else exactly :meth:`run`."""
        if self.inline:
            call = functools.partial(fn, **kwargs)
            return _inline_transaction(self._inline(), call, args, "BEGIN")
        return await self._run(functools.partial(fn, **kwargs), args, write=False)

    async def run_write_short(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`run_write` for a transaction known to be short (see :meth:`run_short`)."""
        if self.inline:
            async with self._write_lock:
                call = functools.partial(fn, **kwargs)
                return _inline_transaction(self._inline(), call, args, "BEGIN IMMEDIATE")
        return await self._run(functools.partial(fn, **kwargs), args, write=True)

    def _inline(self) -> Connection:
        """The connection of the inline transactions (see :attr:`_inline_connection`)."""
        connection = self._inline_connection
        if connection is None or connection.closed:
            assert self._sync_engine is not None
            connection = self._sync_engine.connect().execution_options(**{_RAW_BEGUN: True})
            self._inline_connection = connection
        return connection

    def checkpoint(self) -> tuple[int, int, int]:
        """One passive WAL checkpoint (blocking: call it on a thread).

        Returns SQLite's ``(busy, wal frames, frames checkpointed)``. Passive: copies what
        it can without waiting for readers or writers, so requests never wait for it.
        """
        assert self._sync_engine is not None, "checkpoints are for a SQLite file"
        with self._sync_engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                busy, frames, done = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                cursor.close()
        return int(busy), int(frames), int(done)

    async def checkpoint_periodically(self, interval: float = SQLITE_CHECKPOINT_SECONDS) -> None:
        """Checkpoint the WAL every ``interval`` seconds on a thread, until cancelled.

        Needed when :attr:`inline` (the request connections do not checkpoint); does nothing
        otherwise. A failed checkpoint is logged and tried again next time.
        """
        if not self.inline:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(self._readers, self.checkpoint)
            except OperationalError:
                log.exception("sqlite_checkpoint_failed")

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], *, write: bool) -> T:
        if self._sync_engine is not None:
            # SQLite file: the whole transaction in one thread hop. Writes go to the single
            # writer thread, which takes them one after the other without waiting for the
            # event loop in between; reads run on the reader threads, in parallel.
            begin = "BEGIN IMMEDIATE" if write else "BEGIN"
            call = functools.partial(_in_transaction, self._sync_engine, fn, args, begin)
            executor = self._writer if write else self._readers
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        if not self.is_sqlite:
            # PostgreSQL: reads without BEGIN / COMMIT round trips (module docstring).
            run = _in_pg_transaction if write else _pg_read
            return await greenlet_spawn(run, self.engine.sync_engine, fn, args)
        # SQLite through aiosqlite (an in-memory database).
        lock = self._write_lock if write else contextlib.nullcontext()
        async with lock, self.engine.connect() as connection:
            if write:
                connection = await connection.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            async with connection.begin():
                return await connection.run_sync(fn, *args)

    async def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade)

    async def ensure_migrated(self) -> None:
        """Raise :class:`DatabaseNotMigratedError` unless the schema is at head."""
        async with self.engine.connect() as connection:
            current = await connection.run_sync(_current_revision)
        head = head_revision()
        if current != head:
            raise DatabaseNotMigratedError(
                f"Database schema is at {current or 'nothing (empty database)'} but this "
                f"server needs {head}: run `hushchat-sync migrate` (or set "
                "HUSHCHAT_SYNC_AUTO_MIGRATE=true)."
            )

    async def ping(self) -> None:
        """Round-trip to the database (readiness)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (no lock)."""
        async with self.sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction, committed on success, rolled back on error."""
        lock = self._write_lock if self.is_sqlite else contextlib.nullcontext()
        async with lock, self._write_sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        """Dispose of all connections (and the SQLite thread pool)."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if self._inline_connection is not None:
            self._inline_connection.close()
            self._inline_connection = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        await self.engine.dispose()

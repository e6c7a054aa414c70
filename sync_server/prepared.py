"""The per-request statements, compiled once and run on the driver's own connection.

Every sync request runs four to six small statements (the credential check, then a push's
or a pull's). Through ``Connection.execute`` each costs SQLAlchemy's per-statement work —
compiled-cache lookup, execution context, parameter and result set-up — about 20 µs
hot and several times that under load, while ``sqlite3`` itself takes a microsecond or two
for such a statement. :class:`Prepared` wraps one Core statement: on a ``pysqlite``
connection it compiles it once (the SQL text, the order of its parameters, and SQLAlchemy's
own bind and result processors for their types) and runs it on the DBAPI connection of the
same SQLAlchemy ``Connection`` — the same transaction, the same SQL, the same conversions
(``UTCDateTime``, ``Boolean``…), so callers get the same values. Rows come back as named
tuples (attribute and index access, as ``Row``).

On PostgreSQL (``asyncpg``) the same is done for the reads that run outside a transaction
(:meth:`~sync_server.db.Database.run` is autocommit there): the statement compiled once for
the asyncpg dialect (``$n`` parameters) runs with ``asyncpg.Connection.fetch`` in the
greenlet of ``run_sync``, as SQLAlchemy's adapter does, with asyncpg's own per-connection
cache of prepared statements; rows get the same processors and named tuples. Statements
inside a transaction (a push) and statements with an expanding ``IN`` keep
``Connection.execute`` — SQLAlchemy's adapter must see the first statement of a
transaction to send ``BEGIN``. ``aiosqlite`` also keeps ``Connection.execute``.

Errors of the driver are not wrapped into SQLAlchemy's exception classes on these paths;
nothing on the request path tells them apart (an unexpected database error is a 500
either way, and the surrounding transaction is rolled back by SQLAlchemy). An asyncpg
connection is invalidated after any error but the server's own answer to a statement
(a ``PostgresError`` on a connection still open, not a connection or shutdown error), as
SQLAlchemy does on a disconnect, so the pool replaces it: a database restart fails one
request, not every later one on that pooled connection. That includes asyncpg's
``InternalClientError`` "another operation is in progress", met when a statement starts
between the server's termination message and the socket's end.
"""

from __future__ import annotations

import collections
import keyword
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_

from sync_server.models import UTCDateTime

_Processor = Callable[[Any], Any] | None


def _aware_already(column_type: Any, dialect: Dialect) -> bool:
    """Whether the driver already gives what the column's result processor would.

    asyncpg decodes ``timestamp with time zone`` as an aware datetime in UTC, which
    :class:`~sync_server.models.UTCDateTime` would only convert to UTC again (a call per
    value: a pull page has a hundred). ``test_prepared.py`` compares value and type with
    SQLAlchemy's own result.
    """
    return dialect.driver == "asyncpg" and isinstance(column_type, UTCDateTime)


class _Compiled:
    """One statement compiled for a dialect: SQL, parameter order and processors."""

    __slots__ = (
        "binds",
        "defaults",
        "expanding",
        "processed",
        "record",
        "results",
        "row",
        "sql",
    )

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None
    ) -> None:
        compiled = cast(
            SQLCompiler,
            statement.compile(
                dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
            ),
        )
        names = tuple(compiled.positiontup or ())
        self.sql = compiled.string
        processors = compiled._bind_processors
        binds: list[tuple[str, _Processor]] = []
        for name in names:
            process = processors.get(name)
            if process is not None and not callable(process):
                raise ValueError(f"parameter {name!r} has per-element processors (a tuple type)")
            binds.append((name, process))
        self.binds = tuple(binds)
        # Values of parameters the caller does not give (literal LIMIT/OFFSET defaults).
        self.defaults: dict[str, Any] = {
            name: compiled.binds[name].effective_value
            for name in names
            if not compiled.binds[name].required and compiled.binds[name].callable is None
        }
        self.expanding = frozenset(name for name in names if compiled.binds[name].expanding)
        columns = compiled._result_columns or []
        self.results: tuple[_Processor, ...] = tuple(
            None
            if _aware_already(column[3], dialect)
            else column[3]._cached_result_processor(dialect, None)
            for column in columns
        )
        #: (index, processor) of the result columns that have one.
        self.processed = tuple(
            (index, process) for index, process in enumerate(self.results) if process
        )
        keys = [column[0] for column in columns]
        self.row: Any = None
        if keys:
            if len(set(keys)) != len(keys) or not all(
                key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("_")
                for key in keys
            ):
                raise ValueError(f"result columns {keys} cannot be named tuple fields")
            self.row = collections.namedtuple("PreparedRow", keys)  # type: ignore[misc]
        #: asyncpg's rows with the same attributes, when no value needs converting: the
        #: driver makes them as it decodes, instead of a named tuple made again per row.
        self.record: Any = None
        if keys and not self.processed and dialect.driver == "asyncpg":
            self.record = _record_class(keys)

    def arguments(self, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its positional arguments for ``params``."""
        values: list[Any] = []
        sql = self.sql
        for name, process in self.binds:
            value: Any = params[name] if name in params else self.defaults[name]
            if name in self.expanding:
                items = [process(item) for item in value] if process else list(value)
                marks = ", ".join("?" * len(items))
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks, 1)
                values.extend(items)
            else:
                values.append(process(value) if process else value)
        return sql, values

    def converted(self, raw: Iterable[Sequence[Any]]) -> Iterator[Any]:
        """Rows as named tuples of converted values, each as it is read from ``raw``."""
        make = self.row._make
        processed = self.processed
        if not processed:
            yield from map(make, raw)
            return
        for row in raw:
            values = list(row)
            for index, process in processed:
                values[index] = process(values[index])
            yield make(values)

    def convert(self, raw: Iterable[Sequence[Any]]) -> list[Any]:
        """:meth:`converted`, all of them."""
        return list(self.converted(raw))


def _record_class(keys: Sequence[str]) -> Any:
    """A subclass of ``asyncpg.Record`` whose rows also answer ``row.key`` (as the named
    tuples do), each attribute an ``itemgetter``: no Python code per access."""
    import asyncpg  # reached only on PostgreSQL, where SQLAlchemy has imported it already

    attributes: dict[str, Any] = {
        key: property(operator.itemgetter(index)) for index, key in enumerate(keys)
    }
    attributes["__slots__"] = ()
    return type("PreparedRecord", (asyncpg.Record,), attributes)


def _connection_spoilt(driver: Any, error: Exception) -> bool:
    """Whether the asyncpg connection ``driver`` must leave the pool after ``error``.

    Only the server's answer to a statement (a constraint, a bad value) leaves a connection
    in a known state; a closed socket, a shutdown or terminate message, a client-side state
    error or an OS error do not.
    """
    import asyncpg  # reached only on PostgreSQL, where SQLAlchemy has imported it already

    if driver.is_closed():
        return True
    if not isinstance(error, asyncpg.PostgresError):
        return True
    return isinstance(
        error, (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
    )


def _taken(rows: Iterable[Any], enough: Callable[[Any], bool]) -> list[Any]:
    """``rows`` up to and including the first that ``enough`` takes; no further row is read."""
    taken = []
    for row in rows:
        taken.append(row)
        if enough(row):
            break
    return taken


def _empty_list(compiled: _Compiled, params: dict[str, Any]) -> bool:
    """True when an expanding parameter is empty (SQLAlchemy renders an empty ``IN``)."""
    return any(
        not (params[name] if name in params else compiled.defaults[name])
        for name in compiled.expanding
    )


class Prepared:
    """A Core statement run cheaply on SQLite and, for reads, asyncpg (module docstring).

    ``column_keys``: for an INSERT or UPDATE without ``values()``, the parameter names
    every call gives (as SQLAlchemy derives them from the first parameter set).
    """

    __slots__ = ("_column_keys", "_compiled", "_compiled_asyncpg", "statement")

    def __init__(self, statement: Any, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._column_keys = tuple(column_keys) if column_keys is not None else None
        self._compiled: _Compiled | None = None
        self._compiled_asyncpg: _Compiled | None = None

    def _asyncpg(self, connection: Connection) -> tuple[Any, _Compiled] | None:
        """The asyncpg connection under ``connection`` and the statement compiled for it,
        when the connection is in autocommit (a PostgreSQL read, :meth:`Database.run`);
        else ``None``. In a transaction SQLAlchemy's adapter must see every statement (it
        sends ``BEGIN`` before the first), so those statements keep ``Connection.execute``.
        """
        dialect = connection.dialect
        if dialect.driver != "asyncpg":
            return None
        if not getattr(connection.connection.dbapi_connection, "autocommit", False):
            return None
        compiled = self._compiled_asyncpg
        if compiled is None:
            compiled = self._compiled_asyncpg = _Compiled(
                self.statement, dialect, self._column_keys
            )
        if compiled.expanding:
            return None  # "$n" numbering of an expanded list: left to SQLAlchemy
        return connection.connection.driver_connection, compiled

    def _sqlite(self, connection: Connection) -> Any:
        """The ``sqlite3`` connection under ``connection``, or ``None`` for other drivers."""
        dialect = connection.dialect
        if dialect.driver != "pysqlite":
            return None
        if self._compiled is None:
            self._compiled = _Compiled(self.statement, dialect, self._column_keys)
        return connection.connection.driver_connection

    def all(self, connection: Connection, params: dict[str, Any]) -> Sequence[Any]:
        """Every row (``Connection.execute(...).all()``)."""
        if connection.dialect.driver == "asyncpg":
            found = self._asyncpg(connection)
            if found is None:
                return connection.execute(self.statement, params).all()
            driver, statement = found
            sql, values = statement.arguments(params)
            try:
                # In the greenlet of Database.run (AsyncConnection.run_sync), as SQLAlchemy's
                # own adapter; asyncpg prepares and caches the statement per connection.
                fetched = await_(driver.fetch(sql, *values, record_class=statement.record))
            except Exception as error:
                if _connection_spoilt(driver, error):
                    connection.invalidate()  # the pool must not hand it out again
                raise
            return fetched if statement.record is not None else statement.convert(fetched)
        raw = self._sqlite(connection)
        compiled = self._compiled
        if raw is None or compiled is None or _empty_list(compiled, params):
            return connection.execute(self.statement, params).all()
        sql, values = compiled.arguments(params)
        return compiled.convert(raw.execute(sql, values).fetchall())

    def until(
        self, connection: Connection, params: dict[str, Any], enough: Callable[[Any], bool]
    ) -> list[Any]:
        """The rows, in order, up to and including the first that ``enough`` takes (all of
        them when it takes none). On SQLite the statement stops there: later rows are
        never read (their payloads stay on disk); elsewhere they are fetched and dropped."""
        raw = self._sqlite(connection)
        compiled = self._compiled
        if raw is None or compiled is None or _empty_list(compiled, params):
            return _taken(self.all(connection, params), enough)
        cursor = raw.execute(*compiled.arguments(params))
        try:
            return _taken(compiled.converted(cursor), enough)
        finally:
            cursor.close()  # ends the statement (it may have rows left)

    def one_or_none(self, connection: Connection, params: dict[str, Any]) -> Any:
        """The row, ``None`` without one; more than one is an error (as ``Result``'s)."""
        rows = self.all(connection, params)
        if len(rows) > 1:
            raise ValueError("more than one row where at most one was expected")
        return rows[0] if rows else None

    def scalar_one_or_none(self, connection: Connection, params: dict[str, Any]) -> Any:
        """The first column of :meth:`one_or_none`'s row."""
        row = self.one_or_none(connection, params)
        return None if row is None else row[0]

    def scalars(self, connection: Connection, params: dict[str, Any]) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in self.all(connection, params)]

    def execute(self, connection: Connection, params: dict[str, Any]) -> None:
        """A statement without rows, once."""
        raw = self._sqlite(connection)
        if raw is None:
            connection.execute(self.statement, params)
            return
        assert self._compiled is not None
        raw.execute(*self._compiled.arguments(params))

    def executemany(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        """A statement without rows, once per parameter set (``executemany``)."""
        raw = self._sqlite(connection)
        if raw is None:
            connection.execute(self.statement, rows)
            return
        compiled = self._compiled
        assert compiled is not None
        if compiled.expanding:
            raise ValueError("executemany with an expanding parameter")
        binds, defaults = compiled.binds, compiled.defaults
        # The rows of a batch often share a value (a push's timestamp): each processed once.
        done: dict[tuple[str, int], tuple[Any, Any]] = {}

        def processed(name: str, process: Callable[[Any], Any], value: Any) -> Any:
            key = (name, id(value))
            seen = done.get(key)
            if seen is not None and seen[0] is value:
                return seen[1]
            result = process(value)
            done[key] = (value, result)
            return result

        raw.executemany(
            compiled.sql,
            [
                [
                    processed(name, process, value) if process else value
                    for name, process in binds
                    for value in (row[name] if name in row else defaults[name],)
                ]
                for row in rows
            ],
        )

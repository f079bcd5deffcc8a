"""PostgreSQL: the user's input written from the event loop itself, on async connections of its own.

Why: the input write is on every turn's critical path. Through a recorder thread it costs two
thread hops, and when the loop is busy the thread waits for the GIL after each database call
(bench/write_request.py, "busy loop"); on a psycopg `AsyncConnection` it costs the round trip
and the commit, and the loop relays other sockets meanwhile. This is not synchronous database
work on the hot path: the loop only awaits a socket.

Rules:

* The one-statement create (`recording_input.at_once_statement`) goes this way, and so do the
  recorder's batches when they are plain statements (`recording_ops.batch_statements`: one
  multi-statement query, which PostgreSQL runs as one transaction). Anything that needs a lookup, a rewrite or the ORM stays on the
  recorder's threads (recorder.py). So in the usual case a PostgreSQL relay runs no database
  thread at all, and no thread takes the GIL from the loop at each of its socket calls.
* Connections belong to one event loop (a psycopg async connection is bound to the loop it was
  used on): at most `POOL_SIZE` per loop, opened as needed, autocommit, opened with Django's own connection
  parameters for the default database (so tests reach the test database). The statement is
  prepared on first use (planning was half its cost) unless `SWITCHBOARD_PG_PREPARE` is off or
  the database's OPTIONS set `prepare_threshold` themselves; so are, within their one simple
  query, a batch's statements and a guarded INSERT with its lock (pgprepared.py says which guards).
* A first turn is one round trip (`execute_with_rows`): its new conversation's and upstream socket's rows
  (recorder.py's `Recorder.queue_row`) and its create, in one transaction committed synchronously. Before,
  each was a statement of its own, the conversation's first: two waits for a connection and for this busy
  loop to read the answer, in series (bench/README.md, 2026-12-03, night). A row under a lock (the upstream
  socket's guarded INSERT) goes last, so the user's row stays locked for that INSERT and the commit's WAL
  flush only (0.2 ms here), never for a round trip.
* A gateway handshake's reads (its token, with the user and limits, and the new conversation's profile) go
  this way too (`fetch_one`, through reads.py): so a PostgreSQL gateway's first turn runs no database thread.
* Durability: the user's input commits synchronously (its WAL flushed) before the relay sends it.
  A batch commits asynchronously (`synchronous_commit off`, this transaction only): what the
  upstream streamed back already waits in the recorder's queue for its batch, so flushing the WAL
  for it buys no safety against this process dying (PostgreSQL has the commit at once); only a
  crash of the database server itself within its WAL writer delay could lose such a batch. In
  exchange the input's commit no longer queues behind batch flushes on the WAL.
* The statement is atomic, so a failure means nothing was written; the caller then refuses to
  send. One exception: a connection that sat idle may have died (a restarted server); if it fails
  with a connection error before answering, the statement is retried once on a new connection.
* When the database turns out to be unavailable (recorder.py's writer), `discard_idle` closes the
  loop's idle connections: after a restart every one of them is dead, and trying each in turn would
  cost a failed write apiece. The next write opens a new connection.
* Connections of a loop that has closed are closed when the next loop opens a pool, when the
  loop is collected, and at exit: test runs (a loop per test) never pile connections up.
* The pool is this module's, not psycopg-pool's `AsyncConnectionPool`: with 50 uses at once (a busy relay)
  the library cost 1.4-1.6x the CPU and latency per use, alone 1.1x (bench/pg_pool.py, bench/README.md).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql as pgsql

from ..models.rows import prepares
from .input import AtOnce, Direct, RequestWritten, RowInsert
from .ops import Statement
from .pgprepared import Prepared

__all__ = ["enabled", "fetch_one", "execute_at_once", "execute_with_rows", "execute_batch", "discard_idle", "close_all"]

logger = logging.getLogger("sessions_app.recording")

# Under load every await of a write waits a loop turn, so concurrent writes need connections of their
# own: with 4, 50 busy sockets queued for them (write p50 160 ms); with 16, 41 ms (bench/relay.py).
POOL_SIZE = 16
IDLE_CHECK_SECONDS = 1.0  # an idle connection may have been cut: retried once if it fails
ASYNC_COMMIT = "SET LOCAL synchronous_commit TO off"
T = TypeVar("T")


def enabled() -> bool:
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


class _Pool:
    """One event loop's input connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop_ref = weakref.ref(loop)
        self.slots = asyncio.Semaphore(POOL_SIZE)
        self.idle: list[tuple[psycopg.AsyncConnection, float]] = []  # (connection, idle since)
        self.every: set[psycopg.AsyncConnection] = set()
        self.prepared: dict[psycopg.AsyncConnection, Prepared] = {}  # where Switchboard prepares (module rules)
        self.binders: dict[psycopg.AsyncConnection, _Binder] = {}

    async def _connect(self) -> psycopg.AsyncConnection:
        database = connections[DEFAULT_DB_ALIAS]
        params = dict(database.get_connection_params())
        params.pop("cursor_factory", None)  # Django's is a sync cursor class
        options = database.settings_dict["OPTIONS"]
        if prepares(database):
            params["prepare_threshold"] = 0
        role = options.get("assume_role")
        connection = await psycopg.AsyncConnection.connect(autocommit=True, **params)
        if role:
            await connection.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(role)))
        self.every.add(connection)
        if prepares(database):
            self.prepared[connection] = Prepared()
        return connection

    def binder(self, connection: psycopg.AsyncConnection) -> _Binder:
        """The connection's `_Binder`, made at its first use and dropped with the connection."""
        binder = self.binders.get(connection)
        if binder is None:
            binder = self.binders[connection] = _Binder(connection)
        return binder

    def _discard(self, connection: psycopg.AsyncConnection) -> None:
        self.every.discard(connection)
        self.prepared.pop(connection, None)
        self.binders.pop(connection, None)
        _finish(connection)

    def _take(self) -> tuple[psycopg.AsyncConnection | None, float]:
        while self.idle:
            connection, idle_since = self.idle.pop()
            if not connection.closed:
                return connection, idle_since
            self._discard(connection)
        return None, 0.0

    @asynccontextmanager
    async def _lease(self, *, fresh: bool = False) -> AsyncIterator[tuple[psycopg.AsyncConnection, bool]]:
        """A connection for one use (an idle one unless `fresh`) and whether it sat idle long enough to
        have been cut. It goes back to the idle list after, or is discarded if the use failed or was
        cancelled (the connection is then in doubt)."""
        connection, idle_since = (None, 0.0) if fresh else self._take()
        stale = connection is not None and time.monotonic() - idle_since > IDLE_CHECK_SECONDS
        if connection is None:
            connection = await self._connect()
        try:
            yield connection, stale
        except BaseException:
            self._discard(connection)
            raise
        self.idle.append((connection, time.monotonic()))

    async def run(self, statement: Direct | _Read) -> tuple[Any, ...] | None:
        return await self._use(lambda connection, prepared: _execute(connection, prepared, statement))

    async def run_with_rows(self, rows: list[RowInsert], statement: AtOnce | None) -> tuple[list[Any], Any]:
        return await self._use(lambda connection, prepared: _with_rows(connection, prepared, rows, statement))

    async def _use(self, use: Callable[[psycopg.AsyncConnection, Prepared | None], Awaitable[T]]) -> T:
        """`use` a connection; once more on a new one if an idle connection turned out to be cut."""
        async with self.slots:
            stale = False
            try:
                async with self._lease() as (connection, stale):
                    return await use(connection, self.prepared.get(connection))
            except psycopg.OperationalError:
                if not stale:
                    raise
            async with self._lease(fresh=True) as (connection, _):  # the idle one was cut: once more
                return await use(connection, self.prepared.get(connection))

    async def run_transaction(self, statements: list[Statement]) -> None:
        """Statements in one transaction, sent as one simple query (one round trip). Bound client-side
        (psycopg quotes every value): a pipeline of prepared statements cost 3x the CPU on the loop.
        Each statement is bound on its own, so psycopg parses each SQL shape once (its cache keeps
        short queries) instead of the whole batch's text every time; PostgreSQL plans each shape by
        primary key once (pgprepared.py). Committed without waiting for the WAL flush (module rules).
        The caller retries a failure."""
        async with self.slots, self._lease() as (connection, _):
            await _transaction(connection, self.prepared.get(connection), statements)

    def discard_idle(self) -> None:
        while self.idle:
            connection, _ = self.idle.pop()
            self._discard(connection)

    def close(self) -> None:
        for connection in list(self.every):
            _finish(connection)
        self.every.clear()
        self.idle.clear()
        self.prepared.clear()
        self.binders.clear()


async def _execute(connection: psycopg.AsyncConnection, prepared: Prepared | None,
                   statement: Direct | _Read) -> tuple[Any, ...] | None:
    lock = statement.lock if isinstance(statement, RowInsert) else None
    if lock is None:
        cursor = await connection.execute(statement.sql, statement.params)
        return await cursor.fetchone()
    # A guarded INSERT after its lock (input.py, RowInsert), as one simple query: the lock is held from the
    # server's SELECT … FOR NO KEY UPDATE to its COMMIT, never across a round trip and a turn of this busy loop
    # (every socket of one user queues for it), nor across a WAL flush: whatever later depends on the row
    # commits synchronously (a request's input), which flushes this commit too.
    cursor = await _transaction(connection, prepared, [lock, (statement.sql, statement.params)])
    cursor.nextset()  # past the lock's
    return await cursor.fetchone()


async def _with_rows(connection: psycopg.AsyncConnection, prepared: Prepared | None, rows: list[RowInsert],
                     statement: AtOnce | None) -> tuple[list[Any], Any]:
    """New rows and then the usual create in one transaction, one round trip (module rules: a first turn): each
    row's pk (None: its guard refused it) and the create's result, `AtOnce.written`'s. Rows under a lock come last,
    so the lock is held for the least time. Without a create the rows commit asynchronously, as a batch does."""
    plain = [i for i, row in enumerate(rows) if row.lock is None]
    locked = [i for i, row in enumerate(rows) if row.lock is not None]
    statements: list[Statement] = [(rows[i].sql, rows[i].params) for i in plain]
    if statement is not None:
        statements.append((statement.sql, statement.params))
    for i in locked:
        statements += [rows[i].lock, (rows[i].sql, rows[i].params)]
    cursor = await _transaction(connection, prepared, statements, synchronous=statement is not None)
    pks: list[Any] = [None] * len(rows)
    for i in plain:
        pks[i] = rows[i].written(await cursor.fetchone())
        cursor.nextset()
    written = None
    if statement is not None:
        written = statement.written(await cursor.fetchone())
        cursor.nextset()
    for i in locked:
        cursor.nextset()  # past the lock's
        pks[i] = rows[i].written(await cursor.fetchone())
        cursor.nextset()
    return pks, written


async def _transaction(connection: psycopg.AsyncConnection, prepared: Prepared | None,
                       statements: list[Statement], *, synchronous: bool = False) -> psycopg.AsyncCursor:
    """`statements` in one transaction, as one simple query, each an `EXECUTE` of its prepared shape where it has
    one (pgprepared.py): the cursor at the first statement's result. Committed without waiting for the WAL flush
    unless `synchronous` (module rules: durability).

    Should PostgreSQL refuse a query that prepares shapes (it could not tell a parameter's type, say), those
    shapes are sent as they are from then on, and the query again at once."""
    binder = _pool().binder(connection)
    begin = ["BEGIN"] if synchronous else ["BEGIN", ASYNC_COMMIT]
    while True:
        if prepared is None:
            heads, texts, fresh = [], [binder.bind(sql, params) for sql, params in statements], set()
        else:
            heads, texts, fresh = prepared.query(statements, binder.bind, binder.literal)
        try:
            cursor = await connection.execute("; ".join([*heads, *begin, *texts, "COMMIT"]), prepare=False)
        except psycopg.Error as error:
            if not fresh or not (error.sqlstate or "").startswith("42"):  # not a syntax or type error
                raise
            logger.warning("PostgreSQL refused a query that prepared %s: sent unprepared from now on",
                           ", ".join(sorted(fresh)), exc_info=True)
            prepared.shapes.refuse(fresh)
            if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                await connection.execute("ROLLBACK")
            continue
        break
    if prepared is not None:
        prepared.done(fresh)
    for _ in range(len(heads) + len(begin)):  # each PREPARE, BEGIN and SET
        cursor.nextset()
    return cursor


class _Binder:
    """One connection's client-side binding, kept for the connection's life: a cursor's `mogrify` for a statement's
    placeholders, and its adapters' literal for one value (an `EXECUTE` of a prepared shape is its name and its
    literals, with no query to parse). A cursor made per transaction started with empty adapter caches: a
    turn end's statement cost 50 µs to bind that way, 23 µs this way (bench/README.md, 2026-12-04)."""

    def __init__(self, connection: psycopg.AsyncConnection) -> None:
        self.bind = psycopg.AsyncClientCursor(connection).mogrify
        self._adapt = psycopg.adapt.Transformer(connection)
        self._encoding = self._adapt.encoding

    def literal(self, value: Any) -> str:
        return self._adapt.as_literal(value).decode(self._encoding)


def _finish(connection: psycopg.AsyncConnection) -> None:
    """Close without awaiting (the connection's loop may be gone): the socket closes at once."""
    try:
        connection.pgconn.finish()
    except Exception:
        pass


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()
_ALL: list[_Pool] = []  # also the pools of collected loops, until closed


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        for stale in [p for p in _ALL if (p.loop_ref() is None or p.loop_ref().is_closed())]:
            stale.close()
            _ALL.remove(stale)
        pool = _POOLS[loop] = _Pool(loop)
        _ALL.append(pool)
        weakref.finalize(loop, pool.close)
    return pool


async def execute_at_once(statement: Direct) -> RequestWritten | Any | None:
    """Run the one-statement create on this loop's connections (None: take the general path), or a new
    row's INSERT (its pk)."""
    return statement.written(await _pool().run(statement))


async def fetch_one(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """A statement's first row (None: no row) on this loop's connections, prepared where Switchboard prepares
    (psycopg's own prepared statements: these connections prepare every statement at its first use)."""
    return await _pool().run(_Read(sql, params))


class _Read(NamedTuple):
    sql: str
    params: list[Any]


async def execute_with_rows(rows: list[RowInsert], statement: AtOnce | None) -> tuple[list[Any], Any]:
    """New rows (`RowInsert`s) and the usual create after them, in one transaction on this loop's connections: each
    row's pk (None: its guard refused it) and `execute_at_once`'s result for the create (None without one)."""
    return await _pool().run_with_rows(rows, statement)


async def execute_batch(statements: list[Statement]) -> None:
    """Run a recorder batch (recording_ops.batch_statements) in one transaction on this loop's connections."""
    await _pool().run_transaction(statements)


def discard_idle() -> None:
    """Close the running loop's idle connections (the database was found unavailable: they are in doubt)."""
    pool = _POOLS.get(asyncio.get_running_loop())
    if pool is not None:
        pool.discard_idle()


@atexit.register
def close_all() -> None:
    """Close every pool's connections (at exit; tests call it before the test database is dropped)."""
    for pool in _ALL:
        pool.close()
    _ALL.clear()
    _POOLS.clear()

"""The relay's recorder: the only writer of conversation records on the relay path.

Rules of this module:

* What a person sent is written, and committed, before it goes upstream:
  `Recorder.write_request` runs its write and returns only afterwards. The
  relay awaits it and never sends a request whose write failed. The usual
  create costs one statement on PostgreSQL, sent from the event loop on an
  async connection (pg.py), and one short transaction on SQLite, on
  a recorder thread's raw connection (sqlite.py; never queued behind
  Django's own database thread); the rest takes the threads' general path
  (`_write_request_in_transaction`).
* Everything the upstream streams back is recorded off the hot path: the
  relay `add`s small frozen ops (ops.py) to a bounded queue (O(1),
  never awaits). One `Writer` per event loop drains the queue of every socket
  in batches, one transaction per batch, lingering briefly so a short
  response's ops share one. A slow database delays the records, never the stream.
* The queue is FIFO, so ops apply in the order the relay saw things happen.
  Direct writes (`write_request`, `open_connection`) only insert new rows;
  every update to an existing row goes through the queue.
* If the queue is full the op is dropped *loudly*: an error log line, an
  `ErrorEvent` (code `recording_overflow`, written outside the queue) and the
  `on_overflow` callback so the relay can tell the client. An op the database
  keeps refusing is logged and dropped alone (the rest of its batch is kept).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from ..models import ErrorEvent
from ..process import per_loop
from . import pg as recording_pg
from . import sqlite as recording_sqlite
from .groups import Groups
from .input import (
    RequestRow,
    RequestWritten,
    _open_connection,
    _write_request,  # noqa: F401 (the sync whole: tests call it on their own thread)
    _write_request_in_transaction,
    at_once_statement,
)
from .ops import (
    ConnectionClosed,
    ConnectionFailed,
    ConversationState,
    ErrorRow,
    Finished,
    Op,
    Sent,
    Started,
    apply_batch,
    batch_statements,
)
from .stats import flush_observed

# The ops are part of this module's interface: the relay builds them and hands them to `Recorder.add`.
__all__ = [
    "Recorder",
    "Writer",
    "RequestRow",
    "RequestWritten",
    "Sent",
    "Started",
    "Finished",
    "ErrorRow",
    "ConnectionFailed",
    "ConnectionClosed",
    "ConversationState",
    "on_db_thread",
    "queued_ops",
]

logger = logging.getLogger("sessions_app.recording")

MAX_PENDING = 1000
BATCH_SIZE = 200
# The writer waits this long after the first op of a batch, so that a short response's ops
# (sent, started, finished, status) share one transaction and coalesce; flush() cuts it short.
LINGER_SECONDS = 0.05
# The recorder's database threads: user input and the writer's batches run here, never on Django's
# single thread-sensitive database thread, so a create never queues behind batches or page reads.
# The writer has at most one batch in flight, so at least INPUT_THREADS - 1 threads are always free
# for input. Each thread keeps its own database connection (so this is also the most connections
# the recorder opens per process), see `_on_db_thread`.
INPUT_THREADS = 4
INPUT_EXECUTOR = ThreadPoolExecutor(max_workers=INPUT_THREADS, thread_name_prefix="switchboard-input")
# The recorder's threads need the GIL only briefly, but must win it back from the event loop after
# every database call. A waiting thread forces a switch only if the holder kept the GIL for a whole
# switch interval (default 5 ms); a busy loop releases it briefly at every select() and takes it
# straight back, so with 5 ms the input thread starves: bench/write_request.py's "busy loop" (2 ms
# slices) finished 1-2 writes in 20 s; with 0.5 ms, p50 6-11 ms.
GIL_SWITCH_INTERVAL = 0.0005
if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
# An idle PostgreSQL connection is health-checked (SELECT 1) before its next use; a busy one is not.
IDLE_CHECK_SECONDS = 1.0
WRITE_ATTEMPTS = 3


# -- the recorder's database threads ---------------------------------------------------

_thread_state = threading.local()


class _WriteTurns:
    """SQLite has one write lock per file. Writers of this process take turns here, handing over at
    once, instead of in SQLite's busy handler, which polls with sleeps of 1-100 ms. A waiting input
    write (a user's request, on the turn's critical path) goes before a waiting batch."""

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._busy = False
        self._inputs_waiting = 0

    @contextmanager
    def hold(self, *, batch: bool) -> Iterator[None]:
        with self._turns:
            if not batch:
                self._inputs_waiting += 1
            try:
                self._turns.wait_for(lambda: not self._busy and (not batch or not self._inputs_waiting))
            finally:
                if not batch:
                    self._inputs_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._turns:
                self._busy = False
                self._turns.notify_all()


_SQLITE_WRITES = _WriteTurns()
_BATCH_WRITES = (apply_batch, recording_sqlite.apply_statements)


def _on_db_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run `function` on this recorder thread's own, persistent connection.

    `database_sync_to_async` would run `close_old_connections` around every call: on SQLite
    (CONN_MAX_AGE 0) that reconnects per write, on PostgreSQL it health-checks per write. Here a
    connection is only re-checked after an error, after an idle second, or past CONN_MAX_AGE
    (not for SQLite, whose connections are local files and stay open).
    """
    connection = connections[DEFAULT_DB_ALIAS]
    now = time.monotonic()
    if connection.connection is not None:
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()
        elif connection.vendor != "sqlite" and (
                now - getattr(_thread_state, "used", now) > IDLE_CHECK_SECONDS
                or (connection.close_at is not None and now >= connection.close_at)):
            connection.close_if_unusable_or_obsolete()
    try:
        if connection.vendor == "sqlite":
            with _SQLITE_WRITES.hold(batch=function in _BATCH_WRITES):
                return function(*args)
        return function(*args)
    finally:
        _thread_state.used = time.monotonic()


async def _db(function: Callable[..., Any], *args: Any) -> Any:
    """Await `function(*args)` on a recorder database thread."""
    return await asyncio.get_running_loop().run_in_executor(INPUT_EXECUTOR, _on_db_thread, function, *args)


async def on_db_thread(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Await `function(**kwargs)` on a recorder database thread, like an input write (SQLite: at the write
    lock): a socket's first-turn ORM work, which on Django's one thread-sensitive thread queued behind
    every other socket's and page's (50 sockets opening at once waited 0.3-0.5 s, bench/README.md)."""
    return await _db(partial(function, **kwargs))


# -- queued ops: what the upstream streams back -------------------------------------------


async def _apply(ops: list[Op]) -> None:
    """One batch, in one transaction. Plain statements: from the loop on PostgreSQL (pg.py),
    on the raw connection of a recorder thread on SQLite (sqlite.py); else the ORM's way."""
    statements = batch_statements(ops)
    if statements is None:
        await _db(apply_batch, ops)
    elif recording_pg.enabled():
        await recording_pg.execute_batch(statements)
    else:
        await _db(recording_sqlite.apply_statements, statements)


def _write_error(row: ErrorRow) -> None:
    row.row().save()


# -- the recorder -----------------------------------------------------------------------


class Writer:
    """One queue and one task that write ops in batches, shared by the sessions of an event loop.

    Sharing it lets ops of many sockets go out in the same transactions, so under load the
    database does a few large batches instead of many small ones. Batches run one at a time: on
    PostgreSQL from the loop (`_apply`), else on the recorder's database threads, where the other
    threads stay free for the writes that *are* on the critical path (`write_request`).
    """

    def __init__(self, *, max_pending: int = MAX_PENDING, batch_size: int = BATCH_SIZE,
                 linger: float = LINGER_SECONDS) -> None:
        self.queue: asyncio.Queue[Op] = asyncio.Queue(maxsize=max_pending)
        self.batch_size = batch_size
        self.linger = linger
        self.dropped = 0
        self._hurry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(self, op: Op) -> None:
        """Queue an op (raises asyncio.QueueFull); starts the task on first use."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="switchboard-recorder")
        self.queue.put_nowait(op)

    async def _drain(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.linger and not self._hurry.is_set() and self.queue.qsize() < self.batch_size:
                try:
                    await asyncio.wait_for(self._hurry.wait(), self.linger)
                except TimeoutError:
                    pass
            while len(batch) < self.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            started = time.monotonic()
            try:
                await self._write(batch)
            finally:
                flush_observed(time.monotonic() - started)
                for _ in batch:
                    self.queue.task_done()

    async def _write(self, batch: list[Op]) -> None:
        """One transaction; after repeated failures, one op at a time so a bad op only loses itself."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await _apply(batch)
                return
            except Exception:
                if attempt < WRITE_ATTEMPTS:
                    await asyncio.sleep(0.2 * attempt)
        for op in batch:
            try:
                await _apply([op])
            except Exception:
                self.dropped += 1
                logger.exception("Recorder could not write a %s record (conversation %s); it is lost",
                                 type(op).__name__, getattr(op, "conversation_id", None))

    async def flush(self) -> None:
        """Wait until every queued op is written (or given up on); skips the linger meanwhile."""
        if self._task is None:
            return
        self._hurry.set()
        try:
            await self.queue.join()
        finally:
            self._hurry.clear()

    async def stop(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Writer] = weakref.WeakKeyDictionary()
_GROUPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Groups] = weakref.WeakKeyDictionary()


async def _write_many_sqlite(statements: list[Any]) -> list[Any]:
    return await _db(recording_sqlite.write_many_at_once, statements)


def _sqlite_groups() -> Groups:
    """The running loop's group commit for SQLite's usual creates (groups.py)."""
    return per_loop(_GROUPS, lambda: Groups(_write_many_sqlite))


def shared_writer() -> Writer:
    """The running loop's writer."""
    return per_loop(_WRITERS, Writer)


def queued_ops() -> int:
    """Ops waiting in this process's shared writers (any thread may ask: a snapshot, for /metrics)."""
    return sum(writer.queue.qsize() for writer in list(_WRITERS.values()))


class Recorder:
    """One socket's view of the writer: the relay never waits on the database, except for user input.

    Call `add` from the hot path, `await write_request` before sending user input upstream,
    and `await close()` when the socket ends (it waits until the queue is written). Without a
    `writer` the loop's shared one is used; tests pass their own to control its size.
    """

    def __init__(self, *, writer: Writer | None = None,
                 on_overflow: Callable[[], Awaitable[None]] | None = None) -> None:
        self._writer = writer
        self._own_writer = writer is not None
        #: Told (once per overflow episode) when records were dropped; the relay warns the client.
        self.on_overflow = on_overflow
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._overflowing = False
        self.dropped = 0
        self.conversation_id: uuid.UUID | None = None  # for the overflow row and logs
        #: Queues what the session only counts in memory (relay_stream: client-error counts) first.
        self.before_flush: Callable[[], None] | None = None

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            self._writer = shared_writer()
        return self._writer

    # -- hot path --------------------------------------------------------------------

    def add(self, op: Op) -> None:
        """Queue one op; never blocks. On overflow the op is dropped, loudly (see module rules)."""
        writer = self.writer
        try:
            writer.put(op)
        except asyncio.QueueFull:
            self._overflow(op, writer.queue.maxsize)
            return
        if self._overflowing and writer.queue.qsize() < writer.queue.maxsize // 2:
            self._overflowing = False

    def _overflow(self, op: Op, max_pending: int) -> None:
        self.dropped += 1
        logger.error("Recorder queue full (%d pending): dropped a %s record for conversation %s (%d dropped so far)",
                     max_pending, type(op).__name__, self.conversation_id, self.dropped)
        if self._overflowing:
            return
        self._overflowing = True
        row = ErrorRow(source=ErrorEvent.Source.RELAY, code="recording_overflow", status=500,
                       error_type="server_error", conversation_id=self.conversation_id,
                       message=f"Recorder queue full ({max_pending} pending); records were dropped.",
                       raw={"dropped_op": type(op).__name__, "max_pending": max_pending})
        self._spawn(_db(_write_error, row))
        if self.on_overflow is not None:
            self._spawn(self.on_overflow())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- direct writes ---------------------------------------------------------------

    async def write_request(self, row: RequestRow) -> RequestWritten:
        """Write and commit the user's request; raises if the database refused (do not send then)."""
        statement = at_once_statement(row)  # the usual create, built here: no database access
        if statement is not None:
            if recording_pg.enabled():
                written = await recording_pg.execute_at_once(statement)
            else:
                written = await _sqlite_groups().write(statement)
            if written is not None:
                return written
        return await _db(_write_request_in_transaction, row)

    async def open_connection(self, *, conversation_id: uuid.UUID, profile_id: int | None, url: str) -> int:
        return await _db(_open_connection, conversation_id, profile_id, url)

    # -- lifecycle -------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until everything queued (or counted) so far is written."""
        if self.before_flush is not None:
            self.before_flush()
        if self._writer is not None:
            await self._writer.flush()
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        if self._own_writer and self._writer is not None:
            await self._writer.stop()

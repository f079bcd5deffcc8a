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
* A first turn's new rows (its conversation, its upstream socket) are queued for its request
  (`Recorder.queue_row`), so the request waits for one commit, not two or three: on SQLite they join
  the group commit ahead of it (groups.py), on PostgreSQL they go in its own transaction (pg.py).
* A database outage does not stop a stream: the frames go on to the client (nothing on the
  per-event path awaits the database), the ops wait in the queue, in order, and the writer
  writes them when the database returns (writer.py: retried 0.2 s doubling to 5 s on new
  connections; one warning when the outage starts, one when writes resume). Only what must be
  written before it goes on fails at once: a new request's input (`write_request` raises, the relay
  answers `recording_failed` and sends nothing upstream). An op the database *refuses*
  (availability.py tells the two apart) is logged and dropped alone (the rest of its batch is kept).
* The queue is bounded (SWITCHBOARD_RECORDER_MAX_PENDING ops, default 1000; docs/recording.md
  estimates its memory). If it is full the op is dropped *loudly*: an error log line, an
  `ErrorEvent` (code `recording_overflow`, handed to the writer outside the bound and written with
  its next batch, so after an outage too) and the `on_overflow` callback so the relay can tell the
  client.
* `flush` and `close` wait until this socket's ops are written, or the database is found
  unavailable: a socket that ends during an outage leaves its ops to the writer. At process exit
  `shutdown` (sessions_app.serve) waits a bounded time, then logs what could not be written.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from ..models import ErrorEvent
from ..models.statements import Statement
from ..process import per_loop
from . import pg as recording_pg
from . import sqlite as recording_sqlite
from .groups import Groups
from .input import (
    AtOnce,
    Direct,
    RequestRow,
    RequestWritten,
    RowInsert,
    _write_request,  # noqa: F401 (the sync whole: tests call it on their own thread)
    _write_request_in_transaction,
    at_once_statement,
    connection_row,
    row_delete,
    row_insert,
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
)
from .threads import (  # noqa: F401 (re-exported: tests and benches reach them here)
    GIL_SWITCH_INTERVAL,
    INPUT_EXECUTOR,
    INPUT_THREADS,
    _db,
    on_db_thread,
)
from .writer import Writer, queued_ops, shared_writer, shutdown, shutdown_seconds

# The ops are part of this module's interface: the relay builds them and hands them to `Recorder.add`.
__all__ = [
    "Recorder",
    "AtOnce",
    "at_once_statement",
    "insert_row",
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
    "shutdown",
]

logger = logging.getLogger("sessions_app.recording")

_GROUPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Groups] = weakref.WeakKeyDictionary()


async def _write_many_sqlite(statements: list[Any]) -> list[Any]:
    return await _db(recording_sqlite.write_many_at_once, statements)


def _sqlite_groups() -> Groups:
    """The running loop's group commit for SQLite's usual creates (groups.py)."""
    return per_loop(_GROUPS, lambda: Groups(_write_many_sqlite))


async def insert_row(row: Any, *, guard: Statement | None = None, lock: Statement | None = None) -> Any:
    """Write a new model instance, committed, and give it its pk: in a group with the usual creates on
    SQLite, from the loop on PostgreSQL, not on a database thread of its own (`row_insert`). With a
    `guard` the row is written only if it holds (and after `lock` on PostgreSQL): None when refused. A row
    the database refuses (a foreign key to a row deleted meanwhile) raises Django's IntegrityError, an
    unavailable database Django's OperationalError."""
    return _inserted(row, await _write_at_once(row_insert(row, guard=guard, lock=lock)))


def _inserted(row: Any, pk: Any) -> Any:
    """`row` as the ORM leaves an instance it saved, once its INSERT gave `pk` (None: its guard refused it)."""
    if pk is not None:
        row.pk = pk
        row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS
    return pk


def _queue_in_group(row: Any, *, guard: Statement | None = None,
                    lock: Statement | None = None) -> asyncio.Future[Any] | None:
    """On SQLite, `insert_row` without waiting: the row joins the group commit at once, ahead of the caller's
    next writes, which commit with it or after it (groups.py: order). The future gives its pk (set on the row;
    None when its guard refused it), or raises what `insert_row` would. None on PostgreSQL, whose writes run
    side by side (`Recorder.queue_row` carries the row with the socket's next request there)."""
    if recording_pg.enabled():
        return None
    queued = _sqlite_groups().queue(row_insert(row, guard=guard, lock=lock))
    written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def settle(queued: asyncio.Future[Any]) -> None:
        if written.cancelled():
            return
        if queued.cancelled():
            written.cancel()
        elif (exc := queued.exception()) is not None:
            _fail(written, exc)
        else:
            written.set_result(_inserted(row, queued.result()))

    queued.add_done_callback(settle)
    return written


def _fail(written: asyncio.Future[Any], exc: BaseException) -> None:
    """`written` fails with `exc` as `insert_row` raises it (Django's error), unless it is settled already."""
    if written.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        written.cancel()
        return
    try:
        with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
            raise exc
    except Exception as wrapped:
        written.set_exception(wrapped)


@dataclass(frozen=True)
class _Carried:
    """A row `Recorder.queue_row` holds for the socket's next request (PostgreSQL): its INSERT, and its future."""

    row: Any
    insert: RowInsert
    written: asyncio.Future[Any]


async def delete_row(model: type[Any], pk: Any) -> bool:
    """Delete one row by pk, committed, the way `insert_row` writes one (no deletion collector: for rows
    nothing cascades from, such as a client socket's). Whether it was there."""
    return await _write_at_once(row_delete(model, pk))


async def _write_at_once(statement: Direct) -> Any:
    # The driver's errors as Django's cursor raises them: an IntegrityError the caller can tell apart, and an
    # OperationalError that outage.py answers with 503 / 4503.
    with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
        if recording_pg.enabled():
            return await recording_pg.execute_at_once(statement)
        return await _sqlite_groups().write(statement)


class Recorder:
    """One socket's view of the writer: the relay never waits on the database, except for user input.

    Call `add` from the hot path, `await write_request` before sending user input upstream,
    and `await close()` when the socket ends (it waits until the queue is written, or the database is
    found unavailable: the writer keeps the ops and writes them when it returns). Without a
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
        self._carried: list[_Carried] = []  # rows for the next request's transaction (`queue_row`, PostgreSQL)

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
        self.writer.note(row)
        if self.on_overflow is not None:
            self._spawn(self.on_overflow())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- direct writes ---------------------------------------------------------------

    async def write_request(self, row: RequestRow) -> RequestWritten:
        """Write and commit the user's request, and the rows queued for it (`queue_row`); raises if the database
        refused (do not send then)."""
        if self._carried:
            written = await self._write_carried(row)
        else:
            statement = at_once_statement(row)  # the usual create, built here: no database access
            written = await self.write_at_once(statement) if statement is not None else None
        if written is not None:
            return written
        return await _db(_write_request_in_transaction, row)

    async def write_at_once(self, statement: AtOnce) -> RequestWritten | None:
        """The usual create's one statement (`at_once_statement`), committed; None when the database says the
        request needs the general path (a standalone compaction is pending: the records rewrite its input)."""
        if recording_pg.enabled():
            return await recording_pg.execute_at_once(statement)
        return await _sqlite_groups().write(statement)

    async def open_connection(self, *, conversation_id: uuid.UUID, owner_id: int, profile_id: int | None, url: str,
                              guard: Statement | None = None, lock: Statement | None = None) -> int | None:
        """The upstream socket's row, its pk; with a `guard` (the user's upstream-socket limit), None when
        the guard refused it (`insert_row`)."""
        return await insert_row(connection_row(conversation_id, owner_id, profile_id, url), guard=guard, lock=lock)

    def queue_connection(self, *, conversation_id: uuid.UUID, owner_id: int, profile_id: int | None, url: str,
                         guard: Statement | None = None, lock: Statement | None = None) -> asyncio.Future[Any]:
        """`open_connection` without waiting (`queue_row`)."""
        return self.queue_row(connection_row(conversation_id, owner_id, profile_id, url), guard=guard, lock=lock)

    def queue_row(self, row: Any, *, guard: Statement | None = None, lock: Statement | None = None
                  ) -> asyncio.Future[Any]:
        """A new row written with or ahead of this socket's next request (`write_request`), which the caller writes
        next, so that the request waits for one commit, not two: the future gives the row's pk (set on the row;
        None when its guard refused it) or raises what `insert_row` would.

        On SQLite the row joins the group commit at once (`_queue_in_group`). On PostgreSQL it is held
        and written in the request's own transaction, one round trip (pg.py); should no request follow, the next
        `flush` writes it."""
        queued = _queue_in_group(row, guard=guard, lock=lock)
        if queued is not None:
            return queued
        written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._carried.append(_Carried(row, row_insert(row, guard=guard, lock=lock), written))
        return written

    @property
    def holds_rows(self) -> bool:
        """Rows wait for this socket's next request (`queue_row`, PostgreSQL): it must be written before it is sent."""
        return bool(self._carried)

    async def _write_carried(self, row: RequestRow | None) -> RequestWritten | None:
        """The held rows and then `row`'s usual create (if any) in one transaction; each row's future settled. If
        that transaction fails, the rows are written again alone, as a group commit retries one by one
        (groups.py): a request the database refuses does not take its socket's row down with it. None: `row`
        takes the general path (the held rows are written)."""
        carried, self._carried = self._carried, []
        inserts = [one.insert for one in carried]
        try:
            statement = at_once_statement(row) if row is not None else None  # no database access
            try:
                pks, written = await self._with_rows(inserts, statement)
            except Exception:
                if statement is None:
                    raise
                pks, _ = await self._with_rows(inserts, None)
                self._settle(carried, pks)
                raise
        except BaseException as failure:
            for one in carried:
                _fail(one.written, failure)
            raise
        self._settle(carried, pks)
        return written

    @staticmethod
    async def _with_rows(inserts: list[RowInsert], statement: AtOnce | None) -> tuple[list[Any], Any]:
        with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
            return await recording_pg.execute_with_rows(inserts, statement)

    @staticmethod
    def _settle(carried: list[_Carried], pks: list[Any]) -> None:
        for one, pk in zip(carried, pks, strict=True):
            if not one.written.done():
                one.written.set_result(_inserted(one.row, pk))

    # -- lifecycle -------------------------------------------------------------------

    async def written(self, seconds: float, *, mark: int | None = None) -> bool:
        """Wait until what this socket queued so far (or the writer's first `mark` ops) is written (True), at
        most `seconds`; False at once while the database is unavailable (then it is written when it returns,
        in order).

        Cheaper than `flush`: only the ops queued before this call are waited for, never the later
        ops of other sockets sharing the writer, and the writer's linger is cut short."""
        mark = self.queued_count if mark is None else mark
        if self.is_written(mark):
            return True
        try:
            return await asyncio.wait_for(self.writer.written(mark), seconds)
        except TimeoutError:
            return False

    @property
    def queued_count(self) -> int:
        """The writer's ops queued so far, a `mark` for `written` and `is_written`."""
        return self.writer.put_count

    def is_written(self, mark: int) -> bool:
        """Whether the writer's first `mark` ops are written (or refused)."""
        return self.writer.done_count >= mark

    async def flush(self) -> None:
        """Wait until everything queued (or counted) so far is written, or the database is found unavailable
        (then it is written when the database returns; module rules)."""
        if self.before_flush is not None:
            self.before_flush()
        if self._carried:  # no request came for them (`queue_row`)
            try:
                await self._write_carried(None)
            except Exception:
                pass  # each row's future has the failure: its owner reports it
        if self._writer is not None:
            await self._writer.settle()
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        if self._own_writer and self._writer is not None:
            await self._writer.stop(shutdown_seconds())

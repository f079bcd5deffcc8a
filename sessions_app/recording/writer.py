"""The writer: one queue and one task per event loop that write the relay's ops in batches.

Rules (recorder.py states the recorder's as a whole; these are the writer's):

* FIFO, one batch at a time, one transaction per batch: ops apply in the order the relay saw
  things happen. It lingers briefly after a batch's first op so a short response's ops share one.
* The database *unavailable* is not the database *refusing* an op (availability.py). While it is
  unavailable, the batch in hand and everything queued behind it wait, in order: the same batch
  is tried again after 0.2 s, doubling to 5 s, on new connections (pg.discard_idle; a recorder
  thread closes its own), until the database returns; then it is written and the rest follows.
  Nothing is dropped for an outage. One warning when it starts, one when writes resume (with the
  count of records held), no traceback per attempt. A refused batch is tried `WRITE_ATTEMPTS`
  times, then op by op, so an op the database keeps refusing is logged (with its traceback) and
  dropped alone.
* Meanwhile the queue keeps filling, up to its bound (`queue_bound`, SWITCHBOARD_RECORDER_MAX_PENDING
  ops; docs/recording.md estimates the memory). Past it the recorder drops the new op loudly; its
  report row is handed to `note` and written with the next batch, so after an outage too.
* `written(mark)` waits until the first `mark` ops ever put (`put_count`) are written (or refused),
  or the database is unavailable: the relay holds a response's terminal event on it so a client
  never sees an end the records do not have (stream.py). Other sockets' later ops never delay it.
* `settle` waits until what is queued is written *or* the database is found unavailable (a socket
  that closes during an outage does not wait for it: its ops stay queued and are written when it
  returns); `flush` waits until written, however long. `stop(seconds)` and, at process exit,
  `shutdown` bound the wait, then log at error level what is lost: how many records of which kind,
  of which conversations.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from ..process import per_loop
from . import pg as recording_pg
from . import sqlite as recording_sqlite
from .availability import Backoff, database_unavailable
from .ops import ErrorRow, Op, apply_batch, batch_statements
from .stats import flush_observed
from .threads import _db

__all__ = ["Writer", "shared_writer", "queued_ops", "shutdown", "queue_bound", "MAX_PENDING"]

logger = logging.getLogger("sessions_app.recording")

MAX_PENDING = 1000  # the default bound, in ops (SWITCHBOARD_RECORDER_MAX_PENDING)
BATCH_SIZE = 200
# The writer waits this long after the first op of a batch, so that a short response's ops
# (sent, started, finished, status) share one transaction and coalesce; flush() cuts it short.
LINGER_SECONDS = 0.05
WRITE_ATTEMPTS = 3  # a refused batch; an unavailable database is waited for, without a count
SHUTDOWN_SECONDS = 5.0  # SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS
LOST_CONVERSATIONS_SHOWN = 20


def queue_bound() -> int:
    """How many ops a writer's queue holds (SWITCHBOARD_RECORDER_MAX_PENDING)."""
    return int(getattr(settings, "SWITCHBOARD_RECORDER_MAX_PENDING", MAX_PENDING))


def shutdown_seconds() -> float:
    return float(getattr(settings, "SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS", SHUTDOWN_SECONDS))


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


@dataclass
class Outage:
    """The database has been unavailable since `since` (monotonic); how many tries so far."""

    since: float
    error: str  # the exception's class name (its message may name a host)
    attempts: int = 0


class Writer:
    """One queue and one task that write ops in batches, shared by the sessions of an event loop.

    Sharing it lets ops of many sockets go out in the same transactions, so under load the
    database does a few large batches instead of many small ones. Batches run one at a time: on
    PostgreSQL from the loop (`_apply`), else on the recorder's database threads, where the other
    threads stay free for the writes that *are* on the critical path (`write_request`).
    """

    def __init__(self, *, max_pending: int | None = None, batch_size: int = BATCH_SIZE,
                 linger: float = LINGER_SECONDS) -> None:
        self.queue: asyncio.Queue[Op] = asyncio.Queue(maxsize=queue_bound() if max_pending is None else max_pending)
        self.batch_size = batch_size
        self.linger = linger
        self.dropped = 0
        #: Set while the database is unavailable (module rules).
        self.outage: Outage | None = None
        #: Report rows (overflow) to write with the next batch: outside the bound, never lost to an outage.
        self.notes: list[ErrorRow] = []
        self.writing: list[Op] = []  # the batch in hand
        self._backoff = Backoff()
        self._hurry = asyncio.Event()
        self._hurrying = 0  # callers waiting now: the linger is cut short while any is
        self.put_count = 0  # ops ever queued; with `done_count`, FIFO order says which are written
        self.done_count = 0
        self._progress = asyncio.Event()  # set (and replaced) after each batch and each try the database was down for
        self._retry_now = asyncio.Event()  # cuts the wait between tries short (`settle`)
        self._tries = 0  # tries started
        self._failed_try = 0  # the last try the database was unavailable for
        self._task: asyncio.Task[None] | None = None

    def put(self, op: Op) -> None:
        """Queue an op (raises asyncio.QueueFull); starts the task on first use."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="switchboard-recorder")
        self.queue.put_nowait(op)
        self.put_count += 1

    def note(self, row: ErrorRow) -> None:
        """Write `row` with the next batch. Called on overflow, when the queue is full: so there is a next batch."""
        self.notes.append(row)

    @property
    def held(self) -> int:
        """Records waiting to be written: the batch in hand, the queue, the notes."""
        return len(self.writing) + self.queue.qsize() + len(self.notes)

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
            taken = len(batch)
            if self.notes:
                batch += self.notes
                self.notes = []
            self.writing = batch
            started = time.monotonic()
            try:
                await self._write(batch)
            finally:
                self.writing = []
                flush_observed(time.monotonic() - started)
                for _ in range(taken):
                    self.queue.task_done()
                self.done_count += taken
                self._progressed()

    def _progressed(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _hurry_up(self) -> None:
        self._hurrying += 1
        self._hurry.set()

    def _unhurry(self) -> None:
        self._hurrying -= 1
        if not self._hurrying:
            self._hurry.clear()

    async def _write(self, batch: list[Op]) -> None:
        """One transaction; if the database refuses it, one op at a time so a bad op only loses itself."""
        if await self._attempt(batch, WRITE_ATTEMPTS) is None:
            return
        for op in batch:
            refused = await self._attempt([op], 1)
            if refused is not None:
                self.dropped += 1
                logger.error("Recorder could not write a %s record (conversation %s); it is lost",
                             type(op).__name__, getattr(op, "conversation_id", None), exc_info=refused)

    async def _attempt(self, ops: list[Op], attempts: int) -> Exception | None:
        """Write `ops` in one transaction: None once written, or the exception of the last of `attempts`
        refusals. While the database is unavailable this waits, however long (tries are not counted)."""
        refusals = 0
        while True:
            self._tries += 1
            try:
                await _apply(ops)
            except Exception as exc:
                if database_unavailable(exc):
                    await self._wait_for_database(exc, self._tries)
                    continue
                refusals += 1
                if refusals >= attempts:
                    return exc
                await asyncio.sleep(0.2 * refusals)
                continue
            self._resumed()
            return None

    async def _wait_for_database(self, exc: Exception, try_number: int) -> None:
        self._failed_try = try_number
        self._progressed()
        if self.outage is None:
            self.outage = Outage(since=time.monotonic(), error=type(exc).__name__)
            logger.warning("Database unavailable (%s): recording paused, %d records held in order; "
                           "retrying every %.1f-%.0f s until it returns", type(exc).__name__, self.held,
                           self._backoff.first, self._backoff.cap)
        self.outage.attempts += 1
        if recording_pg.enabled():
            recording_pg.discard_idle()  # all in doubt: the next try opens a new connection
        try:
            await asyncio.wait_for(self._retry_now.wait(), self._backoff.next())
        except TimeoutError:
            pass
        self._retry_now.clear()

    def _resumed(self) -> None:
        outage = self.outage
        if outage is None:
            return
        self.outage = None
        self._backoff.reset()
        logger.warning("Database available again after %.1f s (%d tries): recording resumed, writing the "
                       "%d records held", time.monotonic() - outage.since, outage.attempts + 1, self.held)

    async def settle(self) -> None:
        """Wait until every op queued so far is written, or until the database is found unavailable (the ops
        then wait in the queue and are written when it returns); skips the linger meanwhile.

        "Found unavailable" means by a try started after this call: during an outage the writer tries
        again at once, so a database that has just returned is not mistaken for one still down (a
        caller may read the records next, e.g. to replay a context)."""
        if self._task is None:
            return
        self._retry_now.set()
        tries = self._tries
        try:
            await self._until_written(self.put_count, lambda: self._failed_try > tries)
        finally:
            if not self.outage:
                self._retry_now.clear()
    async def flush(self) -> None:
        """Wait until every queued op is written (or refused), however long the database is unavailable."""
        if self._task is None:
            return
        self._hurry_up()
        try:
            await self.queue.join()
        finally:
            self._unhurry()

    async def written(self, mark: int) -> bool:
        """Wait until the first `mark` ops put are written (or refused): True; or until the database is
        unavailable: False at once (the ops stay queued, in order, and are written when it returns).
        Skips the linger meanwhile."""
        return await self._until_written(mark, lambda: self.outage is not None)

    async def _until_written(self, mark: int, give_up: Callable[[], bool]) -> bool:
        """True once the first `mark` ops put are written (or refused); False as soon as `give_up()` is true
        after a try, or the writer has stopped. The linger is cut short meanwhile."""
        if self.done_count >= mark:
            return True
        self._hurry_up()
        try:
            while self.done_count < mark:
                if self._task is None or give_up():
                    return False
                await self._progress.wait()
            return True
        finally:
            self._unhurry()

    async def stop(self, seconds: float | None = None) -> None:
        """Write what is queued, waiting at most `seconds` (None: however long), then end the task; what
        was not written by then is logged at error level as lost."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), seconds)
        except TimeoutError:
            self._report_lost(seconds)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._progressed()  # a caller of `written` stops waiting

    def _report_lost(self, seconds: float | None) -> None:
        lost = [*self.writing, *self.notes]
        while not self.queue.empty():
            lost.append(self.queue.get_nowait())
            self.queue.task_done()
        self.notes = []
        kinds = Counter(type(op).__name__ for op in lost)
        conversations = sorted({str(c) for op in lost if (c := getattr(op, "conversation_id", None))})
        why = (f"a database unavailable ({self.outage.error}) for {time.monotonic() - self.outage.since:.0f} s"
               if self.outage is not None else "a slow database")
        logger.error("Recorder stopped with %d records not written after waiting %s s for %s; they are lost "
                     "(the batch in hand may have been written): %s; conversations %s%s", len(lost), seconds, why,
                     ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())),
                     ", ".join(conversations[:LOST_CONVERSATIONS_SHOWN]),
                     " …" if len(conversations) > LOST_CONVERSATIONS_SHOWN else "")


_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Writer] = weakref.WeakKeyDictionary()


def shared_writer() -> Writer:
    """The running loop's writer."""
    return per_loop(_WRITERS, Writer)


def queued_ops() -> int:
    """Ops waiting in this process's shared writers (any thread may ask: a snapshot, for /metrics)."""
    return sum(writer.queue.qsize() for writer in list(_WRITERS.values()))


async def shutdown(seconds: float | None = None) -> None:
    """At process exit, after the relay's drain (sessions_app.serve): the running loop's writer writes
    what it holds, waiting at most `seconds` (default SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS) for a
    database that is unavailable or slow; what is left is logged as lost (`Writer.stop`)."""
    writer = _WRITERS.get(asyncio.get_running_loop())
    if writer is not None:
        await writer.stop(shutdown_seconds() if seconds is None else seconds)

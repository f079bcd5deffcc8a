"""The recorder's database threads: user input and the writer's ORM batches run here.

Never on Django's single thread-sensitive database thread, so a create never queues behind batches
or page reads. Each thread keeps its own connection (so INPUT_THREADS is also the most connections
the recorder's threads open per process), re-checked only after an error, after an idle second or
past CONN_MAX_AGE, and closed when the database turns out to be unavailable (availability.py), so
the next use opens a new one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from . import sqlite as recording_sqlite
from .availability import database_unavailable
from .ops import apply_batch

__all__ = ["INPUT_THREADS", "INPUT_EXECUTOR", "GIL_SWITCH_INTERVAL", "on_db_thread", "read_on_db_thread"]

# The writer has at most one batch in flight, so at least INPUT_THREADS - 1 threads are always free
# for input.
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


def _on_db_thread(function: Callable[..., Any], *args: Any, turn: bool = True) -> Any:
    """Run `function` on this recorder thread's own, persistent connection.

    `database_sync_to_async` would run `close_old_connections` around every call: on SQLite
    (CONN_MAX_AGE 0) that reconnects per write, on PostgreSQL it health-checks per write. Here a
    connection is only re-checked after an error, after an idle second, or past CONN_MAX_AGE
    (not for SQLite, whose connections are local files and stay open), and closed when the
    database is unavailable: whatever broke, the next call starts on a new connection.
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
        if connection.vendor == "sqlite" and turn:
            with _SQLITE_WRITES.hold(batch=function in _BATCH_WRITES):
                return function(*args)
        return function(*args)
    except Exception as exc:
        if database_unavailable(exc) and not connection.in_atomic_block:
            _close_quietly(connection)
        raise
    finally:
        _thread_state.used = time.monotonic()


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # a broken connection may fail to close; it is dropped either way
        connection.connection = None


async def _db(function: Callable[..., Any], *args: Any, turn: bool = True) -> Any:
    """Await `function(*args)` on a recorder database thread (`turn`: at SQLite's write lock, _on_db_thread)."""
    return await asyncio.get_running_loop().run_in_executor(
        INPUT_EXECUTOR, partial(_on_db_thread, function, *args, turn=turn))


async def on_db_thread(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Await `function(**kwargs)` on a recorder database thread, like an input write (SQLite: at the write
    lock): a socket's first-turn ORM work, which on Django's one thread-sensitive thread queued behind
    every other socket's and page's (50 sockets opening at once waited 0.3-0.5 s, bench/README.md)."""
    return await _db(partial(function, **kwargs))


async def read_on_db_thread(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`on_db_thread` for a function that reads: on SQLite it does not queue for the write lock (WAL readers
    never wait for a writer), so a handshake's token lookup does not wait behind other sockets' writes (at 75
    new sockets a second it waited 40-90 ms there, bench/capacity.py). A rare write inside one, such as a
    token's last use (once a minute), waits for the lock in SQLite's busy handler instead."""
    return await _db(partial(function, **kwargs), turn=False)

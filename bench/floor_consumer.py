"""Floors: the minimal consumer plus the least that "write the input before sending it" can cost.

The issue's target compares Switchboard with the minimal consumer (bench/minimal_consumer.py),
while two of its rules put work between a client's `response.create` and its send upstream:
the input is committed to the database first, and the event loop does no synchronous database
work. These consumers do only that much, and nothing else Switchboard does, so that
bench/relay.py can show what the rules alone cost at each load, next to Switchboard:

* `thread`      awaits a no-op on a worker thread, then forwards: the least any off-loop write
                costs (a thread hop there and back, no database at all);
* `sqlite`      commits the frame as one row on a worker thread (its own SQLite file in WAL mode,
                synchronous=NORMAL: Switchboard's SQLite settings), then forwards;
* `postgresql`  commits the frame as one row from the event loop on a psycopg `AsyncConnection`
                (prepared statement, autocommit, synchronous commit: Switchboard's way), then forwards.

    BENCH_UPSTREAM_URL=ws://… BENCH_FLOOR=postgresql BENCH_FLOOR_DATABASE=postgresql://… \\
        daphne -b 127.0.0.1 -p 9002 bench.floor_consumer:application

bench/relay.py creates the table `bench_floor (id, body)` before the server starts. Upstream frames
go back exactly as in the minimal consumer.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from bench.minimal_consumer import ForwardingConsumer  # sets Django up first
from sessions_app.recording.pg import POOL_SIZE  # PostgreSQL connections per process, as Switchboard's
from sessions_app.recording.recorder import GIL_SWITCH_INTERVAL

FLOOR = os.environ.get("BENCH_FLOOR", "")
DATABASE = os.environ.get("BENCH_FLOOR_DATABASE", "")

# The writing thread must win the GIL back from the busy loop after each call: Switchboard's
# interval, so the floor is not handicapped by the 5 ms default.
sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="floor")
_sqlite = threading.local()
_sqlite_lock = threading.Lock()  # one writer at a time, as Switchboard's write turns


def _noop() -> None:
    return None


def _sqlite_commit(body: str) -> None:
    connection = getattr(_sqlite, "connection", None)
    if connection is None:
        connection = _sqlite.connection = sqlite3.connect(DATABASE, isolation_level=None)
        connection.execute("PRAGMA synchronous=NORMAL")  # the file is in WAL mode (bench/relay.py made it)
    with _sqlite_lock:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO bench_floor (body) VALUES (?)", (body,))
        connection.execute("COMMIT")


class _PostgresPool:
    def __init__(self) -> None:
        self._idle: asyncio.Queue | None = None
        self._opened = 0

    async def commit(self, body: str) -> None:
        import psycopg

        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and self._opened < POOL_SIZE:
            self._opened += 1
            connection = await psycopg.AsyncConnection.connect(DATABASE, autocommit=True)
        else:
            connection = await self._idle.get()
        try:
            await connection.execute("INSERT INTO bench_floor (body) VALUES (%s)", (body,), prepare=True)
        finally:
            self._idle.put_nowait(connection)


_postgres = _PostgresPool()


class FloorConsumer(ForwardingConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        body = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        if FLOOR == "thread":
            await asyncio.get_running_loop().run_in_executor(_executor, _noop)
        elif FLOOR == "sqlite":
            await asyncio.get_running_loop().run_in_executor(_executor, _sqlite_commit, body)
        elif FLOOR == "postgresql":
            await _postgres.commit(body)
        else:
            raise RuntimeError(f"unknown BENCH_FLOOR {FLOOR!r}")
        await super().receive(text_data, bytes_data)


application = FloorConsumer.as_asgi()

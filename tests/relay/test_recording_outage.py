"""The recorder through a database outage: what it holds waits, in order, and is written when the database
returns; a full queue stays loud; a writer that must stop says what it could not write.

The outage here is SQLite's: another writer holds the database's write lock past the busy timeout, so every
write the recorder tries fails with "database is locked", as it would behind a stuck process. The busy timeout
is 1 s here (`sqlite_path`), not settings' 20 s, which every held write would otherwise wait out.
tests/resilience/test_recording_outage.py stops a real PostgreSQL cluster under a streaming response.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from sessions_app.models import ErrorEvent
from sessions_app.recording.availability import Backoff, database_unavailable
from sessions_app.recording.recorder import ErrorRow, Recorder, Writer
from sessions_app.recording.threads import INPUT_EXECUTOR, INPUT_THREADS
from tests.held_database import HeldDatabase

from .conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unreachable_database_is_told_apart_from_a_refused_write():
    def wrapped(driver_error: Exception, django_class: type[Exception]) -> Exception:
        try:
            raise django_class(*driver_error.args) from driver_error
        except django_class as exc:
            return exc

    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # SQLITE_BUSY, as sqlite3 sets it
    bad_statement = sqlite3.OperationalError("no such table: nowhere")
    bad_statement.sqlite_errorcode = 1  # SQLITE_ERROR
    assert database_unavailable(locked)
    assert database_unavailable(wrapped(locked, OperationalError))
    assert database_unavailable(psycopg.OperationalError("connection failed: Connection refused"))
    assert database_unavailable(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))
    assert database_unavailable(wrapped(psycopg.InterfaceError("the connection is closed"), OperationalError))
    assert database_unavailable(ConnectionResetError())
    assert not database_unavailable(bad_statement)
    assert not database_unavailable(wrapped(psycopg.errors.ForeignKeyViolation("no such conversation"),
                                            IntegrityError))
    assert not database_unavailable(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))
    assert not database_unavailable(ValueError("a bug of ours"))


def test_retries_back_off_from_a_fifth_of_a_second_to_five_seconds():
    backoff = Backoff()
    assert [backoff.next() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.2


def WriteLock(path: str) -> HeldDatabase:  # noqa: N802 (reads as the context manager it returns)
    """Another connection holding SQLite's write lock (BEGIN EXCLUSIVE) until released."""
    return HeldDatabase({"ENGINE": "django.db.backends.sqlite3", "NAME": path})


def _on_every_recorder_thread(function: Callable[[], None]) -> None:
    """`function()` once on each of the recorder's threads: each waits at a barrier, so none runs two."""
    barrier = threading.Barrier(INPUT_THREADS)

    def run() -> None:
        barrier.wait(10)
        function()

    for future in [INPUT_EXECUTOR.submit(run) for _ in range(INPUT_THREADS)]:
        future.result(20)


@pytest.fixture
def sqlite_path() -> Iterator[str]:
    """The test database's file, with SQLite's busy timeout at 1 s on the recorder's threads for the test."""
    from django.db import DEFAULT_DB_ALIAS, connection, connections

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock")
    options = connection.settings_dict["OPTIONS"]  # one dict, read by every thread's connection as it opens
    busy_timeout = options["timeout"]

    def reconnect() -> None:
        connections[DEFAULT_DB_ALIAS].close()  # the next write opens a connection with the timeout now set

    options["timeout"] = 1
    _on_every_recorder_thread(reconnect)
    try:
        yield connection.settings_dict["NAME"]
    finally:
        options["timeout"] = busy_timeout
        _on_every_recorder_thread(reconnect)


async def _until_unavailable(writer: Writer) -> None:
    for _ in range(300):  # the busy timeout (1 s) runs out first
        if writer.outage is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the writer never found the database unavailable")


def _row(code: str) -> ErrorRow:
    return ErrorRow(source="relay", code=code, message="held through an outage")


async def test_records_wait_in_order_through_an_outage_and_an_overflow_is_written_when_it_ends(sqlite_path, settings,
                                                                                           caplog):
    settings.SWITCHBOARD_RECORDER_MAX_PENDING = 6  # a tiny bound, from the setting
    caplog.set_level(logging.INFO, logger="sessions_app.recording")
    told = []

    async def on_overflow():
        told.append(True)

    writer = Writer()
    recorder = Recorder(writer=writer, on_overflow=on_overflow)
    assert writer.queue.maxsize == 6
    async with WriteLock(sqlite_path):
        recorder.add(_row("op_0"))
        recorder.add(_row("op_1"))
        await _until_unavailable(writer)  # op_0 and op_1 are the batch in hand
        for i in range(2, 10):  # the queue holds op_2 to op_7; op_8 and op_9 overflow
            recorder.add(_row(f"op_{i}"))
        assert recorder.dropped == 2 and writer.held == 2 + 6 + 1  # the overflow's own row is kept aside
        await asyncio.sleep(0)
        assert told == [True]  # the client is told at once
        released_at = timezone.now()
    await writer.flush()  # the lock is gone: everything held is written
    rows = await db(lambda: list(ErrorEvent.objects.order_by("pk").values_list("code", "created_at")))()
    assert [code for code, _ in rows] == [f"op_{i}" for i in range(8)] + ["recording_overflow"]
    assert all(at < released_at for _, at in rows)  # when each happened, not when the outage let it be written
    assert writer.dropped == 0 and writer.outage is None
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sessions_app.recording"]
    assert [m for level, m in logged if level == logging.WARNING] == [
        "Database unavailable (OperationalError): recording paused, 2 records held in order; "
        "retrying every 0.2-5 s until it returns", logged[-1][1]]
    assert logged[-1][1].startswith("Database available again after ")
    assert logged[-1][1].endswith("recording resumed, writing the 9 records held")
    assert sum("Recorder queue full" in m for level, m in logged if level == logging.ERROR) == 2
    assert not any(r.exc_info for r in caplog.records if r.name == "sessions_app.recording")  # no tracebacks
    await recorder.close()


async def test_a_socket_waits_for_its_own_records_without_the_linger_and_not_through_an_outage(sqlite_path):
    """`Recorder.written` is what the relay holds a response's last event on (relay/stream.py)."""
    writer = Writer(linger=30.0)  # a linger no test could wait out: `written` must cut it short
    recorder = Recorder(writer=writer)
    recorder.add(_row("mine"))
    assert await asyncio.wait_for(recorder.written(60), 10) is True
    assert await db(lambda: list(ErrorEvent.objects.values_list("code", flat=True)))() == ["mine"]
    assert await recorder.written(60) is True  # nothing queued since: no wait at all

    async with WriteLock(sqlite_path):
        recorder.add(_row("held"))
        # `written` cuts the linger short, and its write waits out the busy timeout and finds the database out
        assert await asyncio.wait_for(recorder.written(60), 10) is False
        assert writer.outage is not None
        assert await asyncio.wait_for(recorder.written(60), 10) is False  # still out: no wait, no write tried
    await writer.flush()
    assert await db(lambda: ErrorEvent.objects.filter(code="held").exists())()
    await recorder.close()


async def test_a_writer_that_must_stop_during_an_outage_waits_a_bounded_time_and_says_what_is_lost(sqlite_path,
                                                                                                 caplog):
    writer = Writer()
    recorder = Recorder(writer=writer)
    async with WriteLock(sqlite_path):
        recorder.add(_row("first"))
        await _until_unavailable(writer)
        recorder.add(_row("second"))
        await writer.stop(0.5)
    [lost] = [r.getMessage() for r in caplog.records if "Recorder stopped with" in r.getMessage()]
    assert lost.startswith("Recorder stopped with 2 records not written after waiting 0.5 s for a database "
                           "unavailable (OperationalError)")
    assert lost.split(": ", 1)[1].startswith("2 ErrorRow")
    assert writer.held == 0


async def test_on_postgresql_a_cut_connection_costs_a_retry_not_a_record(caplog):
    from django.db import connection

    from sessions_app.recording import pg as recording_pg

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own connections")
    caplog.set_level(logging.INFO, logger="sessions_app.recording")
    writer = Writer()
    recorder = Recorder(writer=writer)
    recorder.add(_row("before"))
    await writer.flush()
    [pool] = [p for p in recording_pg._ALL if p.idle]
    pids = [c.info.backend_pid for c, _ in pool.idle]

    def cut():  # what a database restart does to the writer's connections
        with connection.cursor() as cursor:
            for pid in pids:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await db(cut)()
    for i in range(5):
        recorder.add(_row(f"after_{i}"))
    await writer.flush()
    codes = await db(lambda: list(ErrorEvent.objects.order_by("pk").values_list("code", flat=True)))()
    assert codes == ["before"] + [f"after_{i}" for i in range(5)]
    assert writer.dropped == 0 and writer.outage is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessions_app.recording"]
    assert len(warnings) == 2 and warnings[0].startswith("Database unavailable (")
    assert warnings[1].startswith("Database available again after ")
    assert all(c.info.backend_pid not in pids for c, _ in pool.idle)  # a new connection took over
    await recorder.close()

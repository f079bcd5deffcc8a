"""The connections a test run leaves open, closed before PostgreSQL is asked to drop the test database.

The recorder keeps a Django connection on each of its input threads (CONN_MAX_AGE) and its own async
PostgreSQL pools; a test that used them and did not close them would make `DROP DATABASE` fail at the
end of the run ("being accessed by other users"), leaving the test database behind.
"""

from __future__ import annotations

import threading
import time

from django.db import DatabaseError, connection, connections


def close_input_thread_connections() -> None:
    """Run connections.close_all once on every thread of the recorder's input executor."""
    from sessions_app.recording.threads import INPUT_EXECUTOR, INPUT_THREADS

    barrier = threading.Barrier(INPUT_THREADS, timeout=5)

    def close_here() -> None:
        barrier.wait()  # holds each task on its own thread until all threads have one
        connections.close_all()

    for future in [INPUT_EXECUTOR.submit(close_here) for _ in range(INPUT_THREADS)]:
        future.result()


def close_recorder_connections() -> None:
    """The input threads' connections and the async pools (recording/pg.py)."""
    from sessions_app.recording import pg as recording_pg

    close_input_thread_connections()
    recording_pg.close_all()


def other_sessions(wait: float = 5.0) -> list[tuple]:
    """PostgreSQL sessions on this test database besides this thread's, after waiting up to `wait` seconds
    for them to end (a live server's backends outlive its process by a moment): empty on SQLite, and when the
    run set up no test database."""
    if connection.vendor != "postgresql":
        return []
    deadline = time.monotonic() + wait
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid, application_name, client_addr, backend_start, state, left(query, 200) "
                               "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                rows = cursor.fetchall()
        except DatabaseError:  # no test database to look at (tests/production alone set none up)
            return []
        if not rows or time.monotonic() >= deadline:
            return rows
        time.sleep(0.1)

"""Is the database unavailable, or does it refuse this one write? The writer's retry policy.

The recorder treats the two failures differently (recorder.py's rules):

* *Unavailable*: the database cannot be reached or cannot take writes for now; any write would fail
  the same way. The connection was refused or lost (PostgreSQL stopped or restarting, the network
  cut), the server is shutting down or full of connections, or SQLite's file cannot be opened,
  read or written, or stays locked past its busy timeout. The writer keeps its batch and everything
  behind it, in order, and tries again with `Backoff`.
* *Refused*: the database is there and says no to this write (an integrity or data error, a bad
  statement). Retrying the same write later changes nothing, so the op is dropped alone, loudly.

Django wraps the driver's exception (raised `from` it), so the driver's own class decides; only a
Django error with no driver cause is judged by Django's class.
"""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from django.db import InterfaceError, OperationalError

__all__ = ["database_unavailable", "log_failure", "Backoff", "FIRST_RETRY_SECONDS", "MAX_RETRY_SECONDS"]

FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0

# SQLite's primary result codes that mean "the database cannot take this now", whatever the write:
# BUSY and LOCKED (another writer kept the lock past the busy timeout), NOMEM, READONLY (the file or
# its directory became read-only), IOERR, FULL (the disk), CANTOPEN (the file or its directory went
# away) and PROTOCOL (a locking race). SQLITE_ERROR (a bad statement, a missing table) is a refusal.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database is unavailable (retry everything later) rather than refusing one write."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, sqlite3.Error):
            if isinstance(cause, sqlite3.OperationalError):
                code = getattr(cause, "sqlite_errorcode", None)
                return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE
            # "Cannot operate on a closed database": the connection is gone, not the write refused.
            return isinstance(cause, sqlite3.ProgrammingError) and "closed" in str(cause)
        if isinstance(cause, psycopg.Error):
            # Connection failures, a server shutting down (57P01-57P03), too many connections (53300),
            # serialization failures and deadlocks: psycopg's OperationalError family. Integrity,
            # data and programming errors are refusals.
            return isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError))
        if isinstance(cause, OSError):  # a socket error below the driver
            return True
        cause = cause.__cause__
    return isinstance(exc, (OperationalError, InterfaceError))


def log_failure(log: logging.Logger, failure: BaseException, message: str, *args: object) -> None:
    """Log a failed operation: while the database is unavailable one warning line naming the exception's
    class (an outage is expected, and would otherwise log a traceback per request); any other failure with
    its traceback."""
    if database_unavailable(failure):
        log.warning(message + " (database unavailable: %s)", *args, type(failure).__name__)
    else:
        log.error(message, *args, exc_info=failure)


class Backoff:
    """Capped exponential delays between retries while the database is unavailable: 0.2 s doubling to 5 s."""

    def __init__(self, first: float = FIRST_RETRY_SECONDS, cap: float = MAX_RETRY_SECONDS) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long, up to the cap."""
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first

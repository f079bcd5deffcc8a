"""Reads from the event loop itself on PostgreSQL: a gateway handshake's token and profile.

Why: every socket an agent opens reads its token (with its user and limits) and the profile its first turn
will use (gateway_auth.py). On a recorder thread (threads.py) each read cost a thread's trip and, while
the loop was busy, the thread's fight for the GIL after each database call: at 150 new sockets a second
that thread's work was about a seventh of the serving Daphne's samples, and the process waited for a core
about half the time (a sixth once the reads moved here; bench/README.md, 2026-12-04). On PostgreSQL the
loop reads them itself on its own async connections (pg.py), in one statement (models/access.py,
`read_handshake`), prepared at its first use, and awaits only a socket. SQLite has no async driver: there
the reads stay on a recorder thread (`reads_on_loop` says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from . import pg as recording_pg

__all__ = ["read_row", "reads_on_loop"]


def reads_on_loop() -> bool:
    """Whether `read_row` may serve a read: on PostgreSQL, not on SQLite."""
    return recording_pg.enabled()


async def read_row(sql: str, params: list[Any]) -> Sequence[Any] | None:
    """A statement's first row (None: no row), from this loop's connections (models/rows.py's `Fetch`).
    Errors as Django's cursor raises them, as `insert_row`'s are: an unavailable database is Django's
    OperationalError, which outage.py answers with 503 / 4503."""
    with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
        return await recording_pg.fetch_one(sql, params)

"""SQLite: the usual create, a new row, and the recorder's plain batches, straight on a thread's sqlite3
connection.

Why: on SQLite every write runs on a recorder thread, and the Python it runs there holds the GIL
the event loop needs to relay (Django's atomic and cursor wrappers, an ORM query for the pending
compaction check). The same statements the PostgreSQL path sends (`recording_input.at_once_statement`,
`recording_ops.batch_statements`) run here as a few calls on the raw connection: BEGIN IMMEDIATE,
the inserts or updates, COMMIT.

Rules:

* Called on a recorder thread (`recording._on_db_thread`), which holds this process's turn at
  SQLite's write lock and a healthy connection, outside any atomic block.
* Any error rolls the transaction back and propagates: the caller takes the general path or retries.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from .input import Direct, RequestWritten, RowDelete, RowInsert
from .ops import Statement

__all__ = ["write_at_once", "write_many_at_once", "apply_statements"]

_QMARK: dict[str, str] = {}


def _qmark(sql: str) -> str:
    """Our statements' %s placeholders as sqlite3's ? (they hold no other %)."""
    converted = _QMARK.get(sql)
    if converted is None:
        converted = _QMARK[sql] = sql.replace("%s", "?")
    return converted


def _raw() -> sqlite3.Connection:
    connection = connections[DEFAULT_DB_ALIAS]
    connection.ensure_connection()
    assert not connection.in_atomic_block
    return connection.connection


def _in_transaction(raw: sqlite3.Connection, work) -> Any:
    """BEGIN IMMEDIATE, `work()`, COMMIT (ROLLBACK when it returns None); nothing stays open on an error,
    including a COMMIT refused by a deferred foreign key."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        raw.execute("ROLLBACK" if result is None else "COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return result


def _insert(raw: sqlite3.Connection, statement: Direct) -> RequestWritten | Any | None:
    if isinstance(statement, (RowInsert, RowDelete)):
        return statement.written(raw.execute(_qmark(statement.sql), statement.params).fetchone())
    written = statement.written(raw.execute(_qmark(statement.sql), statement.params).fetchone())
    if written is not None and statement.items_sql is not None:
        raw.execute(_qmark(statement.items_sql),
                    [value for params in statement.item_params for value in (written.record_pk, *params)])
    return written


def write_at_once(statement: Direct) -> RequestWritten | Any | None:
    """Record the usual create (or a new row: its pk) in one short transaction; None when a compaction is
    pending."""
    raw = _raw()
    return _in_transaction(raw, lambda: _insert(raw, statement))


def write_many_at_once(statements: list[Direct]) -> list[RequestWritten | Any | None | Exception]:
    """Several usual creates and new rows in one transaction (one turn at the write lock, one commit).

    If one is refused, the whole transaction rolls back and raises: the caller (recording_groups)
    then writes each create again alone, so only the refused one fails. A savepoint per create
    would spare that second round, but costs two more calls per create, and every call is a GIL
    round trip for this thread against the busy event loop; refusals do not happen in practice
    (foreign keys, the likely one, are checked at COMMIT anyway)."""
    if len(statements) == 1:
        try:
            return [write_at_once(statements[0])]
        except Exception as exc:
            return [exc]
    raw = _raw()
    return _in_transaction(raw, lambda: [_insert(raw, statement) for statement in statements])


def apply_statements(statements: list[Statement]) -> None:
    """A recorder batch (`recording_ops.batch_statements`) in one transaction."""
    raw = _raw()

    def work() -> bool:
        for sql, params in statements:
            raw.execute(_qmark(sql), params)
        return True

    _in_transaction(raw, work)

"""Whole model rows from a hand-written SELECT, for the reads every new gateway socket makes.

Building a query and its compiler cost 300-800 µs per read on the bench machine, the database 20-30 µs:
the token check and the new conversation's profile are read for every socket an agent opens, so each
is one statement written once per database (access.py, `ApiToken.authenticate_token`; upstream.py,
`UpstreamProfile.for_new_conversation`). A statement selects `ModelColumns.sql` of each model it
reads; `ModelColumns.instance` turns that model's slice of a result row into an instance the way the
ORM does: Django's converters for each column (an aware datetime from SQLite's text, a bool from its
0/1, decoded JSON), then `Model.from_db`. tests/test_model_rows.py compares the instances with the
ORM's own, field by field, on both databases.

On PostgreSQL the gateway's handshake runs the same statements from the event loop (`Fetch`: recording's
`read_row`, on the loop's own async connections), so a burst of handshakes takes no thread's trip and no
thread fights the loop for the GIL; the sync `read_one` serves everything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import psycopg
from django.conf import settings
from django.db import connections, models, router

__all__ = ["Fetch", "ModelColumns", "Read", "read_for", "read_one", "prepares"]

Converter = Callable[[Any, Any, Any], Any]
Fetch = Callable[[str, list[Any]], Awaitable[Sequence[Any] | None]]  # a statement's first row (None: no row)


class Read(Protocol):
    """A hand-written SELECT of whole rows, built once per database from its connection."""

    sql: str


R = TypeVar("R", bound=Read)
_READS: dict[tuple[Callable[[Any], Any], str, str], Any] = {}
# A psycopg connection prepares a statement asked to (`prepare=True`) only if its threshold is not None, and
# any statement a server-binding cursor ran this many times: never, in practice. Django's own cursors bind
# client-side and never prepare.
ONLY_WHEN_ASKED = 2**31


def read_for(model: type[models.Model], build: Callable[[Any], R]) -> R:
    """`build(connection)` for `model`'s read database, built once per builder and database (no query)."""
    return _built(build, connections[router.db_for_read(model)])


def _built(build: Callable[[Any], R], connection) -> R:
    key = (build, connection.alias, connection.vendor)
    read = _READS.get(key)
    if read is None:
        read = _READS[key] = build(connection)
    return read


def read_one(model: type[models.Model], build: Callable[[Any], R], params: list[Any]) -> tuple[R, Sequence[Any] | None]:
    """Run `read_for(model, build).sql` on `model`'s read database with `params`: the read, to turn the row
    into instances, and its first row (None: no row)."""
    connection = connections[router.db_for_read(model)]
    read = _built(build, connection)
    if connection.vendor == "postgresql" and prepares(connection):
        return read, _prepared_row(connection, read.sql, params)
    with connection.cursor() as cursor:
        cursor.execute(read.sql, params)
        return read, cursor.fetchone()


def prepares(connection) -> bool:
    """Whether Switchboard prepares its hot statements on this PostgreSQL database (these reads, and the input
    written from the loop, recording/pg.py): `SWITCHBOARD_PG_PREPARE`, unless the database's OPTIONS set
    psycopg's `prepare_threshold` themselves (then psycopg prepares as they say)."""
    return settings.SWITCHBOARD_PG_PREPARE and "prepare_threshold" not in connection.settings_dict["OPTIONS"]


def _prepared_row(connection, sql: str, params: list[Any]) -> Sequence[Any] | None:
    """The first row of `sql`, a statement prepared on this connection at its first use. Django's cursors
    bind values client-side, so PostgreSQL parsed and planned these reads every time: half its work for
    the token check (pg_stat_statements, bench/README.md). A server-binding cursor on Django's connection
    keeps its loaders (aware datetimes, JSON as text) and its error wrapping."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django's default: psycopg prepares nothing, even when asked to
        raw.prepare_threshold = ONLY_WHEN_ASKED
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


class ModelColumns:
    """A model's concrete columns as `alias`.`column`, …, and the instance made from their values."""

    def __init__(self, model: type[models.Model], alias: str, connection) -> None:
        self.model = model
        self._fields = model._meta.concrete_fields
        quote = connection.ops.quote_name
        self.sql = ", ".join(f"{alias}.{quote(field.column)}" for field in self._fields)
        self.width = len(self._fields)
        self._attnames = [field.attname for field in self._fields]
        self._pk_index = self._fields.index(model._meta.pk)
        self._connection = connection
        self._converters: list[tuple[int, list[Converter], Any]] = []
        for index, field in enumerate(self._fields):  # what SQLCompiler.get_converters gathers, per column
            column = field.get_col(alias)
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if converters:
                self._converters.append((index, converters, column))

    def instance(self, row: Sequence[Any], start: int = 0) -> models.Model | None:
        """The instance of `row[start:start + width]`; None when its primary key is NULL (an outer join
        found no row)."""
        values = list(row[start:start + self.width])
        if values[self._pk_index] is None:
            return None
        for index, converters, column in self._converters:
            value = values[index]
            for converter in converters:
                value = converter(value, column, self._connection)
            values[index] = value
        return self.model.from_db(self._connection.alias, self._attnames, values)

"""Plain SQL for model rows: what `bulk_create` and `update()` do, without the query machinery.

On the relay's per-turn path, and for the rows every new gateway socket writes (its conversation, its
upstream socket), building a query and a compiler per call cost more than the database did; these build
the statement from per-column adapters made once (columns.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, router

from .columns import adapter, insert_columns, numbered_pk

__all__ = ["Statement", "insert_statement", "insert_rows", "update_statement", "update_row", "delete_statement",
           "lock_user_row"]

Statement = tuple[str, list[Any]]  # SQL with %s placeholders, and its parameters


def insert_statement(rows: list[Any], *, returning: bool = False, guard: Statement | None = None) -> Statement:
    """One INSERT of model instances of one model (see `insert_rows`).

    With `guard` (a condition and its parameters; one row only) the row is inserted only if the condition
    holds when the statement runs: `INSERT … SELECT <values> WHERE <guard>`, so a count and the insert it
    allows are one statement. Then no row RETURNING means the guard refused it."""
    model = type(rows[0])
    connection = connections[router.db_for_write(model)]
    columns = insert_columns(model, connection)
    quote = connection.ops.quote_name
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f, _ in columns)}) "
    params = [adapt(f.pre_save(row, True)) for row in rows for f, adapt in columns]
    if guard is None:
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        sql += f"VALUES {', '.join([one] * len(rows))}"
    else:
        assert len(rows) == 1, "a guarded INSERT writes one row"
        sql += f"SELECT {', '.join(['%s'] * len(columns))} WHERE {guard[0]}"
        params += guard[1]
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql, params


def insert_rows(rows: list[Any], *, returning: bool = False) -> list[Any]:
    """INSERT model instances of one model in one statement; their pks if `returning`.

    What `bulk_create` does for these plain rows (every field's `pre_save` and `get_db_prep_save`,
    so defaults, auto_now_add and JSON adapt the same way), without building a query and compiler
    per call: on the relay's per-turn path that machinery cost more than the database did.
    A pk the database numbers is read back (SQLite 3.35+ and PostgreSQL both return the new ids in
    VALUES order); one the instance has (a UUID) is sent and kept.
    """
    if not rows:
        return []
    alias = router.db_for_write(type(rows[0]))
    numbered = numbered_pk(type(rows[0]))
    sql, params = insert_statement(rows, returning=returning and numbered)
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        if not returning:
            return []
        if numbered:
            for row, found in zip(rows, cursor.fetchall(), strict=True):
                row.pk = found[0]
    for row in rows:
        row._state.adding, row._state.db = False, alias
    return [row.pk for row in rows]


_UPDATES: dict[tuple[Any, ...], tuple[str, list[Callable[[Any], Any]], Callable[[Any], Any]]] = {}


def update_statement(model: type[Any], pk: Any, values: dict[str, Any]) -> Statement:
    """`model.objects.filter(pk=pk).update(**values)` for plain values, without the query machinery.

    SQL and per-column adapters are made once per (model, columns, database)."""
    connection = connections[router.db_for_write(model)]
    key = (model, tuple(values), connection.alias, connection.vendor)
    shape = _UPDATES.get(key)
    if shape is None:
        quote, meta = connection.ops.quote_name, model._meta
        fields = [meta.get_field(name) for name in values]
        sql = (f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
               f"WHERE {quote(meta.pk.column)} = %s")
        pk_field = meta.pk
        shape = _UPDATES[key] = (sql, [adapter(f, connection) for f in fields],
                                 lambda value: pk_field.get_db_prep_value(value, connection))
    sql, adapters, adapt_pk = shape
    params = [adapt(value) for adapt, value in zip(adapters, values.values(), strict=True)]
    params.append(adapt_pk(pk))
    return sql, params


def update_row(model: type[Any], pk: Any, values: dict[str, Any]) -> None:
    with connections[router.db_for_write(model)].cursor() as cursor:
        cursor.execute(*update_statement(model, pk, values))


_DELETES: dict[tuple[Any, ...], tuple[str, Callable[[Any], Any]]] = {}


def delete_statement(model: type[Any], pk: Any) -> Statement:
    """`DELETE … WHERE pk = %s RETURNING pk`: the row, if it was there (one row back) or not (none), without
    the deletion collector (no model here has rows that cascade from these). Made once per (model, database)."""
    connection = connections[router.db_for_write(model)]
    key = (model, connection.alias, connection.vendor)
    shape = _DELETES.get(key)
    if shape is None:
        quote, meta = connection.ops.quote_name, model._meta
        column = quote(meta.pk.column)
        shape = _DELETES[key] = (f"DELETE FROM {quote(meta.db_table)} WHERE {column} = %s RETURNING {column}",
                                 lambda value, field=meta.pk: field.get_db_prep_value(value, connection))
    sql, adapt_pk = shape
    return sql, [adapt_pk(pk)]


def lock_user_row(user_pk: int) -> Statement:
    """`SELECT … FOR NO KEY UPDATE` of the user's row (PostgreSQL): run before a guarded INSERT that counts the
    user's rows, it serialises that user's guarded INSERTs. Not FOR UPDATE: the foreign-key checks of the
    user's other new rows (a conversation, a record) take KEY SHARE on the same row, and need not wait."""
    connection = connections[router.db_for_write(get_user_model())]
    meta, quote = get_user_model()._meta, connection.ops.quote_name
    return f"SELECT 1 FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s FOR NO KEY UPDATE", [user_pk]

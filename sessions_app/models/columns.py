"""Model values as database parameters, fast: the recorder's statements are built per turn.

Django's `Field.get_db_prep_save` is the reference; these give the same parameters for the values
the recorder writes (strings, ints, aware datetimes, JSON-able dicts) with the per-call machinery
resolved once per field and database, and fall back to it for anything else. `recording_ops`
(updates and inserts of the queued ops) and `recording_input` (the user's input) use them.
tests/test_recording_columns.py compares them with Django's own, field by field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import models

__all__ = ["adapter", "insert_columns", "numbered_pk", "Columns"]


# Model fields whose database value is the Python value itself, for values of exactly these types.
_PLAIN: tuple[tuple[type[models.Field], frozenset[type]], ...] = (
    (models.BooleanField, frozenset({bool, type(None)})),
    (models.CharField, frozenset({str, type(None)})),
    (models.TextField, frozenset({str, type(None)})),
)


def adapter(field: models.Field, connection) -> Callable[[Any], Any]:
    """`field.get_db_prep_save(value, connection)`, with the common cases short-cut: these run for
    every column of every row the recorder writes (on PostgreSQL on the event loop). Anything
    unusual (another type, an expression) takes Django's own way."""
    def general(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    own = type(field)
    if own.get_db_prep_save is not models.Field.get_db_prep_save and not isinstance(field, models.ForeignKey):
        return general
    if isinstance(field, models.DateTimeField):
        adapt_moment = connection.ops.adapt_datetimefield_value

        def moment(value: Any) -> Any:  # aware datetimes (timezone.now()) need no get_prep_value
            if value is None or (type(value) is datetime and value.tzinfo is not None):
                return adapt_moment(value)
            return general(value)
        return moment
    if isinstance(field, models.IntegerField) and not isinstance(field, models.AutoField):
        adapt_integer, kind = connection.ops.adapt_integerfield_value, field.get_internal_type()

        def integer(value: Any) -> Any:
            if type(value) is int:
                return adapt_integer(value, kind)
            return None if value is None else general(value)
        return integer
    if isinstance(field, models.ForeignKey) and isinstance(field.target_field, models.AutoField):
        def key(value: Any) -> Any:
            return value if value is None or type(value) is int else general(value)
        return key
    if own.get_db_prep_value is models.Field.get_db_prep_value:
        for kind, types in _PLAIN:
            if isinstance(field, kind):
                def plain(value: Any, types: frozenset[type] = types) -> Any:
                    return value if type(value) in types else general(value)
                return plain
    return general


def numbered_pk(model: type[Any]) -> bool:
    """Whether the database numbers `model`'s primary key (an INSERT leaves it out and reads it back); else the
    instance has it (a UUID), and an INSERT sends it."""
    return isinstance(model._meta.pk, models.AutoField)


_INSERT_COLUMNS: dict[tuple[Any, ...], list[tuple[models.Field, Callable[[Any], Any]]]] = {}


def insert_columns(model: type[Any], connection) -> list[tuple[models.Field, Callable[[Any], Any]]]:
    """The columns an INSERT of `model` names: all but a primary key the database numbers (a UUID is sent)."""
    key = (model, connection.alias, connection.vendor)
    columns = _INSERT_COLUMNS.get(key)
    if columns is None:
        fields = [f for f in model._meta.local_concrete_fields if not (f.primary_key and numbered_pk(model))]
        columns = _INSERT_COLUMNS[key] = [(f, adapter(f, connection)) for f in fields]
    return columns


class Columns:
    """A model's insert columns, with their defaults prepared once per database vendor.

    `params` gives the parameters `statements.insert_statement` would give for an instance made of
    `values` (keyed by attname), without making one; a column left out takes its default, and must not
    be auto_now / auto_now_add.
    """

    def __init__(self, fields) -> None:
        self.fields = fields
        # Per database vendor, per field: its adapter, whether its default is made per row, and the
        # default prepared once when it is not.
        self._prepared: dict[str, list[tuple[models.Field, Callable[[Any], Any], bool, Any]]] = {}

    def _columns(self, connection) -> list[tuple[models.Field, Callable[[Any], Any], bool, Any]]:
        columns = self._prepared.get(connection.vendor)
        if columns is None:
            columns = self._prepared[connection.vendor] = []
            for field in self.fields:
                adapt = adapter(field, connection)
                per_row = field.has_default() and callable(field.default)
                columns.append((field, adapt, per_row, None if per_row else adapt(field.get_default())))
        return columns

    def params(self, connection, values: dict[str, Any]) -> list[Any]:
        out = []
        for field, adapt, per_row, default in self._columns(connection):
            if field.attname in values:
                out.append(adapt(values[field.attname]))
            elif per_row:
                out.append(adapt(field.get_default()))
            else:
                out.append(default)
        return out

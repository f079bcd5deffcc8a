"""recording_columns' adapters give exactly Django's `get_db_prep_save` parameters, field by field,
on the configured database (SQLite or PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection, models

from sessions_app.models import Conversation, ErrorEvent, Item, ResponseRecord, UpstreamConnection
from sessions_app.models.columns import adapter


def samples(field: models.Field) -> list:
    """Values the recorder writes to such a field, and a few it does not (which must fall back)."""
    if isinstance(field, models.DateTimeField):
        return [None, datetime.now(tz=UTC), datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(hours=2)))]
    if isinstance(field, models.ForeignKey):
        target = field.target_field
        return [None, uuid.uuid4(), str(uuid.uuid4())] if isinstance(target, models.UUIDField) else [None, 7, "7"]
    if isinstance(field, models.BooleanField):
        return [True, False, 1]
    if isinstance(field, models.IntegerField):
        return [None, 0, 123456, "42"]
    if isinstance(field, (models.CharField, models.TextField)):
        return ["", "resp_abc", "é ✓", ResponseRecord.Status.COMPLETED, None if field.null else ""]
    if isinstance(field, models.UUIDField):
        return [uuid.uuid4()]
    return []  # JSON: the adapter is Django's own call


FIELDS = [(model.__name__, field) for model in (ResponseRecord, Item, Conversation, UpstreamConnection, ErrorEvent)
          for field in model._meta.local_concrete_fields if samples(field)]


@pytest.mark.parametrize(("model", "field"), FIELDS, ids=[f"{m}.{f.name}" for m, f in FIELDS])
def test_an_adapter_gives_what_django_gives(model, field):
    adapt = adapter(field, connection)
    for value in samples(field):
        expected = field.get_db_prep_save(value, connection)
        got = adapt(value)
        assert got == expected and type(got) is type(expected), (value, got, expected)


def test_the_usual_columns_take_the_short_way():
    names = {f.name: adapter(f, connection).__name__ for f in ResponseRecord._meta.local_concrete_fields}
    assert names["status"] == "plain" and names["total_tokens"] == "integer"
    assert names["completed_at"] == "moment" and names["parent"] == "key"

"""The statements recording/pg.py sends as one simple query are prepared per connection at their second use
(recording/pgprepared.py): what they write is what the plain statements wrote, a shape PostgreSQL cannot
prepare is sent as it is, and nothing is prepared where Switchboard's preparing is off."""

from __future__ import annotations

import logging

import pytest

from sessions_app.models import Conversation, UpstreamConnection
from sessions_app.models.statements import lock_user_row, update_statement
from sessions_app.recording import pg as recording_pg
from sessions_app.recording import pgprepared
from sessions_app.recording.input import connection_row, row_insert
from sessions_app.relay import limits

from .conftest import db


def _bind(sql, params):
    return sql.replace("%s", "{}").format(*[repr(p) for p in params])


# -- the texts, without a database ----------------------------------------------------------------


def test_placeholders_are_numbered_and_a_literal_percent_stays_one():
    assert pgprepared.numbered("SELECT %s, '5%%', %s WHERE x = %s") == "SELECT $1, '5%', $2 WHERE x = $3"


def test_a_shape_is_prepared_at_its_second_use_once_per_connection_and_only_once_it_was_sent():
    shapes = pgprepared.Shapes()
    first, second = pgprepared.Prepared(shapes), pgprepared.Prepared(shapes)
    update = ("UPDATE t SET a = %s WHERE id = %s", [1, 2])

    assert first.query([update], _bind, repr) == ([], ["UPDATE t SET a = 1 WHERE id = 2"], set())
    heads, texts, fresh = first.query([update, update], _bind, repr)  # twice in one query: one PREPARE
    assert heads == ["PREPARE switchboard_0 AS UPDATE t SET a = $1 WHERE id = $2"]
    assert texts == ["EXECUTE switchboard_0(1, 2)"] * 2 and fresh == {"switchboard_0"}
    assert first.query([update], _bind, repr)[0] == heads  # not sent yet: prepared again
    first.done(fresh)
    assert first.query([update], _bind, repr) == ([], ["EXECUTE switchboard_0(1, 2)"], set())
    assert second.query([update], _bind, repr)[0] == heads  # another connection prepares its own


def test_an_execute_of_a_prepared_shape_is_its_name_and_its_values_literals():
    prepared = pgprepared.Prepared(pgprepared.Shapes())
    update = ("UPDATE t SET a = %s, b = %s WHERE id = %s", ["x", None, 2])
    prepared.query([update], _bind, repr)
    heads, texts, _ = prepared.query([update], _bind, literal=lambda value: f"<{value}>")
    assert heads == ["PREPARE switchboard_0 AS UPDATE t SET a = $1, b = $2 WHERE id = $3"]
    assert texts == ["EXECUTE switchboard_0(<x>, <None>, <2>)"]


def test_a_connection_prepares_at_most_its_share_and_sends_the_rest_as_they_are(monkeypatch):
    monkeypatch.setattr(pgprepared, "MAX_PER_CONNECTION", 1)
    shapes = pgprepared.Shapes()
    prepared = pgprepared.Prepared(shapes)
    one, other = ("UPDATE t SET a = %s", [1]), ("UPDATE u SET b = %s", [2])
    prepared.query([one, other], _bind, repr)
    heads, texts, fresh = prepared.query([one, other], _bind, repr)
    assert (heads, texts) == (["PREPARE switchboard_0 AS UPDATE t SET a = $1"],
                              ["EXECUTE switchboard_0(1)", "UPDATE u SET b = 2"])
    prepared.done(fresh)
    assert prepared.query([other], _bind, repr) == ([], ["UPDATE u SET b = 2"], set())


def test_a_statement_with_a_sub_select_that_joins_is_never_prepared():
    # Its generic plan would be made once, for the tables as they were (a guard's join: N² on grown tables).
    prepared = pgprepared.Prepared(pgprepared.Shapes())
    guarded = ("INSERT INTO t (a) SELECT %s WHERE (SELECT COUNT(*) FROM t JOIN c ON c.id = t.c WHERE c.b = %s) < %s",
               [1, 2, 3])
    for _ in range(3):
        heads, texts, fresh = prepared.query([guarded], _bind, repr)
        assert (heads, fresh) == ([], set()) and texts[0].startswith("INSERT INTO t (a) SELECT 1 WHERE")
        prepared.done(fresh)
    one_table = ("INSERT INTO t (a) SELECT %s WHERE (SELECT COUNT(*) FROM t WHERE b = %s) < %s", [1, 2, 3])
    prepared.query([one_table], _bind, repr)
    assert prepared.query([one_table], _bind, repr)[0] == ["PREPARE switchboard_1 AS INSERT INTO t (a) SELECT $1 WHERE "
                                                     "(SELECT COUNT(*) FROM t WHERE b = $2) < $3"]


def test_a_refused_shape_is_never_prepared_again():
    shapes = pgprepared.Shapes()
    prepared = pgprepared.Prepared(shapes)
    statement = ("SELECT 1 WHERE %s IS NULL", [None])
    prepared.query([statement], _bind, repr)
    _, _, fresh = prepared.query([statement], _bind, repr)
    shapes.refuse(fresh)
    assert prepared.query([statement], _bind, repr) == ([], ["SELECT 1 WHERE None IS NULL"], set())


# -- on PostgreSQL ----------------------------------------------------------------------------------

transactional = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fresh_shapes(monkeypatch):
    """A process that has sent nothing yet, and input connections opened after it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(pgprepared, "SHAPES", pgprepared.Shapes())
    recording_pg.close_all()
    yield
    recording_pg.close_all()


async def _prepared_names() -> dict[str, str]:
    """The prepared statements of the running loop's idle input connections: name -> statement."""
    [pool] = [p for p in recording_pg._ALL if p.idle]
    found = {}
    for connection, _ in pool.idle:
        cursor = await connection.execute("SELECT name, statement FROM pg_prepared_statements", prepare=False)
        found.update({name: statement for name, statement in await cursor.fetchall()})
    return found


@transactional
async def test_a_batch_sent_again_runs_prepared_and_writes_what_it_wrote_plain(user, conversation_of, fresh_shapes):
    conversation = await conversation_of(user)
    for title in ("one", "two", "three"):
        await recording_pg.execute_batch([update_statement(Conversation, conversation.pk, {"title": title}),
                                          update_statement(Conversation, conversation.pk, {"model": f"m-{title}"})])
        row = await db(lambda: Conversation.objects.values("title", "model").get(pk=conversation.pk))()
        assert row == {"title": title, "model": f"m-{title}"}
        names = await _prepared_names()
        assert len(names) == (0 if title == "one" else 2)
    assert all("UPDATE" in statement and "$1" in statement for statement in names.values())


@transactional
async def test_a_guarded_insert_runs_after_its_prepared_lock_and_its_guard_still_refuses(user, conversation_of,
                                                                                         fresh_shapes):
    conversation = await conversation_of(user)

    def guarded(limit):
        return row_insert(connection_row(conversation.pk, user.pk, None, "ws://upstream.test/v1/responses"),
                          guard=limits.upstream_sockets_guard(user_pk=user.pk, limit=limit),
                          lock=lock_user_row(user.pk))

    written = [await recording_pg.execute_at_once(guarded(limit=3)) for _ in range(3)]
    assert all(isinstance(pk, int) for pk in written)
    names = await _prepared_names()  # from their second use, both in one query (its text is each one's statement)
    assert len(names) == 2
    [query] = set(names.values())
    assert "FOR NO KEY UPDATE" in query and " AS INSERT " in query and "(SELECT COUNT(*)" in query
    assert await recording_pg.execute_at_once(guarded(limit=3)) is None  # three held: the prepared guard refuses
    assert await db(lambda: sorted(UpstreamConnection.objects.filter(conversation=conversation)
                                   .values_list("pk", flat=True)))() == sorted(written)


@transactional
async def test_a_shape_postgresql_cannot_prepare_is_sent_as_it_is(user, conversation_of, fresh_shapes, caplog):
    conversation = await conversation_of(user)
    table = Conversation._meta.db_table
    # Alone, `%s IS NULL` tells PostgreSQL no type: PREPARE refuses it, while the bound literal is fine.
    sql = f'UPDATE "{table}" SET "title" = %s WHERE "id" = %s AND %s IS NULL'
    with caplog.at_level(logging.WARNING, logger="sessions_app.recording"):
        for title in ("one", "two", "three"):
            await recording_pg.execute_batch([(sql, [title, conversation.pk, None])])
            assert await db(lambda: Conversation.objects.get(pk=conversation.pk).title)() == title
    assert [r.getMessage() for r in caplog.records].count(
        "PostgreSQL refused a query that prepared switchboard_0: sent unprepared from now on") == 1
    assert await _prepared_names() == {}


@transactional
async def test_nothing_is_prepared_where_switchboards_preparing_is_off(user, conversation_of, fresh_shapes, settings):
    settings.SWITCHBOARD_PG_PREPARE = False
    conversation = await conversation_of(user)
    for title in ("one", "two", "three"):
        await recording_pg.execute_batch([update_statement(Conversation, conversation.pk, {"title": title})])
    assert await _prepared_names() == {}
    assert await db(lambda: Conversation.objects.get(pk=conversation.pk).title)() == "three"


@transactional
async def test_a_connections_literals_are_what_psycopgs_own_binding_writes(fresh_shapes):
    """pg.py writes an EXECUTE's values as its connection's literals (`_Binder.literal`), psycopg's `mogrify` the rest:
    the two agree on every kind of value the recorder binds, quotes and backslashes and non-ASCII text included."""
    import datetime
    import decimal
    import json
    import uuid

    import psycopg
    from psycopg.types.json import Jsonb

    values = ["plain", "it's a \\ back'slash", "naïve ☃ line\nbreak\ttab", "", None, True, False, 0, -7, 2**40, 1.5,
              decimal.Decimal("12.3400"), datetime.datetime(2026, 12, 4, 5, 6, 7, 890, tzinfo=datetime.UTC),
              datetime.date(2026, 12, 4), uuid.UUID(int=7), Jsonb({"text": "o'k \\ ☃", "n": [1, None]}),
              Jsonb(["a", {"b": False}])]
    pool = recording_pg._pool()
    async with pool._lease() as (connection, _):
        binder = pool.binder(connection)
        assert binder is pool.binder(connection)  # kept for the connection's life
        placeholders = ", ".join(["%s"] * len(values))
        own = f"SELECT {', '.join(binder.literal(value) for value in values)}"
        assert own == psycopg.AsyncClientCursor(connection).mogrify(f"SELECT {placeholders}", values)
        cursor = await connection.execute(own, prepare=False)  # and PostgreSQL reads them back as they were
        row = await cursor.fetchone()
    assert list(row[:15]) == values[:15]
    # Django's adapters load JSON as text (its JSONField decodes it)
    assert json.loads(row[15]) == values[15].obj and json.loads(row[16]) == values[16].obj

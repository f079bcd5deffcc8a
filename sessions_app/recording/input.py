"""The user's input, written and committed before it is sent upstream (recorder.py's direct writes).

Split from recorder.py, which re-exports `RequestRow`, `RequestWritten` and
`_write_request`. The usual create, and a new row (`row_insert`), are built here as
ready statements (`at_once_statement`, no database access) that recorder.py
runs from the event loop on PostgreSQL (pg.py) or on a recorder
thread's raw connection on SQLite (sqlite.py); anything that needs
a lookup or a rewrite (a title, a replay, a compacted window) takes the
transaction in `_write_request_in_transaction`, on a recorder thread.
`_write_request` records a request synchronously through Django's cursor
(the same statement on PostgreSQL, the general path on SQLite), for callers
on a thread of their own (tests, bench/write_request.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from ..compaction import pending_compaction, start_from_window
from ..models import CompactionEvent, Conversation, Item, ResponseRecord, UpstreamConnection
from ..models.columns import Columns, numbered_pk
from ..models.statements import Statement, delete_statement, insert_statement
from ..process import PROCESS_ID
from ..protocol.items import input_items, item_type
from ..recovery import context_after
from .ops import (
    insert_rows,
    item_rows,
    item_values,
)

ENDED_BADLY = (ResponseRecord.Status.FAILED, ResponseRecord.Status.CANCELLED, ResponseRecord.Status.INTERRUPTED)


# -- direct writes: the user's input ----------------------------------------------------


def request_origin(payload: dict[str, Any]) -> str:
    """What a create is, for its record: a warm-up, tool outputs, or a person's message (the relay says fork,
    steer and recovery itself)."""
    if payload.get("generate") is False:
        return ResponseRecord.Origin.WARMUP
    if any(item_type(i) in ("function_call_output", "custom_tool_call_output") for i in input_items(payload)):
        return ResponseRecord.Origin.TOOL_OUTPUT
    return ResponseRecord.Origin.USER


@dataclass(frozen=True)
class RequestRow:
    """A request the relay is about to send upstream (create or steer), as the client meant it."""

    conversation_id: uuid.UUID
    stream_id: str | None
    previous_response_id: str | None
    parent_pk: int | None  # known to the relay when the parent streamed on this socket
    origin: str
    model: str
    payload: dict[str, Any]
    title: str = ""  # becomes the conversation's title if it has none
    use_compacted_window: bool = False  # a create may start from a pending standalone compaction
    replay: bool = False  # the upstream socket cannot know previous_response_id: send the context instead
    connection_pk: int | None = None  # the open upstream socket it will go out on, when there is one
    # What the relay already knows of the parent (it streamed on this session), saving queries:
    # None = ask the database; True/False = whether continuing it branches the chain.
    parent_forks: bool | None = None
    supersedes_pk: int | None = None  # the failed attempt this request resends (relay/recovery.py)
    # When the relay accepted it: what switchboard.request tells the page, and the record keeps (a resend keeps
    # the first attempt's time).
    accepted_at: datetime = field(default_factory=timezone.now)


@dataclass(frozen=True)
class RequestWritten:
    record_pk: int
    payload: dict[str, Any]  # what to send: the row's payload, or rewritten onto a window (compaction, replay)
    previous_response_id: str | None
    parent_pk: int | None
    replayed: bool = False  # sent as a recovery replay: a new chain, its context rebuilt from the records


def _write_request(row: RequestRow) -> RequestWritten:
    """Record a request: in one statement when that is possible, else in a transaction (below)."""
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        written = _write_request_at_once(row)
        if written is not None:
            return written
    return _write_request_in_transaction(row)


def _write_request_at_once(row: RequestRow) -> RequestWritten | None:
    """PostgreSQL: the usual create (or steer) as one autocommit statement, one round trip.

    The usual case needs no lookup: the relay knows the parent and whether continuing it forks,
    there is no title to set, nothing to replay. What remains is "no standalone compaction is
    pending" (compaction.py), which the statement checks itself: it inserts the record and its input
    items only then (data-modifying CTEs, atomic as one statement) and returns the new record's id.
    No row back means a compaction is pending; None then sends the caller down the general path.
    """
    statement = at_once_statement(row)
    if statement is None:
        return None
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(statement.sql, statement.params)
        return statement.written(cursor.fetchone())


@dataclass(frozen=True)
class AtOnce:
    """The usual create as ready statements, run anywhere (pg.py, sqlite.py).

    PostgreSQL: `sql` inserts the record and its items and returns the record's id. SQLite (no
    data-modifying CTEs): `sql` inserts the record and returns its id, then `items_sql` inserts the
    items, each row's parameters preceded by that id, in the same transaction.
    """

    row: RequestRow
    sql: str
    params: list[Any]
    parent_pk: int | None
    items_sql: str | None = None
    item_params: tuple[list[Any], ...] = ()

    def written(self, found: tuple[Any, ...] | None) -> RequestWritten | None:
        """The result, from the statement's one row; None (no row): take the general path."""
        if found is None:
            return None
        return RequestWritten(record_pk=found[0], payload=self.row.payload,
                              previous_response_id=self.row.previous_response_id, parent_pk=self.parent_pk)


@dataclass(frozen=True)
class RowInsert:
    """One new row's INSERT … RETURNING its pk (models/statements.py), written the way the usual create is:
    in a group on SQLite (sqlite.py, groups.py), from the event loop on PostgreSQL (pg.py). A gateway's
    first turn writes two (its conversation, its upstream socket) with its request (recorder.py's
    `Recorder.queue_row`: in the same group commit on SQLite, in the request's transaction on PostgreSQL).

    A guarded INSERT (`row_insert(row, guard=…)`) may be refused by its guard: then it returns no row and
    its pk is None. Its `lock` (PostgreSQL only) runs first in the same transaction, so that guards of
    the same lock see each other's rows: there each statement counts from its own snapshot, and two at
    once would both be allowed. On SQLite the write lock the group holds already serialises them."""

    sql: str
    params: list[Any]
    pk: Any = None  # the pk the instance already has (a UUID); None: the database numbers it
    guarded: bool = False
    lock: Statement | None = None

    def written(self, found: tuple[Any, ...] | None) -> Any:
        """The new row's pk, from the statement's one row (None: the guard refused it)."""
        if found is None:
            if self.guarded:
                return None
            raise RuntimeError("The INSERT returned no row.")  # an unguarded INSERT always returns its row
        return self.pk if self.pk is not None else found[0]


def row_insert(row: Any, *, guard: Statement | None = None, lock: Statement | None = None) -> RowInsert:
    """The INSERT of a new model instance, only if `guard` holds when given (no database access: the
    event loop may call it)."""
    sql, params = insert_statement([row], returning=True, guard=guard)
    return RowInsert(sql=sql, params=params, pk=None if numbered_pk(type(row)) else row.pk, guarded=guard is not None,
                     lock=lock if guard is not None else None)


@dataclass(frozen=True)
class RowDelete:
    """One row's DELETE by pk (models/statements.py), written the way a new row is (`RowInsert`): a client
    socket's row when the socket closes, which every socket of a user under a socket limit has."""

    sql: str
    params: list[Any]
    lock = None

    def written(self, found: tuple[Any, ...] | None) -> bool:
        """Whether the row was there."""
        return found is not None


def row_delete(model: type[Any], pk: Any) -> RowDelete:
    return RowDelete(*delete_statement(model, pk))


Direct = AtOnce | RowInsert | RowDelete  # what pg.py and sqlite.py write at once, outside the recorder's batches


def at_once_statement(row: RequestRow) -> AtOnce | None:
    """The statement of `_write_request_at_once`, or None when the row needs the general path.

    Builds SQL and parameters only (no database access), so the event loop may call it."""
    previous = row.previous_response_id
    if row.title or row.replay or (previous and (row.parent_pk is None or row.parent_forks is None)):
        return None
    parent_pk = row.parent_pk if previous else None
    origin = row.origin
    if origin == ResponseRecord.Origin.USER and parent_pk is not None and row.parent_forks:
        origin = ResponseRecord.Origin.FORK
    items = input_items(row.payload)
    if len(items) > AT_ONCE_MAX_ITEMS:  # a long pasted history: not worth a statement of its own shape
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    separate_items = connection.vendor != "postgresql"
    sql = _at_once_sql(connection, 0 if separate_items else len(items), row.use_compacted_window)
    # Parameters straight from values (no model instances: on the loop, per turn, they cost 4x more).
    params = _RECORD_COLUMNS.params(connection, {
        "conversation_id": row.conversation_id, "stream_id": row.stream_id or "",
        "previous_response_id": previous or "", "parent_id": parent_pk, "status": ResponseRecord.Status.QUEUED,
        "model": row.model[:100], "request_payload": row.payload, "origin": origin, "sent_at": timezone.now(),
        "accepted_at": row.accepted_at, "connection_id": row.connection_pk, "supersedes_id": row.supersedes_pk,
    })
    if row.use_compacted_window:
        conversation = ResponseRecord._meta.get_field("conversation").get_db_prep_value(row.conversation_id,
                                                                                        connection)
        params += [conversation, CompactionEvent.Kind.STANDALONE.value, conversation]
    item_params = tuple(_ITEM_COLUMNS.params(connection, item_values(Item.Direction.INPUT, position, raw))
                        for position, raw in enumerate(items))
    if separate_items:
        return AtOnce(row=row, sql=sql, params=params, parent_pk=parent_pk,
                      items_sql=_items_sql(connection, len(items)) if items else None, item_params=item_params)
    for one in item_params:
        params += one
    return AtOnce(row=row, sql=sql, params=params, parent_pk=parent_pk)


_RECORD_FIELDS = [f for f in ResponseRecord._meta.local_concrete_fields if not f.primary_key]
_ITEM_FIELDS = [f for f in Item._meta.local_concrete_fields if not f.primary_key and f.name != "response"]
AT_ONCE_MAX_ITEMS = 32
_AT_ONCE_SQL: dict[tuple[int, bool | str], str] = {}  # by (input items, compaction check | "items"): < 100


_RECORD_COLUMNS = Columns(_RECORD_FIELDS)
_ITEM_COLUMNS = Columns(_ITEM_FIELDS)


def _at_once_sql(connection, item_count: int, check_compaction: bool) -> str:
    key = (item_count, check_compaction)
    sql = _AT_ONCE_SQL.get(key)
    if sql is not None:
        return sql
    quote = connection.ops.quote_name

    def values(fields) -> str:  # PostgreSQL: typed placeholders (INSERT … SELECT does not infer them)
        if connection.vendor != "postgresql":
            return ", ".join("%s" for _ in fields)
        return ", ".join(f"%s::{f.db_type(connection)}" for f in fields)

    uuid = "::uuid" if connection.vendor == "postgresql" else ""

    record_table, item_table = quote(ResponseRecord._meta.db_table), quote(Item._meta.db_table)
    compaction_table = quote(CompactionEvent._meta.db_table)
    pk = quote(ResponseRecord._meta.pk.column)
    sql = (f"WITH r AS (INSERT INTO {record_table} ({', '.join(quote(f.column) for f in _RECORD_FIELDS)}) "
           f"SELECT {values(_RECORD_FIELDS)}")
    if check_compaction:  # pending: some standalone compaction has no request recorded after it
        sql += (f" WHERE NOT EXISTS (SELECT 1 FROM {compaction_table} c WHERE c.conversation_id = %s{uuid}"
                f" AND c.kind = %s AND NOT EXISTS (SELECT 1 FROM {record_table} p"
                f" WHERE p.conversation_id = %s{uuid} AND p.sent_at > c.created_at))")
    if connection.vendor != "postgresql":
        sql = sql.removeprefix("WITH r AS (") + f" RETURNING {pk}"
        _AT_ONCE_SQL[key] = sql
        return sql
    sql += f" RETURNING {pk})"
    if item_count:
        columns = ", ".join(quote(f.column) for f in _ITEM_FIELDS)
        selects = " UNION ALL ".join([f"SELECT r.{pk}, {values(_ITEM_FIELDS)} FROM r"] * item_count)
        sql += f", i AS (INSERT INTO {item_table} ({quote('response_id')}, {columns}) {selects})"
    sql += f" SELECT {pk} FROM r"
    _AT_ONCE_SQL[key] = sql
    return sql


def _items_sql(connection, item_count: int) -> str:
    key = (item_count, "items")
    sql = _AT_ONCE_SQL.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        one = "(" + ", ".join(["%s"] * (len(_ITEM_FIELDS) + 1)) + ")"
        sql = _AT_ONCE_SQL[key] = (
            f"INSERT INTO {quote(Item._meta.db_table)} ({quote('response_id')}, "
            f"{', '.join(quote(f.column) for f in _ITEM_FIELDS)}) VALUES {', '.join([one] * item_count)}")
    return sql


def _write_request_in_transaction(row: RequestRow) -> RequestWritten:
    """Record a request, rewriting it first when it must start a new chain.

    Two rewrites, both PROTOCOL.md §4/§5 "new chain: no previous_response_id, the whole context as
    input"; the record keeps `parent` (what the client continued) with an empty `previous_response_id`:
    a pending standalone compaction (compaction.py), and a replay when the upstream socket never saw
    the previous response (recovery.py builds the context from our records).
    """
    payload, previous, origin = row.payload, row.previous_response_id, row.origin
    parent = None
    with transaction.atomic():
        parent_pk = row.parent_pk if previous else None
        forks = row.parent_forks
        if previous and (parent_pk is None or forks is None or row.replay):
            lookup = {"pk": parent_pk} if parent_pk else {"response_id": previous}
            parent = ResponseRecord.objects.filter(conversation_id=row.conversation_id, **lookup).first()
            parent_pk = parent.pk if parent else None
            if parent is not None and forks is None:
                forks = parent.stream_id != (row.stream_id or "") or (
                    parent.children.exclude(status__in=ENDED_BADLY).exists())
        compaction = pending_compaction(conversation_id=row.conversation_id) if row.use_compacted_window else None
        base = compaction.response if compaction is not None else None
        if compaction is not None and previous in (None, base.response_id if base else None):
            payload, previous = start_from_window(payload, compaction.compacted_output), None
            parent_pk = compaction.response_id
        elif row.replay and parent_pk is not None:
            payload, previous = start_from_window(payload, context_after(parent)), None
            origin = ResponseRecord.Origin.RECOVERY_REPLAY
        elif origin == ResponseRecord.Origin.USER and parent_pk is not None and forks:
            origin = ResponseRecord.Origin.FORK
        record = ResponseRecord(
            conversation_id=row.conversation_id, stream_id=row.stream_id or "", previous_response_id=previous or "",
            parent_id=parent_pk, status=ResponseRecord.Status.QUEUED, model=row.model[:100], request_payload=payload,
            origin=origin, sent_at=timezone.now(), accepted_at=row.accepted_at, connection_id=row.connection_pk,
            supersedes_id=row.supersedes_pk,
        )
        insert_rows([record], returning=True)
        # Items are what the client added; the context a rewrite put in front of them is already in
        # the records (request_payload keeps the request exactly as sent), and recovery walks to it.
        insert_rows(item_rows(record.pk, Item.Direction.INPUT, input_items(row.payload)))
        if row.title:
            Conversation.objects.filter(pk=row.conversation_id, title="").update(title=row.title[:200])
    return RequestWritten(record_pk=record.pk, payload=payload, previous_response_id=previous, parent_pk=parent_pk,
                          replayed=origin == ResponseRecord.Origin.RECOVERY_REPLAY)


def connection_row(conversation_id: uuid.UUID, owner_id: int, profile_id: int | None, url: str) -> UpstreamConnection:
    return UpstreamConnection(conversation_id=conversation_id, owner_id=owner_id, upstream_profile_id=profile_id,
                              url=url[:500], holder=PROCESS_ID)



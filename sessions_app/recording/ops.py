"""The recorder's queued ops: what the upstream streams back, and how each becomes rows.

Each op is a frozen value the relay builds on the hot path (cheap, no I/O) and
the recorder's writer applies later, in order, several per transaction
(`apply_batch`). An op only updates rows that already exist or inserts new
ones; inserts of many small rows (items, errors) are collected in the batch
and bulk-created at its end.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from ..models import CompactionEvent, Conversation, ErrorEvent, Item, ResponseRecord, UpstreamConnection
from ..models.statements import Statement, insert_rows, insert_statement, update_row, update_statement
from ..protocol.items import item_text, item_type
from ..protocol.outcome import Usage
from ..recovery import context_after

__all__ = [
    "Op",
    "Sent",
    "Started",
    "Finished",
    "ErrorRow",
    "ErrorTally",
    "ErrorCount",
    "ConnectionFailed",
    "ConnectionClosed",
    "ConversationState",
    "apply_batch",
    "batch_statements",
    "coalesce",
    "item_rows",
    "item_values",
    "insert_rows",
    "update_row",
    "insert_statement",
    "update_statement",
    "Statement",
]


_ITEM_TYPES = frozenset(Item.ItemType.values)


def item_values(direction: str, position: int, raw: dict[str, Any]) -> dict[str, Any]:
    """An Item row's values (by attname, without its response) for one protocol item."""
    kind = item_type(raw)
    return {"direction": direction, "position": position,
            "item_type": kind if kind in _ITEM_TYPES else Item.ItemType.OTHER,
            "role": str(raw.get("role") or "")[:20], "call_id": str(raw.get("call_id") or "")[:100],
            "text": item_text(raw), "raw": raw}


def item_rows(record_pk: int, direction: str, items: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[Item]:
    return [Item(response_id=record_pk, **item_values(direction, position, raw)) for position, raw in enumerate(items)]


@dataclass
class _Batch:
    """Rows several ops insert, created together at the end of the batch."""

    items: list[Item] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Sent:
    """The request left on an upstream socket that was not known when it was written."""

    record_pk: int
    connection_pk: int
    sent_at: datetime

    def statements(self, batch: _Batch) -> list[Statement]:
        return [update_statement(ResponseRecord, self.record_pk,
                                 {"connection": self.connection_pk, "sent_at": self.sent_at})]


@dataclass(frozen=True)
class Started:
    """The upstream named the response (`response.created` or `response.queued`)."""

    record_pk: int
    response_id: str
    status: str
    first_event_at: datetime
    sent: Sent | None = None  # the record's `Sent` of the same batch, written with it (coalesce)

    def statements(self, batch: _Batch) -> list[Statement]:
        return [update_statement(ResponseRecord, self.record_pk, {
            "response_id": self.response_id, "status": self.status, "first_event_at": self.first_event_at,
            **_sent_fields(self.sent)})]


def _sent_fields(sent: Sent | None) -> dict[str, Any]:
    return {} if sent is None else {"connection": sent.connection_pk, "sent_at": sent.sent_at}


def _context_length(record_pk: int) -> int:
    """How many items the model had in context when the record's request arrived: its parent's context
    and the items the request added (what a server-side compaction in its output replaced)."""
    record = ResponseRecord.objects.select_related("parent").get(pk=record_pk)
    added = Item.objects.filter(response_id=record_pk, direction=Item.Direction.INPUT).count()
    return (len(context_after(record.parent)) if record.parent is not None else 0) + added


@dataclass(frozen=True)
class Finished:
    """A response (or a request that never became one) ended; everything the recorder keeps of it."""

    conversation_id: uuid.UUID
    record_pk: int | None  # None: the upstream started it on its own; create the record now
    status: str
    response_id: str | None = None
    stream_id: str | None = None
    previous_response_id: str | None = None
    origin: str = ResponseRecord.Origin.USER
    model: str | None = None
    payload: dict[str, Any] | None = None
    usage: Usage | None = None
    incomplete_reason: str | None = None
    output: tuple[dict[str, Any], ...] = ()
    sent_at: datetime | None = None
    first_event_at: datetime | None = None
    first_text_at: datetime | None = None
    completed_at: datetime | None = None
    events_received: int = 0
    sent: Sent | None = None  # the record's `Sent` of the same batch, written with it (coalesce)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "status": self.status, "events_received": self.events_received, "completed_at": self.completed_at,
            "first_event_at": self.first_event_at, "first_text_at": self.first_text_at,
            "response_payload": self.payload, "incomplete_reason": (self.incomplete_reason or "")[:50],
            "produced_compaction": any(item_type(i) == "compaction" for i in self.output), **_sent_fields(self.sent),
        }
        if self.response_id:
            fields["response_id"] = self.response_id
        if self.model:
            fields["model"] = self.model[:100]
        if self.usage is not None:
            fields.update(input_tokens=self.usage.input_tokens, cached_input_tokens=self.usage.cached_tokens,
                          output_tokens=self.usage.output_tokens, reasoning_tokens=self.usage.reasoning_tokens,
                          total_tokens=self.usage.total_tokens)
        return fields

    def statements(self, batch: _Batch) -> list[Statement] | None:
        """The usual case as plain statements; None when it needs `apply` (a new record, a compaction)."""
        if self.record_pk is None or any(item_type(i) == "compaction" for i in self.output):
            return None
        batch.items.extend(item_rows(self.record_pk, Item.Direction.OUTPUT, self.output))
        return [update_statement(ResponseRecord, self.record_pk, self._fields())]

    def apply(self, batch: _Batch) -> None:
        fields = self._fields()
        record_pk = self.record_pk
        if record_pk is None:
            parent = ResponseRecord.objects.filter(
                conversation_id=self.conversation_id, response_id=self.previous_response_id
            ).first() if self.previous_response_id else None
            record_pk = ResponseRecord.objects.create(
                conversation_id=self.conversation_id, stream_id=self.stream_id or "", parent=parent,
                previous_response_id=self.previous_response_id or "", origin=self.origin,
                sent_at=self.sent_at or timezone.now(), **fields,
            ).pk
        else:
            update_row(ResponseRecord, record_pk, fields)
        batch.items.extend(item_rows(record_pk, Item.Direction.OUTPUT, self.output))
        if self.output and any(item_type(i) == "compaction" for i in self.output):
            # The context it replaced is counted from the records: write what this batch holds first.
            insert_rows(batch.items)
            batch.items.clear()
            self._record_compaction(record_pk)

    def _record_compaction(self, record_pk: int) -> None:
        at = max((i for i, item in enumerate(self.output) if item_type(item) == "compaction"), default=None)
        if at is None:
            return
        CompactionEvent.objects.create(
            conversation_id=self.conversation_id, response_id=record_pk, kind=CompactionEvent.Kind.SERVER_SIDE,
            input_tokens_before=self.usage.input_tokens if self.usage else None,
            items_replaced=_context_length(record_pk) + at, compacted_output=list(self.output[at:]),
            created_at=self.completed_at or timezone.now(),  # when it happened, even if written after an outage
        )


@dataclass(eq=False)
class ErrorTally:
    """A client error aggregated on one socket (relay_stream.Downstream keeps one per code).

    The socket's first occurrence is written as an `ErrorRow` carrying the tally; the writer notes the
    row's pk here, and later `ErrorCount` ops set that row's `count` and `last_seen_at` from the tally
    as it stands when they are applied (absolute values: a lost or repeated op cannot skew the sum).
    """

    last_seen_at: datetime
    count: int = 1
    queued: int = 1  # the count last handed to the recorder
    pk: int | None = None


@dataclass(frozen=True)
class ErrorRow:
    """An error seen on a conversation: the upstream's `error` events, the relay's own, bad client input.

    With a `tally` (a client error) it is inserted alone, through the ORM, so its pk is known to the
    `ErrorCount` ops that follow it."""

    source: str
    code: str
    message: str
    conversation_id: uuid.UUID | None = None
    record_pk: int | None = None
    connection_pk: int | None = None
    status: int | None = None
    error_type: str = ""
    param: str = ""
    stream_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    tally: ErrorTally | None = None
    created_at: datetime = field(default_factory=timezone.now)  # when it happened, not when the writer got to it

    @classmethod
    def from_event(cls, event: dict[str, Any], *, source: str, **links: Any) -> ErrorRow:
        """From an `error` event (or anything with an `error` object: response.failed, steer.failed)."""
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        return cls(source=source, code=str(error.get("code") or ""), message=str(error.get("message") or ""),
                   status=event.get("status") if isinstance(event.get("status"), int) else None,
                   error_type=str(error.get("type") or ""), param=str(error.get("param") or ""),
                   stream_id=event.get("stream_id"), raw=event, **links)

    def row(self) -> ErrorEvent:
        counted = {"count": self.tally.count, "last_seen_at": self.tally.last_seen_at} if self.tally else {}
        return ErrorEvent(
            conversation_id=self.conversation_id, response_id=self.record_pk, connection_id=self.connection_pk,
            source=self.source, status=self.status, error_type=self.error_type[:100], code=self.code[:100],
            message=self.message, param=self.param[:200], stream_id=self.stream_id or "", raw=self.raw,
            created_at=self.created_at, **counted,
        )

    def statements(self, batch: _Batch) -> list[Statement] | None:
        if self.tally is not None:
            return None  # `apply`: its pk is needed
        batch.errors.append(self.row())
        return []

    def apply(self, batch: _Batch) -> None:
        assert self.tally is not None
        self.tally.pk = None  # a batch retried after a rollback inserts it again
        row = self.row()
        insert_rows([row], returning=True)
        self.tally.pk = row.pk


@dataclass(frozen=True)
class ErrorCount:
    """A socket's aggregated client error happened again: its row takes the tally's count and time."""

    tally: ErrorTally

    def _values(self) -> dict[str, Any]:
        return {"count": self.tally.count, "last_seen_at": self.tally.last_seen_at}

    def statements(self, batch: _Batch) -> list[Statement] | None:
        if self.tally.pk is None:
            return None  # its row is inserted earlier in this batch (or was lost): see `apply`
        return [update_statement(ErrorEvent, self.tally.pk, self._values())]

    def apply(self, batch: _Batch) -> None:
        if self.tally.pk is not None:
            update_row(ErrorEvent, self.tally.pk, self._values())


@dataclass(frozen=True)
class ConnectionFailed:
    """An upstream socket that never opened (unreachable, handshake refused)."""

    conversation_id: uuid.UUID
    owner_id: int
    profile_id: int | None
    url: str
    close_code: int | None
    close_text: str
    at: datetime

    def statements(self, batch: _Batch) -> list[Statement]:
        return [insert_statement([UpstreamConnection(
            conversation_id=self.conversation_id, owner_id=self.owner_id, upstream_profile_id=self.profile_id,
            url=self.url[:500], opened_at=self.at, closed_at=self.at, close_code=self.close_code,
            close_text=self.close_text[:200],
            close_reason=UpstreamConnection.CloseReason.HANDSHAKE_FAILED,
        )])]


@dataclass(frozen=True)
class ConnectionClosed:
    connection_pk: int
    close_code: int | None
    close_text: str
    close_reason: str
    at: datetime
    responses_carried: int = 0

    def statements(self, batch: _Batch) -> list[Statement]:
        return [update_statement(UpstreamConnection, self.connection_pk, {
            "closed_at": self.at, "close_code": self.close_code, "close_text": self.close_text[:200],
            "close_reason": self.close_reason, "responses_carried": self.responses_carried})]


@dataclass(frozen=True)
class ConversationState:
    conversation_id: uuid.UUID
    status: str
    latest_response_id: str | None = None  # None: unchanged

    def statements(self, batch: _Batch) -> list[Statement]:
        fields: dict[str, Any] = {"status": self.status, "updated_at": timezone.now()}
        if self.latest_response_id is not None:
            fields["latest_response_id"] = self.latest_response_id
        return [update_statement(Conversation, self.conversation_id, fields)]


Op = Sent | Started | Finished | ErrorRow | ErrorCount | ConnectionFailed | ConnectionClosed | ConversationState


def coalesce(ops: list[Op]) -> list[Op]:
    """Drop ops a later op of the same batch makes redundant (fewer statements, same end state).

    A `Started` is covered by its record's `Finished` (which sets the id, status and first event
    time too); a record's one `Sent` (a first turn's socket) is written by its `Finished` or `Started`,
    whichever is kept (they set other columns, so their order does not matter); of several
    `ConversationState`s of one conversation only the last one counts.
    """
    finished = {op.record_pk for op in ops if isinstance(op, Finished) and op.record_pk is not None}
    started = {op.record_pk for op in ops if isinstance(op, Started)}
    sends = Counter(op.record_pk for op in ops if isinstance(op, Sent))
    sent = {op.record_pk: op for op in ops if isinstance(op, Sent) and sends[op.record_pk] == 1
            and op.record_pk in finished | started}
    last_state = {op.conversation_id: i for i, op in enumerate(ops) if isinstance(op, ConversationState)}
    kept = []
    for i, op in enumerate(ops):
        if isinstance(op, Started) and op.record_pk in finished:
            continue
        if isinstance(op, Sent) and sent.get(op.record_pk) is op:
            continue
        if isinstance(op, Started | Finished) and op.record_pk in sent:
            op = replace(op, sent=sent[op.record_pk])
        if isinstance(op, ConversationState):
            if last_state[op.conversation_id] != i:
                continue
            if op.latest_response_id is None:  # "unchanged": keep what an earlier state set
                earlier = [o.latest_response_id for o in ops[:i] if isinstance(o, ConversationState)
                           and o.conversation_id == op.conversation_id and o.latest_response_id is not None]
                if earlier:
                    op = replace(op, latest_response_id=earlier[-1])
        kept.append(op)
    return kept


def batch_statements(ops: list[Op]) -> list[Statement] | None:
    """A batch as plain statements, to run in one transaction; None if an op needs the ORM (`apply`)."""
    batch = _Batch()
    statements: list[Statement] = []
    for op in coalesce(ops):
        more = op.statements(batch)
        if more is None:
            return None
        statements += more
    statements += [insert_statement(rows) for rows in (batch.items, batch.errors) if rows]
    return statements


def apply_batch(ops: list[Op]) -> None:
    """Apply a batch of ops in one transaction, bulk-creating the rows they collected."""
    batch = _Batch()
    with transaction.atomic():
        connection = connections[router.db_for_write(ResponseRecord)]
        for op in coalesce(ops):
            statements = op.statements(batch)
            if statements is None:
                op.apply(batch)
                continue
            for sql, params in statements:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
        insert_rows(batch.items)
        insert_rows(batch.errors)

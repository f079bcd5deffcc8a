"""What the records keep of a request that ended: the `Finished` op (and error row) for each way it can end.

Pure builders over a ticket's in-memory bookkeeping (lanes.Ticket); the downstream (stream.py) queues
what they return. Rules:

* A response that ended with a terminal event keeps the upstream's final object; a failed one whose
  final object dropped what it had streamed keeps the streamed output (partial.py).
* A response the user stopped keeps what its client saw before the stop (stopping.py); what came after
  it is kept in the payload.
* A request that got no terminal event (its socket closed, or an `error` ended it) keeps what had
  completed, and with the frames a hub kept, the text streamed so far.
* A request the relay resends (recovery.py) ends failed, marked `superseded_by`; accepted steers the
  upstream merged into one successor end completed, marked `merged_into`.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from django.utils import timezone

from ..models import ErrorEvent, ResponseRecord
from ..partial import partial_output
from ..protocol.outcome import Outcome
from ..recording import ErrorRow, Finished
from .lanes import Ticket

__all__ = ["responded", "response_failed", "unended", "superseded", "merged", "shown_output"]

Status = ResponseRecord.Status


def shown_output(ticket: Ticket) -> tuple[dict[str, Any], ...]:
    """What a stopped response had shown its client when it was stopped (stopping.py)."""
    frames, done = ticket.shown or (len(ticket.frames), ticket.output_done)
    if frames:
        return partial_output(ticket.frames[:frames], done)
    return tuple(done[i] for i in sorted(done))


def responded(ticket: Ticket, event: dict[str, Any], conversation_id: uuid.UUID | None) -> tuple[Outcome, Finished]:
    """A response that ended with its terminal `event`: how it ended, and its record's last op."""
    outcome = Outcome.parse(event)
    if not outcome.output and ticket.frames and outcome.status == "failed":
        # A failed response's final object drops what it had streamed; the records keep it.
        outcome = replace(outcome, output=partial_output(ticket.frames, ticket.output_done))
    if ticket.stopped:  # it ran on beside another response; the user had stopped it
        outcome = replace(outcome, status=Status.CANCELLED, output=shown_output(ticket))
    return outcome, Finished(
        conversation_id=conversation_id, record_pk=ticket.record_pk, status=outcome.status,
        response_id=outcome.response_id or ticket.response_id, stream_id=ticket.stream_id,
        previous_response_id=outcome.previous_response_id,
        origin=ResponseRecord.Origin.STEER if outcome.previous_response_id else ResponseRecord.Origin.USER,
        model=outcome.model, payload=event.get("response"), usage=outcome.usage,
        incomplete_reason=outcome.incomplete_reason, output=outcome.output, sent_at=ticket.sent_at,
        first_event_at=ticket.first_event_at, first_text_at=ticket.first_text_at, completed_at=timezone.now(),
        events_received=ticket.events,
    )


def response_failed(ticket: Ticket, event: dict[str, Any], outcome: Outcome, conversation_id: uuid.UUID | None,
                    connection_pk: int | None) -> ErrorRow:
    """The error row of a `response.failed`: its response object's error."""
    error = (event.get("response") or {}).get("error") or {}
    return ErrorRow(
        source=ErrorEvent.Source.UPSTREAM, code=str(error.get("code") or "response_failed"),
        message=str(error.get("message") or ""), conversation_id=conversation_id,
        record_pk=ticket.record_pk, connection_pk=connection_pk, stream_id=ticket.stream_id,
        raw={"type": event.get("type"), "response_id": outcome.response_id, "error": error},
    )


def unended(ticket: Ticket, status: str, conversation_id: uuid.UUID | None) -> Finished:
    """A request that got no terminal event, ended with `status`."""
    if ticket.frames:
        output = partial_output(ticket.frames, ticket.output_done)
    else:
        output = tuple(ticket.output_done[i] for i in sorted(ticket.output_done))
    payload = None
    if ticket.stopped:  # the items are what the client saw; the payload keeps what came after it too
        output, payload = shown_output(ticket), {"stopped_by_user": True, "received_output": list(output)}
    return Finished(
        conversation_id=conversation_id, record_pk=ticket.record_pk, status=status,
        response_id=ticket.response_id, stream_id=ticket.stream_id, payload=payload,
        previous_response_id=ticket.previous_response_id, output=output, sent_at=ticket.sent_at,
        first_event_at=ticket.first_event_at, first_text_at=ticket.first_text_at, completed_at=timezone.now(),
        events_received=ticket.events,
    )


def superseded(ticket: Ticket, conversation_id: uuid.UUID | None) -> Finished:
    """A request the relay resends: failed, without the client being told."""
    return Finished(
        conversation_id=conversation_id, record_pk=ticket.record_pk, status=Status.FAILED,
        response_id=ticket.response_id, stream_id=ticket.stream_id,
        previous_response_id=ticket.previous_response_id, payload={"superseded_by": "recovery"},
        sent_at=ticket.sent_at, completed_at=timezone.now(), events_received=ticket.events,
    )


def merged(steer: Ticket, successor_id: str, conversation_id: uuid.UUID | None) -> Finished:
    """An accepted steer the upstream merged, with others, into one successor response."""
    return Finished(
        conversation_id=conversation_id, record_pk=steer.record_pk, status=Status.COMPLETED,
        payload={"merged_into": successor_id}, sent_at=steer.sent_at, completed_at=timezone.now(),
    )

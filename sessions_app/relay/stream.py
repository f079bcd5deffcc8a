"""Upstream -> client: forward each frame, route it to its request, record what ended, report status.

The hot half of the relay (session.py holds the client half). Rules:

* A frame is forwarded to the client verbatim *before* anything else is done
  with it (a replay's Response events: with the client's fields, echo.py);
  bookkeeping is in memory and recording is a queued op (O(1)).
* Except the frame that ends a request (its terminal event, or the `error`
  that ends it): it is held until the request's `Finished` op (and the
  conversation's status) is written, so a client never sees a turn end that
  the records would lose if this process died a moment later. The wait is one
  short transaction per turn, off the per-event path; while the database is
  unavailable it is not waited for (the op stays queued, in order), and it is
  bounded by HOLD_SECONDS.
* relay_lanes.LaneBook says which request an event belongs to; a request ends
  with its terminal event, with an `error` that ends it, or when its socket
  closes (failed; interrupted when the client left).
* Every ended request becomes one `Finished` op (endings.py says what it keeps); every error (the upstream's
  `error`, `response.failed` and `response.steer.failed`, the relay's own)
  one `ErrorRow` with its source; client mistakes are aggregated per code
  (refusals.py), so a flood of bad frames writes a bounded number of rows.
* The browser face is told `switchboard.status` whenever (status, upstream,
  latest_response_id) changes and `switchboard.upstream_closed` when a
  socket closes; the conversation row follows the same status.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from ..models import ErrorEvent, ResponseRecord, UpstreamConnection
from ..protocol.errors import ProtocolError
from ..protocol.items import input_items
from ..recording import (
    ConnectionClosed,
    ConversationState,
    ErrorRow,
    Recorder,
    RequestRow,
    Started,
)
from . import endings
from . import errors as relay_errors
from .echo import echoed_frame
from .faces import Face
from .hooks import SendText
from .lanes import RESPONSE_EVENTS, TERMINAL_EVENTS, Ticket
from .lineage import Lineage
from .refusals import Refusals
from .upstream_link import CONTINUABLE, LIMIT_CODE, RECOVERABLE_CODES, Recover, UpstreamLink

__all__ = ["Downstream"]

logger = logging.getLogger("sessions_app.relay")

Reason = UpstreamConnection.CloseReason
Status = ResponseRecord.Status
# The longest a request's last frame waits for its record (a slow database, not an unavailable one).
HOLD_SECONDS = 5.0


class Downstream:
    """What comes back to one client socket, and what the recorder keeps of it."""

    def __init__(self, *, face: Face, send: SendText, recorder: Recorder, conversation_id: uuid.UUID | None,
                 status: str = "idle", latest_response_id: str = "") -> None:
        self.face = face
        self.recorder = recorder
        self.conversation_id = conversation_id
        self.link: UpstreamLink | None = None  # the session's current upstream socket
        self.latest = latest_response_id
        self.lineage = Lineage()  # what this session knows of its responses, so a continuation needs no lookup
        self._send = send
        self._failed = status == "failed"
        self._recorded: tuple[str, str] = (status, latest_response_id)
        self._announced: tuple[str, str, str] | None = None
        self.client_gone = False
        self.holding = 0  # requests whose last frame waits for its record (_deliver_held)
        self.end_queued = 0  # the recorder's mark just after the last socket's end was queued (on_closed)
        self.recover: Recover | None = None  # set by the relay session (recovery.py)
        # A hub (live/hub.py) keeps each in-flight response's frames for clients that attach mid-response.
        self.keep_tail = False
        self.on_ended: Callable[[Ticket], None] | None = None
        self.publish: Callable[[str], None] | None = None  # a gateway session's fan-out (live/fanout.py)
        self.on_usage: Callable[[int], None] | None = None  # a finished response's total tokens (limits.py)
        self.refusals = Refusals(recorder)

    # -- upstream events ---------------------------------------------------------------

    async def on_event(self, link: UpstreamLink, frame: str, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "error" and self.recover is not None and await self._recovering(link, event):
            return
        # Routed before it is forwarded (a few dict look-ups) so a hub's tail never misses a frame it sent.
        routed = link.book.route(event)
        ticket = routed.ticket
        if ticket is not None and ticket.echo is not None and kind in RESPONSE_EVENTS:
            frame = echoed_frame(frame, event, ticket.echo)
        # The frame that ends a request goes out once its record is written (module rules).
        held = frame if routed.ended and ticket is not None and not ticket.stopped else None
        if held is None:
            if self.keep_tail and ticket is not None:
                ticket.frames.append(frame)
            if ticket is None or not ticket.stopped:
                await self.to_client(frame)
        if ticket is not None:
            ticket.count(kind)
            if kind == "response.output_item.done" and isinstance(event.get("output_index"), int):
                ticket.output_done[event["output_index"]] = event.get("item") or {}
            if routed.bound:
                self._started(link, ticket, kind, routed.ended)
            elif ticket.queued and kind == "response.in_progress" and ticket.record_pk is not None:
                ticket.queued = False
                self.recorder.add(Started(ticket.record_pk, ticket.response_id or "", Status.IN_PROGRESS,
                                          ticket.first_event_at))
        if kind == "error" or kind == "response.steer.failed":
            error = event.get("error")
            link.limit_reached = link.limit_reached or (isinstance(error, dict) and error.get("code") == LIMIT_CODE)
            if kind == "error" and not routed.ended:  # ends nothing: counted per socket and code (refusals.py)
                self.refusals.record_upstream(event, conversation_id=self.conversation_id,
                                              connection_pk=link.connection_pk,
                                              record_pk=ticket.record_pk if ticket else None)
            else:
                self.recorder.add(ErrorRow.from_event(
                    event, source=ErrorEvent.Source.UPSTREAM, conversation_id=self.conversation_id,
                    record_pk=ticket.record_pk if ticket else None, connection_pk=link.connection_pk,
                ))
            if routed.ended and ticket is not None:
                await self.end_ticket(ticket, Status.FAILED, None, connection_pk=link.connection_pk, held=held)
        elif kind in TERMINAL_EVENTS and ticket is not None:
            await self._end_response(ticket, event, link, held)

    async def on_forward_only(self, link: UpstreamLink, frame: str, kind: str) -> None:
        """A default-lane delta or part marker, recognised without decoding (protocol/frames.py):
        forward and count it.

        Most frames take this way, so it is `to_client` and `Ticket.count` written out: each coroutine
        layer and call here costs about 0.3 µs per event."""
        ticket = link.book.running(None)
        if ticket is not None and self.keep_tail:
            ticket.frames.append(frame)
        if ticket is not None and ticket.stopped:
            return  # the user stopped it: counted when it ends (stopping.py)
        if self.publish is not None:
            self.publish(frame)
        if not self.client_gone:
            try:
                await self._send(frame)
            except Exception:
                self.client_gone = True
        if ticket is not None:
            ticket.events += 1
            if ticket.first_text_at is None:
                ticket.note_first(kind)

    async def _recovering(self, link: UpstreamLink, event: dict[str, Any]) -> bool:
        """An error that means the upstream lost its cache: if the relay resends the request, the
        client never sees the error (it is recorded, and the request it ended is superseded)."""
        error = event.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        if code not in RECOVERABLE_CODES:
            return False
        assert self.recover is not None
        ticket = link.book.error_target(event)
        if not self.recover(link, ticket, code, str(error.get("message") or "")):
            return False
        link.limit_reached = link.limit_reached or code == LIMIT_CODE
        routed = link.book.route(event)
        self.recorder.add(ErrorRow.from_event(
            event, source=ErrorEvent.Source.UPSTREAM, conversation_id=self.conversation_id,
            record_pk=ticket.record_pk if ticket else None, connection_pk=link.connection_pk,
        ))
        if routed.ended and routed.ticket is not None:
            self.supersede(routed.ticket)
        if code == LIMIT_CODE and not link.book.busy and link.is_open:
            link.reason = Reason.CONNECTION_LIMIT
            await link.socket.close(1000, "connection limit reached")
        return True

    def supersede(self, ticket: Ticket) -> None:
        """A request the relay resends: its record ends failed, without telling the client."""
        self.recorder.add(endings.superseded(ticket, self.conversation_id))
        self.lineage.child_ended_badly(ticket)
        self._ended(ticket)

    def _ended(self, ticket: Ticket) -> None:
        if self.on_ended is not None:
            self.on_ended(ticket)

    def _started(self, link: UpstreamLink, ticket: Ticket, kind: str, ended: bool) -> None:
        if not ticket.response_id or ticket.record_pk is None:
            return
        self.lineage.started(ticket.response_id, ticket.record_pk, ticket.stream_id)
        if ended:
            return  # the Finished op carries the id
        ticket.queued = kind == "response.queued"
        status = Status.QUEUED if ticket.queued else Status.IN_PROGRESS
        self.recorder.add(Started(ticket.record_pk, ticket.response_id, status, ticket.first_event_at))
        if ticket.previous_response_id:
            for merged in link.book.merged_steers(ticket.previous_response_id):
                # Several accepted steers feed one successor; the others point at it.
                self.recorder.add(endings.merged(merged, ticket.response_id, self.conversation_id))

    async def on_violation(self, link: UpstreamLink, frame: str | bytes) -> None:
        """The upstream broke the protocol: record the frame and close that socket; each request open on it
        ends with this error (on_closed), so a client gets one error per request, never a stray one."""
        exc = relay_errors.upstream_violation(frame)
        shown = frame[:2000] if isinstance(frame, str) else f"<{len(frame)} binary bytes>"
        self.recorder.add(ErrorRow(source=ErrorEvent.Source.UPSTREAM, code=exc.code, message=exc.message,
                                   status=exc.status, error_type=exc.type, conversation_id=self.conversation_id,
                                   connection_pk=link.connection_pk, raw={"frame": shown}))
        logger.warning("Upstream broke the protocol: %s", exc.message, extra=self.log_ids(None, link.connection_pk))
        link.failure = exc
        link.reason = Reason.UPSTREAM_ERROR
        await link.socket.close(1002, "protocol violation")

    async def on_closed(self, link: UpstreamLink) -> None:
        """End every request still open on a closed socket, record the close, tell the client."""
        if self.link is link:
            self.link = None
        code, text = link.socket.close_code, link.failure.code if link.failure else link.socket.close_reason
        reason = link.reason or (Reason.CONNECTION_LIMIT if link.limit_reached else Reason.UPSTREAM_ERROR)
        # Nobody to blame: the client left (gateway) or stopped the response, this process is shutting
        # down (hub.drain), or the relay closed it to resend its request (overlap.py).
        left = reason in (Reason.CLIENT_LEFT, Reason.SERVER_SHUTDOWN, Reason.STOPPED, Reason.RESENT)
        tickets = link.book.clear()
        self.recorder.add(ConnectionClosed(link.connection_pk, code, text, reason, timezone.now(), link.carried))
        self.end_queued = self.recorder.queued_count  # a new socket's guarded row waits for it (link.py)
        if tickets or (self.face.announces and not left):
            await self._close_written(len(tickets))
        for ticket in tickets:
            if (reason == Reason.CONNECTION_LIMIT and ticket.response_id is None and self.recover is not None
                    and self.recover(link, ticket, LIMIT_CODE)):
                self.supersede(ticket)  # never started: resent on a new socket
                continue
            exc = None if left or ticket.stopped else link.failure or relay_errors.upstream_disconnected(code, reason, text)
            status = Status.CANCELLED if ticket.stopped else Status.INTERRUPTED if left else Status.FAILED
            await self.end_ticket(ticket, status, exc, connection_pk=link.connection_pk, update=False)
        logger.info("Upstream socket closed: %s (code %s)", reason, code, extra=self.log_ids(None, link.connection_pk))
        if self.face.announces and not left:
            await self.to_client(json.dumps({"type": "switchboard.upstream_closed", "reason": reason, "code": code}))
        await self.update_status()

    async def _close_written(self, requests: int) -> None:
        """Until a closed socket's end is written, its row counts as held (limits.upstream_sockets_guard): a
        client told at once, retrying at once, was refused `too_many_upstream_sockets`. In flight meanwhile."""
        self.holding += requests
        try:
            await self.recorder.written(HOLD_SECONDS)  # False at once while the database is unavailable
        finally:
            self.holding -= requests

    # -- ending requests ---------------------------------------------------------------

    async def _end_response(self, ticket: Ticket, event: dict[str, Any], link: UpstreamLink,
                            held: str | None) -> None:
        outcome, finished = endings.responded(ticket, event, self.conversation_id)
        self.recorder.add(finished)
        logger.info("Response %s", outcome.status,
                    extra=self.log_ids(outcome.response_id or ticket.response_id, link.connection_pk))
        if self.on_usage is not None and outcome.usage is not None:
            self.on_usage(outcome.usage.total_tokens)
        if outcome.status == "failed":
            self.recorder.add(endings.response_failed(ticket, event, outcome, self.conversation_id,
                                                      link.connection_pk))
        self._ended(ticket)
        self._failed = outcome.status not in CONTINUABLE and not ticket.stopped
        if outcome.status not in CONTINUABLE:
            self.lineage.child_ended_badly(ticket)
        if outcome.status in CONTINUABLE and outcome.response_id:
            self.latest = outcome.response_id
        await self._deliver_held(ticket, held)
        await self.update_status()

    async def _deliver_held(self, ticket: Ticket, frame: str | None) -> None:
        """Send the frame that ended `ticket` once its records (and the conversation's status) are written.
        Until it is out, the request counts as in flight for a drain (`holding`, session.busy)."""
        if frame is None:
            return
        self.record_status()
        self.holding += 1
        try:
            if not await self.recorder.written(HOLD_SECONDS) and self.recorder.writer.outage is None:
                logger.warning("A response's record was not written within %g s; its last event goes out anyway",
                               HOLD_SECONDS, extra=self.log_ids(ticket.response_id, None))
            if self.keep_tail:
                ticket.frames.append(frame)
            await self.to_client(frame)
        finally:
            self.holding -= 1

    async def end_ticket(self, ticket: Ticket, status: str, exc: relay_errors.RelayError | None, *,
                         connection_pk: int | None, update: bool = True, held: str | None = None) -> None:
        """End a request that got no terminal event; with `exc`, record it and tell the client; `held`: the
        upstream's frame that ended it, sent once the records are written.

        Its record keeps what completed (endings.unended)."""
        self.recorder.add(endings.unended(ticket, status, self.conversation_id))
        logger.log(logging.INFO if exc is None else logging.WARNING, "Response %s%s", status,
                   f" ({exc.code})" if exc is not None else "", extra=self.log_ids(ticket.response_id, connection_pk))
        if exc is not None:
            event = exc.to_event(stream_id=ticket.stream_id)
            self.recorder.add(ErrorRow.from_event(event, source=exc.source, conversation_id=self.conversation_id,
                                                  record_pk=ticket.record_pk, connection_pk=connection_pk))
            await self.to_client(json.dumps(event))
        if status == Status.FAILED:
            self._failed = True
        self.lineage.child_ended_badly(ticket)
        self._ended(ticket)
        await self._deliver_held(ticket, held)
        if update:
            await self.update_status()

    def log_ids(self, response_id: str | None, connection_pk: int | None) -> dict[str, Any]:
        """`extra=` for a log line: what this stream knows of the ids (sessions_app/logs.py)."""
        return {"conversation_id": str(self.conversation_id) if self.conversation_id else None,
                "response_id": response_id, "connection_id": connection_pk}

    # -- the client --------------------------------------------------------------------

    async def refuse(self, exc: ProtocolError, event: dict[str, Any], *, conversation_stored: bool = True) -> None:
        """Answer a refused client event (already built as `event`) and record it; not `conversation_stored`: the
        socket's conversation could not be written (relay/ownership.py), so the record does not name it."""
        self.record_refusal(exc, event, conversation_stored=conversation_stored)
        await self.to_client(json.dumps(event))

    def record_refusal(self, exc: ProtocolError, event: dict[str, Any], *, conversation_stored: bool = True) -> None:
        """Record a refusal: the relay's own failures one row each, the client's aggregated (refusals.py)."""
        self.refusals.record(exc, event, conversation_id=self.conversation_id if conversation_stored else None)

    async def recording_overflowed(self) -> None:
        await self.announce(relay_errors.recording_overflow().to_event())

    async def announce(self, event: dict[str, Any]) -> None:
        """An event only the browser face gets (`switchboard.*`, docs/protocol.md); the gateway stays pure protocol."""
        if self.face.announces:
            await self.to_client(json.dumps(event))

    async def show_request(self, row: RequestRow) -> None:
        """`switchboard.request`: a create (or steer) this session accepted, for the people watching the conversation
        (its other tabs, staff viewers; docs/protocol.md), before anything of its response. The browser face
        sends it to its clients; the gateway only to its conversation's viewers (`publish`), never to its client."""
        event = {"type": "switchboard.request", "stream_id": row.stream_id, "origin": row.origin,
                 "previous_response_id": row.previous_response_id, "input": input_items(row.payload),
                 "accepted_at": row.accepted_at.isoformat()}
        if self.face.announces:
            await self.to_client(json.dumps(event))
        elif self.publish is not None:
            self.publish(json.dumps(event))

    async def to_client(self, text: str) -> None:
        if self.publish is not None:
            self.publish(text)
        if self.client_gone:
            return
        try:
            await self._send(text)
        except Exception:
            self.client_gone = True

    def in_flight_frames(self) -> list[str]:
        """The frames kept (`keep_tail`) of the responses still open on the current socket."""
        link = self.link
        return [frame for ticket in link.book.open_tickets() for frame in ticket.frames] if link else []

    def status_event(self) -> dict[str, Any]:
        """The browser's `switchboard.status` as it stands."""
        link = self.link
        busy = link is not None and link.book.busy
        return {"type": "switchboard.status", "status": "streaming" if busy else ("failed" if self._failed else "idle"),
                "upstream": "connected" if link is not None and link.is_open else "disconnected",
                "latest_response_id": self.latest or None}

    def record_status(self) -> dict[str, Any]:
        """Queue the conversation's status if it changed; the browser's `switchboard.status` as it stands."""
        event = self.status_event()
        status = event["status"]
        if self.conversation_id is not None and (status, self.latest) != self._recorded:
            self._recorded = (status, self.latest)
            self.recorder.add(ConversationState(self.conversation_id, status, self.latest))
        return event

    async def update_status(self, *, force: bool = False) -> None:
        event = self.record_status()
        announced = (event["status"], event["upstream"], self.latest)
        if self.face.announces and (force or announced != self._announced):
            self._announced = announced
            await self.to_client(json.dumps(event))

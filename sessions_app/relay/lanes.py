"""Which request owns an upstream event: the relay's book of what it sent and what came back.

Pure (no I/O, no Django). Everything that decides "this event belongs to that
record" lives here (PROTOCOL.md §4.1, §2.2):

* The relay forwards every `response.create` at once; the upstream queues
  creates on a busy lane. Creates on one lane are FIFO, so the oldest waiting
  create of a lane owns the next `response.created` (or `response.queued`)
  of that lane. `stream_id` absent is the default lane (key None).
* Upstream lanes never overlap: events without a `response` object (deltas,
  item events) belong to the lane's running response.
* An `error` on a lane with a waiting create ends the oldest of them (the
  request never started). An `error` with nothing waiting on its lane is
  connection-level: it ends nothing.
* A steer's successor is a `response.created` whose `previous_response_id`
  is the steered response: the oldest pending steer for that response owns
  it. `response.steer.failed` ends the oldest pending steer for its target.
* A `response.created` nobody owns (an upstream that starts responses on its
  own) still gets a ticket, with no record yet: nothing is dropped. It never
  displaces the lane's running response: a stray event of an unknown id (a
  broken upstream) must not hide a request still open, or that request would
  never end when the socket closes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..protocol.frames import TEXT_DELTA

__all__ = ["Ticket", "Routed", "LaneBook", "RESPONSE_EVENTS"]

# Events that carry the whole Response object (and so its id).
RESPONSE_EVENTS = frozenset(
    {"response.created", "response.queued", "response.in_progress", "response.completed", "response.failed",
     "response.incomplete"}
)
TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})


@dataclass(eq=False)
class Ticket:
    """One request on the wire and what the relay has seen of it (live, mutable state).

    `record_pk` is the ResponseRecord written before the request was sent;
    None only for a response the upstream started on its own.
    """

    record_pk: int | None
    kind: str  # "create" | "steer" | "discovered"
    stream_id: str | None
    previous_response_id: str | None
    sent_at: datetime
    response_id: str | None = None
    parent_pk: int | None = None  # the record it continues, when known
    steer_accepted: bool = False
    queued: bool = False  # named by `response.queued`: recorded queued until it starts
    first_event_at: datetime | None = None
    first_text_at: datetime | None = None
    events: int = 0
    output_done: dict[int, dict[str, Any]] = field(default_factory=dict)
    frames: list[str] = field(default_factory=list)  # its upstream frames, when a hub keeps the live tail
    request: Any = None  # the relay's memo of what was sent, so it can resend it (recovery.py)
    echo: dict[str, Any] | None = None  # a replay's Response objects carry these request fields (echo.py)
    stopped: bool = False  # the user stopped it (stopping.py): not relayed any more, recorded cancelled
    shown: tuple[int, dict[int, dict[str, Any]]] | None = None  # at the stop: frames relayed, items done

    def count(self, kind: str) -> None:
        """One more event of this request (kept in memory, per event), and its first event's and text's times."""
        self.events += 1
        self.note_first(kind)

    def note_first(self, kind: str) -> None:
        if self.first_event_at is None:
            self.first_event_at = datetime.now(UTC)
        if kind == TEXT_DELTA and self.first_text_at is None:
            self.first_text_at = datetime.now(UTC)


@dataclass(frozen=True)
class Routed:
    """Where an event goes: its ticket (or None), whether it just got bound, whether it ended."""

    ticket: Ticket | None
    bound: bool = False
    ended: bool = False


class LaneBook:
    """The open requests of one upstream socket; see the module rules."""

    def __init__(self) -> None:
        self._waiting: dict[str | None, deque[Ticket]] = {}
        self._running: dict[str | None, Ticket] = {}
        self._by_response: dict[str, Ticket] = {}
        self._steers: list[Ticket] = []
        #: Every response id this book has bound, with its record and lane (for parent links and steers).
        self.seen: dict[str, tuple[int | None, str | None]] = {}

    # -- requests going out ----------------------------------------------------------

    def add_create(self, ticket: Ticket) -> None:
        self._waiting.setdefault(ticket.stream_id, deque()).append(ticket)

    def add_steer(self, ticket: Ticket) -> None:
        self._steers.append(ticket)

    def discard(self, ticket: Ticket) -> None:
        """Forget a request that never reached the upstream (its send failed)."""
        waiting = self._waiting.get(ticket.stream_id)
        if waiting and ticket in waiting:
            waiting.remove(ticket)
        if ticket in self._steers:
            self._steers.remove(ticket)

    def lane_of(self, response_id: str) -> str | None:
        return self.seen.get(response_id, (None, None))[1]

    # -- questions -------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._running or self._steers or any(self._waiting.values()))

    def open_tickets(self) -> list[Ticket]:
        """Every request not yet ended, oldest first per kind."""
        tickets = list(self._running.values())
        for queue in self._waiting.values():
            tickets.extend(queue)
        tickets.extend(self._steers)
        return tickets

    def clear(self) -> list[Ticket]:
        """The socket is gone: every open request ends now; returns them."""
        tickets = self.open_tickets()
        self._waiting.clear()
        self._running.clear()
        self._by_response.clear()
        self._steers.clear()
        return tickets

    def error_target(self, event: dict[str, Any]) -> Ticket | None:
        """The request an `error` event would end, without routing it (None: connection-level)."""
        waiting = self._waiting.get(event.get("stream_id"))
        return waiting[0] if waiting else None

    # -- events coming back ----------------------------------------------------------

    def running(self, lane: str | None) -> Ticket | None:
        """The request streaming on `lane` now (what a delta of that lane belongs to)."""
        return self._running.get(lane)

    def route(self, event: dict[str, Any]) -> Routed:
        kind = event.get("type")
        lane = event.get("stream_id")
        if kind in RESPONSE_EVENTS:
            return self._route_response(kind, lane, event.get("response") or {})
        if kind == "error":
            waiting = self._waiting.get(lane)
            if waiting:
                return Routed(waiting.popleft(), ended=True)
            return Routed(self._running.get(lane))
        if kind in ("response.steer.accepted", "response.steer.pending", "response.steer.failed"):
            return self._route_steer(kind, event.get("steer") or {})
        return Routed(self.running(lane))

    def _route_response(self, kind: str, lane: str | None, response: dict[str, Any]) -> Routed:
        response_id = response.get("id")
        ticket = self._by_response.get(response_id) if response_id else None
        bound = False
        if ticket is None:
            ticket = self._bind(lane, response_id, response.get("previous_response_id"))
            bound = True
        if kind in TERMINAL_EVENTS:
            if self._running.get(lane) is ticket:
                del self._running[lane]
            if response_id:
                self._by_response.pop(response_id, None)
            return Routed(ticket, bound=bound, ended=True)
        return Routed(ticket, bound=bound)

    def _bind(self, lane: str | None, response_id: str | None, previous: str | None) -> Ticket:
        ticket = None
        if previous:
            ticket = next((s for s in self._steers if s.previous_response_id == previous), None)
            if ticket is not None:
                self._steers.remove(ticket)
        if ticket is None and self._waiting.get(lane):
            ticket = self._waiting[lane].popleft()
        if ticket is None:
            ticket = Ticket(record_pk=None, kind="discovered", stream_id=lane, previous_response_id=previous,
                            sent_at=datetime.now(tz=UTC))
        ticket.stream_id = lane
        ticket.response_id = response_id
        if response_id:
            self._by_response[response_id] = ticket
            self.seen[response_id] = (ticket.record_pk, lane)
        if ticket.kind != "discovered" or lane not in self._running:  # a stray never hides the running one
            self._running[lane] = ticket
        return ticket

    def _route_steer(self, kind: str, steer: dict[str, Any]) -> Routed:
        target = steer.get("previous_response_id")
        accepted = kind != "response.steer.failed"
        for ticket in self._steers:
            if ticket.previous_response_id != target:
                continue
            if kind == "response.steer.accepted" and not ticket.steer_accepted:
                ticket.steer_accepted = True
                return Routed(ticket)
            if kind == "response.steer.pending" and ticket.steer_accepted:
                return Routed(ticket)
            if not accepted and not ticket.steer_accepted:
                self._steers.remove(ticket)
                return Routed(ticket, ended=True)
        return Routed(None)

    def merged_steers(self, previous_response_id: str) -> list[Ticket]:
        """Accepted steers still waiting after their successor started: the upstream merged them into it."""
        merged = [s for s in self._steers if s.previous_response_id == previous_response_id and s.steer_accepted]
        for ticket in merged:
            self._steers.remove(ticket)
        return merged

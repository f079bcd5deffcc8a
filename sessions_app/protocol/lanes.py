"""Lanes: the ordering and concurrency rules of one Responses WebSocket connection.

Everything that affects lane scheduling lives in this file (PROTOCOL.md §4.1):

* A lane is named by `stream_id`; the default lane is the key `None`.
* Requests on one lane run FIFO and never overlap: a create on a busy lane is
  queued, never refused.
* Lanes run concurrently, but at most 16 responses are in flight per
  connection (default lane included); further creates wait, first come first
  served across lanes.
* At most 32 distinct named lanes per connection, counted over the
  connection's life (the default lane does not count); the 33rd name is
  refused with J3 before it is queued.

The table holds opaque tickets (whatever the caller needs to start the
request later) and does no I/O: the caller `submit`s a create, starts what it
is told to start, and calls `finish` when that request's last event
(terminal or `error`) has been sent, then starts what `finish` returns.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .outcome import TERMINAL_TYPES

__all__ = ["Lane", "TRANSITIONS", "Started", "Queued", "LaneTable", "MAX_IN_FLIGHT", "MAX_NAMED_LANES"]

MAX_IN_FLIGHT = 16
MAX_NAMED_LANES = 32


class Lane(enum.Enum):
    IDLE = "idle"
    IN_FLIGHT = "in_flight"


# One place to read the rules: which event moves a lane where.
TRANSITIONS: dict[tuple[Lane, str], Lane] = {
    (Lane.IDLE, "response.create"): Lane.IN_FLIGHT,
    **{(Lane.IN_FLIGHT, t): Lane.IDLE for t in sorted(TERMINAL_TYPES)},
    (Lane.IN_FLIGHT, "error"): Lane.IDLE,
}


@dataclass(frozen=True)
class Started:
    """Start this request now."""

    stream_id: str | None
    ticket: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Queued:
    """Accepted and waiting; `position` 1 means next on its lane."""

    stream_id: str | None
    position: int
    ticket: Any = field(default=None, compare=False)


class LaneTable:
    """Per-connection lane state; see the module rules."""

    def __init__(self, *, max_in_flight: int = MAX_IN_FLIGHT, max_named_lanes: int = MAX_NAMED_LANES) -> None:
        self.max_in_flight = max_in_flight
        self.max_named_lanes = max_named_lanes
        self._running: dict[str | None, Any] = {}
        self._waiting: dict[str | None, deque[tuple[int, Any]]] = {}
        self._named: set[str] = set()
        self._arrival = itertools.count()

    # -- questions -------------------------------------------------------------------

    def state(self, stream_id: str | None) -> Lane:
        return Lane.IN_FLIGHT if stream_id in self._running else Lane.IDLE

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @property
    def named_lanes(self) -> frozenset[str]:
        return frozenset(self._named)

    def running_ticket(self, stream_id: str | None) -> Any:
        return self._running.get(stream_id)

    # -- transitions -----------------------------------------------------------------

    def submit(self, stream_id: str | None, ticket: Any = None) -> Started | Queued:
        """A client sent `response.create` on this lane.  Raises J3 for a 33rd name."""
        if stream_id is not None and stream_id not in self._named:
            if len(self._named) >= self.max_named_lanes:
                exc = errors.stream_limit_reached()
                exc.stream_id = stream_id
                raise exc
            self._named.add(stream_id)
        waiting = self._waiting.setdefault(stream_id, deque())
        if stream_id not in self._running and not waiting and self.in_flight < self.max_in_flight:
            self._running[stream_id] = ticket
            return Started(stream_id, ticket)
        waiting.append((next(self._arrival), ticket))
        return Queued(stream_id, len(waiting), ticket)

    def finish(self, stream_id: str | None) -> tuple[Started, ...]:
        """The lane's running request ended; returns the requests to start now, in order."""
        if stream_id not in self._running:
            raise KeyError(f"lane {stream_id!r} has nothing in flight")
        del self._running[stream_id]
        return self._schedule()

    def observe(self, event: dict[str, Any]) -> tuple[Started, ...]:
        """Drive the table from server events (for a relay watching an upstream).

        Only events that end a request on a busy lane move it; anything else,
        including a connection-level `error` on an idle lane, changes nothing.
        """
        stream_id = event.get("stream_id")
        if (self.state(stream_id), event.get("type")) not in TRANSITIONS:
            return ()
        if TRANSITIONS[(Lane.IN_FLIGHT, event["type"])] is Lane.IDLE:
            return self.finish(stream_id)
        return ()  # pragma: no cover - every IN_FLIGHT transition ends at IDLE

    def drain(self) -> list[Any]:
        """Forget every queued request (connection closing); returns their tickets."""
        tickets = [ticket for q in self._waiting.values() for _, ticket in q]
        self._waiting.clear()
        return tickets

    def _schedule(self) -> tuple[Started, ...]:
        started: list[Started] = []
        while self.in_flight < self.max_in_flight:
            ready = [
                (q[0][0], lane) for lane, q in self._waiting.items() if q and lane not in self._running
            ]
            if not ready:
                break
            _, lane = min(ready, key=lambda pair: pair[0])
            _, ticket = self._waiting[lane].popleft()
            self._running[lane] = ticket
            started.append(Started(lane, ticket))
        return tuple(started)

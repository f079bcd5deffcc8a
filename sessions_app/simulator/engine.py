"""One simulated connection: lanes, cache, steering, limits.  Sockets are passed in.

Rules of a connection (PROTOCOL.md §4, §6):

* Envelope errors (bad JSON, unknown type, bad `stream_id`, forbidden
  fields, 33rd lane) are answered at once and never occupy a lane.
* Every other check runs when the create reaches the head of its lane:
  body limits (`max_output_tokens` ≥ 16, …), then `previous_response_id`,
  which must be the latest response of some lane of this connection (a fork
  may name another lane's response) or a `store=true` response of this
  simulator; otherwise J1.
* A same-lane continuation that ends in an `error` or `response.failed`
  evicts its parent from the lane's cache; a failed cross-lane fork keeps it.
* Steering: `response.steer` on a streaming response is accepted and the
  response stops at its next safe boundary; the successor then runs on the
  same lane without a new create.
* Connection limit: once `connection_limit_seconds` have passed, no queued
  create starts; when nothing is in flight (immediately, or when the streaming
  responses finish) the connection sends J2 and closes with code 1000.
* `/drop` aborts the transport (no close frame: the client sees 1006).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sessions_app.protocol import errors
from sessions_app.protocol.errors import ProtocolError, SteerError
from sessions_app.protocol.events import CreateEvent, SteerEvent, parse_client_event, validate_generation
from sessions_app.protocol.ids import steer_id
from sessions_app.protocol.items import input_items, last_user_text
from sessions_app.protocol.lanes import LaneTable, Started

from .directives import directive_error
from .store import Record, ResponseStore
from .stream import DROP
from .turn import Prepared, context_after, prepare, successor_create

__all__ = ["Session", "SessionSettings", "SocketClosed"]

SendEvent = Callable[[dict[str, Any]], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
LIMIT_CLOSE_CODE = 1000
LIMIT_CLOSE_REASON = "websocket_connection_limit_reached"


@dataclass(frozen=True)
class SessionSettings:
    tokens_per_second: float = 40.0
    connection_limit_seconds: float = 3600.0


class Dropped(Exception):
    """`/drop` aborted the transport; the lane task stops quietly."""


class SocketClosed(Exception):
    """Raised by the `send` callback when the socket is gone (the server maps its library's error)."""


@dataclass
class Active:
    """A response that is streaming now (the target of a steer)."""

    prepared: Prepared
    create: CreateEvent


class Session:
    def __init__(
        self,
        *,
        store: ResponseStore,
        settings: SessionSettings,
        send: SendEvent,
        close: CloseSocket,
        abort: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self._send_event = send
        self._close_socket = close
        self._abort = abort
        self._clock = clock
        self.opened_at = clock()
        self.errors_given: dict[str, int] = {}  # `/error CODE xN` counts, by input
        self.lanes = LaneTable()
        self.cache: dict[str | None, Record] = {}
        self.active: dict[str, Active] = {}
        self.finished_lane: dict[str, str | None] = {}  # finished response id -> its lane
        self.closing = False
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- entry points ----------------------------------------------------------------

    async def receive(self, frame: str | bytes) -> None:
        """Handle one client frame; streaming happens in lane tasks, not here."""
        if self.closing:
            return
        if isinstance(frame, bytes):
            await self._send(errors.invalid_json("binary frames are not supported").to_event())
            return
        try:
            event = parse_client_event(frame)
        except SteerError as exc:
            await self._send(exc.to_event(stream_id=self._lane_of(exc.previous_response_id)))
            return
        except ProtocolError as exc:
            await self._send(exc.to_event())
            return
        if isinstance(event, SteerEvent):
            await self._steer(event)
        else:
            await self._create(event)

    async def shutdown(self) -> None:
        """The socket is gone: stop every lane task."""
        self.closing = True
        self.lanes.drain()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- creates and lanes -----------------------------------------------------------

    def limit_reached(self) -> bool:
        return self._clock() - self.opened_at >= self.settings.connection_limit_seconds

    async def _create(self, create: CreateEvent) -> None:
        if self.draining or self.limit_reached():
            self.draining = True
            self.lanes.drain()
            if self.lanes.in_flight == 0:
                await self._close_for_limit()
            return
        try:
            outcome = self.lanes.submit(create.stream_id, create)
        except ProtocolError as exc:
            await self._send(exc.to_event())
            return
        if isinstance(outcome, Started):
            self._spawn(create)

    def _spawn(self, create: CreateEvent) -> None:
        task = asyncio.get_running_loop().create_task(self._run_lane(create))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, create: CreateEvent) -> None:
        lane = create.stream_id
        current: CreateEvent | None = create
        try:
            while current is not None:
                current = await self._run_request(current)
        except (Dropped, SocketClosed):
            self.closing = True
            return
        if self.closing:
            return
        if self.draining or self.limit_reached():
            self.draining = True
            self.lanes.drain()
        started = self.lanes.finish(lane)
        for next_request in started:
            self._spawn(next_request.ticket)
        if self.draining and self.lanes.in_flight == 0:
            await self._close_for_limit()

    def _error_due(self, create: CreateEvent, times: int | None) -> bool:
        """`/error CODE xN` errs only the first N times this socket sees the same user message."""
        if times is None:
            return True
        key = last_user_text(input_items(create.raw)) or ""
        given = self.errors_given.get(key, 0)
        self.errors_given[key] = given + 1
        return given < times

    async def _run_request(self, create: CreateEvent) -> CreateEvent | None:
        """Run one response; returns the successor create when it was steered."""
        lane = create.stream_id
        try:
            validate_generation(create.raw)
            parent, cached = self._resolve_parent(create)
        except ProtocolError as exc:
            self._evict_if_same_lane(create)
            await self._send(exc.to_event(stream_id=lane))
            return None
        prepared = prepare(create, parent, parent_cached=cached)
        if prepared.directives.error and self._error_due(create, prepared.directives.error_times):
            self._evict_if_same_lane(create)
            exc = directive_error(prepared.directives.error, create.previous_response_id)
            await self._send(exc.to_event(stream_id=lane))
            if exc.code == LIMIT_CLOSE_REASON:
                await self._close(LIMIT_CLOSE_CODE, LIMIT_CLOSE_REASON)
            return None
        stream = prepared.stream
        response_id = stream.spec.id
        self.active[response_id] = Active(prepared, create)
        try:
            await self._pump(prepared)
        finally:
            del self.active[response_id]
            self.finished_lane[response_id] = lane
        if stream.status in ("completed", "incomplete"):
            record = Record(response_id, lane, context_after(prepared), create.store, stream.spec.model)
            self.cache[lane] = record
            if create.store:
                self.store.put(record)
        else:
            self._evict_if_same_lane(create)
        if stream.steers and stream.status == "incomplete":
            return successor_create(create, response_id, [steer_input for _, steer_input in stream.steers])
        return None

    async def _pump(self, prepared: Prepared) -> None:
        """Send the stream's events, pacing deltas; `/slow MS` overrides the rate."""
        tps = self.settings.tokens_per_second
        delay = 1.0 / tps if tps > 0 else 0.0
        if prepared.directives.slow_ms is not None:
            delay = prepared.directives.slow_ms / 1000.0
        for event in prepared.stream.events():
            if event is DROP:
                self.closing = True
                self._abort()
                raise Dropped()
            await self._send(event)
            if event["type"].endswith(".delta"):
                # sleep(0) still yields, so lanes interleave and steers get read.
                await asyncio.sleep(delay)

    def _resolve_parent(self, create: CreateEvent) -> tuple[Record | None, bool]:
        previous = create.previous_response_id
        if previous is None:
            return None, False
        for record in self.cache.values():
            if record.id == previous:
                return record, True
        stored = self.store.get(previous)
        if stored is not None:
            return stored, False
        raise errors.previous_response_not_found(previous)

    def _evict_if_same_lane(self, create: CreateEvent) -> None:
        cached = self.cache.get(create.stream_id)
        if cached is not None and create.previous_response_id == cached.id:
            del self.cache[create.stream_id]

    # -- steering --------------------------------------------------------------------

    async def _steer(self, steer: SteerEvent) -> None:
        target = steer.previous_response_id
        active = self.active.get(target)
        stream = active.prepared.stream if active else None
        if stream is None or stream.finished:
            if stream is not None or target in self.finished_lane:
                code, message = "response_already_completed", (
                    f"Response '{target}' has already completed and is no longer accepting steering input."
                )
            else:
                code, message = "response_not_found", "Response not found on this connection."
            failure = SteerError(code, message, previous_response_id=target, input=steer.input)
            await self._send(failure.to_event(stream_id=self._lane_of(target), sequence_number=0))
            return
        if active is not None and active.prepared.uses_compaction:
            failure = SteerError(
                "steering_not_supported",
                "Steering is not supported for responses that use automatic compaction.",
                previous_response_id=target,
                input=steer.input,
            )
            await self._send(failure.to_event(stream_id=stream.stream_id, sequence_number=stream.next_sequence()))
            return
        assigned = steer_id()
        stream.request_steer(assigned, steer.input)
        event: dict[str, Any] = {"type": "response.steer.accepted", "sequence_number": stream.next_sequence()}
        if stream.stream_id is not None:
            event["stream_id"] = stream.stream_id
        event["steer"] = {"id": assigned, "previous_response_id": target}
        await self._send(event)

    def _lane_of(self, response_id: str) -> str | None:
        if response_id in self.active:
            return self.active[response_id].create.stream_id
        return self.finished_lane.get(response_id)

    # -- output ----------------------------------------------------------------------

    async def _send(self, event: dict[str, Any]) -> None:
        await self._send_event(event)

    async def _close_for_limit(self) -> None:
        if self.closing:
            return
        await self._send(errors.connection_limit_reached().to_event())
        await self._close(LIMIT_CLOSE_CODE, LIMIT_CLOSE_REASON)

    async def _close(self, code: int, reason: str) -> None:
        self.closing = True
        self.lanes.drain()
        await self._close_socket(code, reason)

"""Transparent recovery: resend a request whose upstream lost its connection-local cache.

Rules (PROTOCOL.md §4 "Reconnect and recovery", docs/protocol.md §3):

* Two upstream errors mean "the cache is gone": `previous_response_not_found`
  (J1) and `websocket_connection_limit_reached` (J2, then the upstream
  closes). When the conversation has `recovery_enabled`, the client never
  sees them: the error is recorded, the request's record ends `failed`
  (payload `{"superseded_by": "recovery"}`) and the request is sent again.
* J1 answers a continuation: it is resent as a replay (no
  `previous_response_id`, the context rebuilt from records), so `store=true`
  gets a plain continuation first and a replay only on J1. J1 for an id we
  have no record of is the upstream's error, relayed unchanged.
* J2 (and a limit close that ends requests that never started) waits for the
  old socket to close, then resends on a new one; a continuation with
  `store` other than true becomes a replay there (`Recovery.needs_replay`).
* `rate_limit_exceeded` on the browser face: resent after a pause (the
  "try again in N s" of the message, doubled each time, at most
  `RATE_WAIT_CAP` seconds), at most `RATE_RESENDS` times; the page is told
  `switchboard.retrying` before each pause. The gateway face relays it, as a
  direct connection would show it (its client has its own retry policy).
* A request is resent at most `MAX_RESENDS` times; after that the upstream's
  error reaches the client as it is.
* The browser face gets `switchboard.recovered` before the resent response's
  events; the gateway face gets pure protocol (the SDK sees an ordinary response).
* A replayed request looks to the client like the continuation it asked for:
  its Response objects carry the client's `previous_response_id` (echo.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..protocol.errors import ProtocolError
from ..recording import RequestRow, RequestWritten
from .context import ConversationView
from .echo import echo_of
from .faces import Face
from .lanes import Ticket
from .stream import Downstream
from .upstream_link import LIMIT_CODE, NOT_FOUND_CODE, RATE_CODE, UpstreamLink

__all__ = ["Resend", "MAX_RESENDS", "Recovery", "RecoveryHost", "recovered_event", "replay_echo"]

logger = logging.getLogger("sessions_app.relay")

MAX_RESENDS = 2
RATE_RESENDS = 3
RATE_WAIT_CAP = 30.0
LINK_CLOSE_WAIT_SECONDS = 10.0
_TRY_AGAIN = re.compile(r"try again in\s+([\d.]+)\s*(ms|s)\b", re.IGNORECASE)


def rate_wait(message: str, resends: int) -> float:
    """Seconds to wait before resending after a rate limit: the upstream's hint (else 1 s), doubled per resend."""
    hint = _TRY_AGAIN.search(message or "")
    base = float(hint.group(1)) / (1000 if hint.group(2).lower() == "ms" else 1) if hint else 1.0
    return min(RATE_WAIT_CAP, max(base, 0.1) * 2 ** resends)


@dataclass(frozen=True)
class Resend:
    """What a create's ticket remembers so it can be sent again."""

    row: RequestRow
    resends: int = 0


def recovered_event(*, reason: str, row: RequestRow, replayed: bool) -> dict[str, Any]:
    """The browser's `switchboard.recovered` notice (docs/protocol.md §3)."""
    return {"type": "switchboard.recovered", "reason": reason, "stream_id": row.stream_id,
            "previous_response_id": row.previous_response_id, "replayed": replayed}


def replay_echo(row: RequestRow, written: RequestWritten) -> tuple[bool, dict[str, Any] | None]:
    """Whether a create went as a new chain instead of the continuation it asked for (the notice's
    `replayed`), and, when that was a recovery replay, the request fields its Response objects must
    carry to look like that continuation (echo.py). A pending compaction's window is no recovery."""
    replayed = row.replay and bool(row.previous_response_id) and written.previous_response_id is None
    return replayed, echo_of(row.payload, written.payload) if replayed and written.replayed else None


class RecoveryHost(Protocol):
    """What recovery needs of its relay session."""

    conversation: ConversationView | None
    face: Face
    downstream: Downstream
    closing: bool

    def open_connection_pk(self) -> int | None: ...

    async def submit(self, row: RequestRow, *, raw: dict[str, Any] | None, frame: str | bytes | None,
                     resends: int = 0, reason: str | None = None) -> None: ...


class Recovery:
    """A relay session's recovery (see the module rules); `host` is the session."""

    def __init__(self, host: RecoveryHost) -> None:
        self.host = host
        self.tasks: set[asyncio.Task[None]] = set()

    def needs_replay(self, previous: str | None, payload: dict[str, Any]) -> bool:
        """A continuation the upstream socket cannot know (a new socket has an empty cache, PROTOCOL.md §4).

        With `store=true` the upstream hydrates it itself. Otherwise, if the conversation allows
        recovery, the recorder sends the context rebuilt from records instead (no round trip to
        `previous_response_not_found` first). Errors on a socket that did see the id are not retried here.
        """
        conversation = self.host.conversation
        if conversation is None or not previous or payload.get("store") is True or not conversation.recovery_enabled:
            return False
        link = self.host.downstream.link
        return link is None or not link.is_open or previous not in link.book.seen

    def recover(self, link: UpstreamLink, ticket: Ticket | None, code: str, message: str = "") -> bool:
        """Called by Downstream on a J1/J2: True when the request will be resent (see module rules)."""
        conversation = self.host.conversation
        if conversation is None or not conversation.recovery_enabled or self.host.closing:
            return False
        if ticket is None:
            # A connection-level J2: swallow it; the requests still open are resent when the socket closes.
            return code == LIMIT_CODE
        state = ticket.request
        if ticket.kind != "create" or ticket.response_id or not isinstance(state, Resend):
            return False
        if code == RATE_CODE and not self.host.face.announces:
            return False
        if state.resends >= (RATE_RESENDS if code == RATE_CODE else MAX_RESENDS):
            return False
        if code == NOT_FOUND_CODE and (ticket.parent_pk is None or not state.row.previous_response_id):
            return False
        wait = rate_wait(message, state.resends) if code == RATE_CODE else 0.0
        task = asyncio.get_running_loop().create_task(self._resend(link, ticket, state, code, wait),
                                                      name="switchboard-recovery")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _resend(self, link: UpstreamLink, ticket: Ticket, state: Resend, code: str, wait: float) -> None:
        host = self.host
        try:
            if wait:
                await host.downstream.to_client(json.dumps({
                    "type": "switchboard.retrying", "reason": code, "stream_id": ticket.stream_id,
                    "retry_in": round(wait, 1), "attempt": state.resends + 1, "of": RATE_RESENDS}))
                await asyncio.sleep(wait)
            if code == LIMIT_CODE and link.reader is not None and link.reader is not asyncio.current_task():
                await asyncio.wait([link.reader], timeout=LINK_CLOSE_WAIT_SECONDS)
            if host.closing or host.conversation is None:
                return
            row = state.row
            # Once the upstream lost the parent (an earlier resend was a replay), the request stays a replay.
            replay = code == NOT_FOUND_CODE or row.replay or self.needs_replay(row.previous_response_id, row.payload)
            row = replace(row, replay=replay, parent_pk=ticket.parent_pk, parent_forks=None, title="",
                          connection_pk=host.open_connection_pk(), supersedes_pk=ticket.record_pk)
            await host.submit(row, raw=None, frame=None, resends=state.resends + 1, reason=code)
        except ProtocolError as exc:
            await host.downstream.refuse(exc, exc.to_event(stream_id=ticket.stream_id))
        except Exception:
            logger.exception("Recovery failed (conversation %s)",
                             host.conversation.id if host.conversation else None)

    async def announce(self, row: RequestRow, *, replayed: bool, reason: str | None) -> None:
        """The browser's `switchboard.recovered` before a resent or replayed request's events."""
        if self.host.face.announces and (replayed or reason):
            event = recovered_event(reason=reason or "new_upstream_socket", row=row, replayed=replayed)
            await self.host.downstream.to_client(json.dumps(event))

    async def stop(self) -> None:
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

"""One open upstream socket of a relay session, the error codes it may answer, and how its frames decode.

Shared by the relay's halves: link.py opens and reads the socket, stream.py routes what it reads,
recovery.py resends what the codes below say the upstream lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..upstream import UpstreamSocket
from . import errors as relay_errors
from .lanes import LaneBook, Ticket

__all__ = ["UpstreamLink", "decode_event", "CONTINUABLE", "LIMIT_CODE", "NOT_FOUND_CODE", "RATE_CODE",
           "RECOVERABLE_CODES", "Recover"]

CONTINUABLE = frozenset({"completed", "incomplete"})
LIMIT_CODE = "websocket_connection_limit_reached"
NOT_FOUND_CODE = "previous_response_not_found"
# Upstream errors that mean "the connection-local cache is gone": the relay may resend the request.
RATE_CODE = "rate_limit_exceeded"
RECOVERABLE_CODES = frozenset({LIMIT_CODE, NOT_FOUND_CODE, RATE_CODE})
# recover(link, ticket, code) -> True when the relay takes the request over and resends it.
Recover = Callable[..., bool]  # (link, ticket, code, message="") -> whether the request will be resent


@dataclass(eq=False)
class UpstreamLink:
    """One open upstream socket of a session and what travels on it."""

    socket: UpstreamSocket
    connection_pk: int
    book: LaneBook = field(default_factory=LaneBook)
    reader: asyncio.Task[None] | None = None
    reason: str | None = None  # why we closed it, when we did
    limit_reached: bool = False  # the upstream sent websocket_connection_limit_reached
    carried: int = 0  # requests sent on it
    received: int = 0  # frames read from it (link.py's stall watch)
    failure: relay_errors.RelayError | None = None  # why we closed it, for the requests it ends (else disconnected)
    # While set, the reader holds every frame until it resolves: True relays them, False drops them (overlap.py).
    gate: asyncio.Future[bool] | None = None

    @property
    def is_open(self) -> bool:
        return self.socket.is_open

    async def put(self, ticket: Ticket, text: str) -> Literal["sent", "unsent", "ended"]:
        """Book `ticket` on this socket and send `text`. "sent": on its way (counted in `carried`). When the
        socket died under the send, "unsent": the ticket is out of the book again; or "ended": the reader
        read the close meanwhile and already ended the request and told the client."""
        (self.book.add_steer if ticket.kind == "steer" else self.book.add_create)(ticket)
        try:
            await self.socket.send(text)
        except Exception:
            if ticket not in self.book.open_tickets():
                return "ended"
            self.book.discard(ticket)
            return "unsent"
        self.carried += 1
        return "sent"


def decode_event(frame: str | bytes) -> dict[str, Any] | None:
    """An upstream frame as an event, or None when it breaks the protocol (binary, not JSON, no type)."""
    if not isinstance(frame, str):
        return None
    try:
        event = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event

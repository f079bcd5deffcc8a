"""Stop: a browser ends a streaming response (WebSocket mode has no cancel event, PROTOCOL.md §2).

Rules (docs/protocol.md, "Stop"):

* The response stops reaching the client at once: its ticket is marked `stopped`, and the
  downstream forwards none of its later events (stream.py).
* When nothing else is in flight on the upstream socket, that socket is closed (reason `stopped`):
  the only way to stop generation and what it costs. The response is recorded `cancelled`.
* When other responses share the socket, it stays open and the stopped response runs on upstream
  unseen; it is recorded `cancelled` when it ends.
* Either way its output items are what the client saw before `switchboard.stopped` (so a reload
  shows the page the user had); what the upstream sent after it is kept in `response_payload`.
* Either way the next turn works: on a new socket the relay replays the context from the records
  (recovery.py), so continuing the cancelled response keeps what it had said.
* The client gets `switchboard.stopped` (with `stopped: false` when nothing matched: the response
  had already ended).
"""

from __future__ import annotations

import json
from typing import Any

from ..models import UpstreamConnection
from .stream import Downstream

__all__ = ["stop_response", "STOP_CONTROL"]

STOP_CONTROL = "switchboard.stop"


async def stop_response(downstream: Downstream, response_id: str | None) -> dict[str, Any]:
    """Stop `response_id` (or, when None, the default lane's request in flight); see the module rules."""
    link = downstream.link
    ticket = None
    if link is not None:
        open_tickets = [t for t in link.book.open_tickets() if t.kind != "steer"]
        if response_id:
            ticket = next((t for t in open_tickets if t.response_id == response_id), None)
        else:
            ticket = next((t for t in open_tickets if not t.stream_id), None)
    if ticket is None or ticket.stopped:
        event = {"type": "switchboard.stopped", "response_id": response_id, "stream_id": None, "stopped": False}
        await downstream.to_client(json.dumps(event))
        return event
    ticket.stopped = True
    ticket.shown = (len(ticket.frames), dict(ticket.output_done))  # what the client saw is what is recorded
    alone = all(t is ticket or t.stopped for t in link.book.open_tickets())
    event = {"type": "switchboard.stopped", "response_id": ticket.response_id, "stream_id": ticket.stream_id,
             "stopped": True, "upstream_closed": alone}
    await downstream.to_client(json.dumps(event))
    if alone and link.is_open:
        link.reason = UpstreamConnection.CloseReason.STOPPED
        await link.socket.close(1000, "stopped by the user")
    return event

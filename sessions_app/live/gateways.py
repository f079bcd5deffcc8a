"""Gateway sockets on shutdown: the same drain as a browser conversation's hub gets (hub.py).

On SIGTERM (`python -m sessions_app.serve`) a gateway socket's in-flight responses get
`SWITCHBOARD_DRAIN_SECONDS` to finish, alongside the hubs' (both are `lifecycle` drainers). Then its relay is
closed with reason `server_shutdown`, which ends what is still in flight `interrupted` (streamed text kept) and
writes the recorder's last batch, and the client socket is closed with 1012 (service restart: reconnect; an SDK
continuing with `previous_response_id` is replayed on the process it reaches).

Without this, Daphne cancels the gateway's application instances once the hubs have drained: a response in flight
stays `in_progress` in the records for ever and its upstream connection row stays open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..models import UpstreamConnection
from ..relay import RelaySession
from . import lifecycle

__all__ = ["track", "untrack"]

logger = logging.getLogger("sessions_app.lifecycle")

SERVICE_RESTART = 1012
POLL_SECONDS = 0.05
CloseSocket = Callable[[int], Awaitable[None]]

_OPEN: dict[RelaySession, CloseSocket] = {}


def track(session: RelaySession, close: CloseSocket) -> None:
    """A gateway socket is open: drain `session` on shutdown, then `close(1012)` its client socket."""
    _OPEN[session] = close


def untrack(session: RelaySession | None) -> None:
    _OPEN.pop(session, None)


def _busy(session: RelaySession) -> bool:
    link = session.downstream.link
    return bool(session.recovery.tasks) or (link is not None and link.book.busy)


@lifecycle.on_drain
async def drain(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while any(_busy(s) for s in list(_OPEN)) and loop.time() < deadline:  # noqa: ASYNC110 (bounded wait)
        await asyncio.sleep(POLL_SECONDS)
    closing = list(_OPEN.items())
    _OPEN.clear()
    for session, close in closing:
        try:
            await session.close(UpstreamConnection.CloseReason.SERVER_SHUTDOWN)
            await close(SERVICE_RESTART)
        except Exception as exc:
            logger.error("A gateway socket failed to shut down: %r", exc)

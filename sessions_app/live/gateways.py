"""Gateway sockets on shutdown: the same drain as a browser conversation's hub gets (hub.py).

On SIGTERM (`python -m sessions_app.serve`), alongside the hubs (both are `lifecycle` drainers), every gateway
socket is closed with 1012 (service restart: reconnect; an SDK continuing with `previous_response_id` is replayed
on the process it reaches) as soon as nothing is in flight on it, and at the latest after
`SWITCHBOARD_DRAIN_SECONDS`. The close goes through the consumer: a frame it is handling (a create recording its
input) finishes first, then its `disconnect` closes the relay with reason `server_shutdown`, which ends what is
still in flight `interrupted` (streamed text kept) and writes the recorder's last batch. The drain returns once
every consumer did (bounded), before Daphne cancels what is left.

Without this, Daphne cancelled gateway sockets at once: a response in flight stayed `in_progress` in the records
for ever, its upstream connection row open. Closing the relay from here instead of through the consumer raced
with a create being handled, which left its record `queued`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..models import UpstreamConnection
from ..relay import RelaySession
from . import lifecycle

__all__ = ["close_reason", "track", "untrack"]

logger = logging.getLogger("sessions_app.lifecycle")

SERVICE_RESTART = 1012
POLL_SECONDS = 0.05
CLOSE_SETTLE_SECONDS = 5.0  # for the consumers to close their relays after their sockets closed
Reason = UpstreamConnection.CloseReason
CloseSocket = Callable[[int], Awaitable[None]]

_OPEN: dict[RelaySession, CloseSocket] = {}
_SHUTTING: set[RelaySession] = set()


def track(session: RelaySession, close: CloseSocket) -> None:
    """A gateway socket is open: on shutdown, `close(1012)` it once `session` is idle (module rules)."""
    _OPEN[session] = close


def untrack(session: RelaySession | None) -> None:
    """The socket's consumer has closed its relay: the drain no longer waits for it."""
    _OPEN.pop(session, None)
    _SHUTTING.discard(session)


def close_reason(session: RelaySession) -> str:
    """The reason the consumer closes its relay with: `server_shutdown` once the drain closed its socket."""
    return Reason.SERVER_SHUTDOWN if session in _SHUTTING else Reason.CLIENT_LEFT


async def _shut(session: RelaySession, close: CloseSocket) -> None:
    _SHUTTING.add(session)
    try:
        await close(SERVICE_RESTART)
    except Exception as exc:
        logger.error("A gateway socket failed to close: %r", exc)


@lifecycle.on_drain
async def drain(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    waiting = dict(_OPEN)
    while waiting:
        late = loop.time() >= deadline
        for session, close in list(waiting.items()):
            if late or not session.busy:
                del waiting[session]
                await _shut(session, close)
        if waiting:
            await asyncio.sleep(POLL_SECONDS)
    settle = loop.time() + CLOSE_SETTLE_SECONDS
    while _OPEN and loop.time() < settle:  # noqa: ASYNC110 (bounded: each consumer closes its relay)
        await asyncio.sleep(POLL_SECONDS)

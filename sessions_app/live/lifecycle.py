"""Graceful shutdown of a Daphne process.

On SIGTERM the server (``sessions_app.serve``) stops accepting connections,
then awaits every registered drainer with the drain time
(``SWITCHBOARD_DRAIN_SECONDS``): the relay lets in-flight responses finish
within it, marks what remains ``interrupted`` (what had streamed is kept) and
closes client sockets with 1012 (service restart) so clients know to
reconnect elsewhere. Only then are the remaining application instances
cancelled, as Daphne always does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("sessions_app.lifecycle")

Drainer = Callable[[float], Awaitable[None]]
_drainers: list[Drainer] = []
draining = False


def on_drain(drainer: Drainer) -> Drainer:
    """Register a coroutine function called with the drain time on shutdown (usable as a decorator)."""
    if drainer not in _drainers:
        _drainers.append(drainer)
    return drainer


async def drain(seconds: float) -> None:
    """Run every drainer concurrently; none may take the process down."""
    global draining
    draining = True
    logger.info("Draining: waiting up to %.1fs for in-flight responses", seconds)
    results = await asyncio.gather(*(drainer(seconds) for drainer in list(_drainers)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            logger.error("Drainer failed: %r", result)

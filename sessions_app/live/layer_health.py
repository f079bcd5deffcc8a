"""Is the channel layer up? One answer per process, and one log line per outage edge.

Rules:

* The channel layer only carries the live view across processes (fanout.py). When it fails
  (Redis down), the relay, the recording and the gateway go on; only the live view of other
  processes' events pauses, and catches up from the records when the layer is back.
* Whoever talks to the layer reports each outcome here: `failed(exc)` after an error,
  `succeeded()` after an operation that worked. The first failure logs **one** warning
  ("Channel layer unavailable …"); the first success after it logs **one** warning ("Channel
  layer back …"). Everything in between is silent: no traceback and no line per message.
* Both edges wake every listener (`rejoin_soon()`, callable from any thread): the fan-out's
  subscribers (subscriber.py), which pause when an outage starts and re-join when it ends.
* Retries wait with `Backoff`: doubling from `FIRST_RETRY_SECONDS` up to `MAX_RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Protocol

__all__ = ["Backoff", "LayerHealth", "health", "FIRST_RETRY_SECONDS", "MAX_RETRY_SECONDS"]

logger = logging.getLogger("sessions_app.fanout")

FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0


class Listener(Protocol):
    def rejoin_soon(self) -> None: ...


class LayerHealth:
    """This process's view of the channel layer: up until an operation fails."""

    def __init__(self) -> None:
        self.down = False
        self.since: float | None = None  # time.monotonic() of the first failure of this outage
        self.failures = 0  # failed operations during this outage
        self.outages = 0  # outages started so far: who joined before the latest one must join again
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()

    def _wake(self) -> None:
        for listener in list(self.listeners):
            listener.rejoin_soon()

    def failed(self, exc: BaseException, what: str = "an operation") -> None:
        """A layer operation (`what`: "publish", "receive"…) raised `exc`: the first failure of an outage
        is logged, once."""
        self.failures += 1
        if self.down:
            return
        self.down, self.since = True, time.monotonic()
        self.outages += 1
        logger.warning("Channel layer unavailable (%s failed: %s: %s): the live view across processes is paused; "
                       "the relay and the records carry on", what, type(exc).__name__, exc)
        self._wake()

    def succeeded(self) -> None:
        """A layer operation worked: the end of an outage is logged, once."""
        if not self.down:
            return
        seconds = time.monotonic() - (self.since or time.monotonic())
        logger.warning("Channel layer back after %.1f s (%d failed operations): the live view resumes",
                       seconds, self.failures)
        self.down, self.since, self.failures = False, None, 0
        self._wake()


health = LayerHealth()


class Backoff:
    """Delays between retries: doubling from FIRST_RETRY_SECONDS, at most MAX_RETRY_SECONDS."""

    def __init__(self, first: float = FIRST_RETRY_SECONDS, cap: float = MAX_RETRY_SECONDS) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first

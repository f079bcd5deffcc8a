"""A background loop's failures, logged on their edges: one warning when it starts failing, one when it
works again (with how many tries failed in between), nothing in between.

The per-process loops that beat rows and re-check credentials (liveness.py, sockets.py, revocation.py) run
every few seconds; during a database outage a line per try buried the one line that mattered
(outage.py and recording/availability.py log the outage itself).
"""

from __future__ import annotations

import logging
import time

__all__ = ["EdgeLog"]


class EdgeLog:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger, self.what = logger, what
        self.failures = 0
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            self.since = time.monotonic()
            self.logger.warning("%s failed (%s: %s); retrying quietly until it works again", self.what,
                                type(exc).__name__, exc)

    def succeeded(self) -> None:
        if self.failures:
            self.logger.warning("%s works again after %.1f s (%d failed tries)", self.what,
                                time.monotonic() - (self.since or time.monotonic()), self.failures)
            self.failures, self.since = 0, None

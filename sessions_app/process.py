"""This process: who it is, and how long what it holds stays its own without a heartbeat.

A process holding upstream sockets (live/liveness.py) or client sockets (live/sockets.py) stamps
their rows with `PROCESS_ID` every `heartbeat_seconds()`; a row not stamped for `lease()`
(`LEASE_BEATS` intervals) belongs to a process that died. The fan-out (live/fanout.py) names its
publishers after it too.

What a process keeps per event loop (a writer, a heartbeat task, a usage cache) is kept in a
`PerLoop` registry (`per_loop`, `loop_task`): Daphne runs one loop; tests run one each, so nothing
leaks from one test to the next, and a closed loop's entry goes with it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings

__all__ = ["PROCESS_ID", "LEASE_BEATS", "heartbeat_seconds", "heartbeats_enabled", "lease", "upstream_rows_beaten",
           "upstream_beats_late", "per_loop", "loop_task"]

T = TypeVar("T")
PerLoop = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]

PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
LEASE_BEATS = 3


def heartbeat_seconds() -> float:
    """SWITCHBOARD_HEARTBEAT_SECONDS (0: no heartbeat)."""
    return float(settings.SWITCHBOARD_HEARTBEAT_SECONDS)


def heartbeats_enabled() -> bool:
    return heartbeat_seconds() > 0


def lease() -> timedelta:
    return timedelta(seconds=heartbeat_seconds() * LEASE_BEATS)


_beaten_at: float | None = None  # time.monotonic() when the last heartbeat took the open upstream rows to stamp


def upstream_rows_beaten(at: float) -> None:
    """The heartbeat stamped every upstream row this process held open at `at` (or it held none)."""
    global _beaten_at
    _beaten_at = at


def upstream_beats_late() -> bool:
    """Whether an upstream row this process holds open may carry a beat older than the lease: no heartbeat
    stamped them within the lease less one interval (a beat failed, or the loop fell behind), or none ran."""
    return _beaten_at is None or time.monotonic() - _beaten_at > heartbeat_seconds() * (LEASE_BEATS - 1)


def per_loop(registry: PerLoop, make: Callable[[], T]) -> T:
    """The running loop's instance from `registry`, made on first use."""
    loop = asyncio.get_running_loop()
    instance = registry.get(loop)
    if instance is None:
        instance = registry[loop] = make()
    return instance


def loop_task(registry: PerLoop, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Start `run()` as the running loop's task in `registry`, unless one is running there already."""
    loop = asyncio.get_running_loop()
    task = registry.get(loop)
    if task is None or task.done():
        registry[loop] = loop.create_task(run(), name=name)

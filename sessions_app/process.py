"""This process: who it is, and how long what it holds stays its own without a heartbeat.

A process holding upstream sockets (live/liveness.py) or client sockets (live/sockets.py) stamps
their rows with `PROCESS_ID` every `heartbeat_seconds()`; a row not stamped for `lease()`
(`LEASE_BEATS` intervals) belongs to a process that died. The fan-out (live/fanout.py) names its
publishers after it too.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.conf import settings

__all__ = ["PROCESS_ID", "LEASE_BEATS", "heartbeat_seconds", "heartbeats_enabled", "lease"]

PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
LEASE_BEATS = 3


def heartbeat_seconds() -> float:
    """SWITCHBOARD_HEARTBEAT_SECONDS (0: no heartbeat)."""
    return float(settings.SWITCHBOARD_HEARTBEAT_SECONDS)


def heartbeats_enabled() -> bool:
    return heartbeat_seconds() > 0


def lease() -> timedelta:
    return timedelta(seconds=heartbeat_seconds() * LEASE_BEATS)

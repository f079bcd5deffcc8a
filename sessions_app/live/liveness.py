"""Process liveness lease on upstream sockets: who holds a conversation's socket, and is it still alive?

Rules:

* Every `SWITCHBOARD_HEARTBEAT_SECONDS` (0: off) a process stamps the
  `UpstreamConnection` rows of the sockets it holds open with `holder`
  (process.PROCESS_ID, which the row also carries from its INSERT) and
  `heartbeat_at`: one UPDATE per interval per process, never per event. Each
  beat that stamped them all (or found none) is noted (`process.upstream_rows_beaten`):
  while beats are late, the upstream-socket limit counts this process's rows
  whatever their beat (relay/limits.py).
* A connection still open in the records whose holder has not beaten for
  `LEASE_BEATS` intervals (or never beat and opened that long ago) belongs to
  a dead process. Before a hub of another process drives the conversation on
  a new socket, it ends that connection's in-flight records `interrupted`
  (with what it saw stream through the fan-out) and closes the row, so the
  next turn replays from complete records.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.db.models import Q
from django.utils import timezone

from ..models import ResponseRecord, UpstreamConnection
from ..process import (
    LEASE_BEATS,
    PROCESS_ID,
    PerLoop,
    heartbeat_seconds,
    heartbeats_enabled,
    lease,
    loop_task,
    upstream_rows_beaten,
)
from .edge_log import EdgeLog

__all__ = ["LEASE_BEATS", "enabled", "interval", "lease", "DeadHolder", "dead_holders", "start_heartbeat"]

logger = logging.getLogger("sessions_app.liveness")

IN_FLIGHT = (ResponseRecord.Status.QUEUED, ResponseRecord.Status.IN_PROGRESS)
# The timing is the process's (process.py), shared with the client-socket rows (sockets.py).
interval, enabled = heartbeat_seconds, heartbeats_enabled


def beat(connection_pks: list[int]) -> None:
    UpstreamConnection.objects.filter(pk__in=connection_pks, closed_at__isnull=True).update(
        holder=PROCESS_ID, heartbeat_at=timezone.now())


@dataclass(frozen=True)
class DeadHolder:
    """An open connection row whose process died, with its in-flight records (pk, response id)."""

    connection_pk: int
    carried: int
    records: tuple[tuple[int, str | None], ...]


def dead_holders(*, conversation_id: uuid.UUID, live: list[int]) -> list[DeadHolder]:
    """Open connections of the conversation whose holder stopped beating (not one of `live`, ours)."""
    cutoff = timezone.now() - lease()
    stale = (UpstreamConnection.objects.filter(conversation_id=conversation_id, closed_at__isnull=True)
             .exclude(pk__in=live)
             .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, opened_at__lt=cutoff)))
    found = []
    for connection in stale:
        records = ResponseRecord.objects.filter(connection=connection)
        in_flight = tuple(records.filter(status__in=IN_FLIGHT).order_by("sent_at").values_list("pk", "response_id"))
        found.append(DeadHolder(connection.pk, records.count(), in_flight))
    return found


_BEATING: PerLoop = weakref.WeakKeyDictionary()


def start_heartbeat(open_connections: Callable[[], list[int]]) -> None:
    """Start this event loop's heartbeat (once); `open_connections` lists the sockets held now."""
    if not enabled():
        return
    loop_task(_BEATING, lambda: _beat_forever(open_connections), "switchboard-heartbeat")


async def _beat_forever(open_connections: Callable[[], list[int]]) -> None:
    failures = EdgeLog(logger, "The upstream-connection heartbeat")
    while True:
        taken, pks = time.monotonic(), open_connections()
        if pks:
            try:
                await database_sync_to_async(beat)(pks)
            except Exception as exc:
                failures.failed(exc)
            else:
                failures.succeeded()
                upstream_rows_beaten(taken)
        else:
            upstream_rows_beaten(taken)
        await asyncio.sleep(interval())

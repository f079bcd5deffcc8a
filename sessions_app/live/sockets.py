"""This process's client sockets, counted where every process sees them (the `ClientSocket` table).

Rules:

* A socket is admitted before it is accepted: the user's open sockets are counted and this one is
  registered in one transaction, or `LimitExceeded` (`too_many_sockets`, relay/limits.py) is raised.
* Its row goes when it closes. Each process beats its rows like its upstream sockets (process.py),
  so the rows of a process that died stop counting after `lease()`, and are deleted after ten.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .. import process
from ..models import ClientSocket
from ..recording import on_db_thread
from ..relay.limits import LimitExceeded, Limits, limits_for
from .edge_log import EdgeLog

__all__ = ["Admitted", "admit_socket", "uncounted", "release_socket", "start_socket_heartbeat", "lease"]

logger = logging.getLogger("sessions_app.security")


def socket_beat_seconds() -> float:
    return process.heartbeat_seconds() if process.heartbeats_enabled() else 10.0


def lease() -> timedelta:
    return timedelta(seconds=socket_beat_seconds() * process.LEASE_BEATS)


@dataclass(frozen=True)
class Admitted:
    socket_pk: int | None  # None: the user has no socket limit, so the socket is not counted
    token_pk: int | None
    limits: Limits


def uncounted(limits: Limits | None, token_pk: int | None = None) -> Admitted | None:
    """Admitted at once when `limits` (None: not known yet) set no socket limit: nothing to count, no row."""
    if limits is None or limits.max_sockets:
        return None
    return Admitted(None, token_pk, limits)


def admit_socket(*, user, face: str, token_pk: int | None = None) -> Admitted:
    """Count the user's open sockets and register this one, or raise LimitExceeded (sync)."""
    limits = limits_for(user.pk)
    if (admitted := uncounted(limits, token_pk)) is not None:
        return admitted
    with transaction.atomic():
        # Serialise one user's admissions (PostgreSQL; SQLite's write transaction already does).
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
        live = ClientSocket.objects.filter(user_id=user.pk, heartbeat_at__gte=timezone.now() - lease()).count()
        if live >= limits.max_sockets:
            logger.warning("Socket refused: user %s has %d sockets open (limit %d)", user.pk, live,
                           limits.max_sockets)
            raise LimitExceeded("too_many_sockets",
                                f"You have {live} sockets open; the limit is {limits.max_sockets} concurrent "
                                "sockets per user. Close one and try again.")
        row = ClientSocket.objects.create(user_id=user.pk, face=face, token_id=token_pk, holder=process.PROCESS_ID)
    return Admitted(row.pk, token_pk, limits)


def release_socket(socket_pk: int | None) -> None:
    if socket_pk is not None:
        ClientSocket.objects.filter(pk=socket_pk).delete()


def _beat_sockets() -> None:
    now = timezone.now()
    ClientSocket.objects.filter(holder=process.PROCESS_ID).update(heartbeat_at=now)
    ClientSocket.objects.filter(heartbeat_at__lt=now - 10 * lease()).delete()  # rows of processes long dead


_BEATING: process.PerLoop = weakref.WeakKeyDictionary()


def start_socket_heartbeat() -> None:
    """Beat this process's client-socket rows while its loop runs (started once per loop)."""
    process.loop_task(_BEATING, _beat_forever, "switchboard-socket-heartbeat")


async def _beat_forever() -> None:
    failures = EdgeLog(logger, "The client-socket heartbeat")
    while True:
        await asyncio.sleep(socket_beat_seconds())
        try:
            await on_db_thread(_beat_sockets)
        except Exception as exc:
            failures.failed(exc)
        else:
            failures.succeeded()

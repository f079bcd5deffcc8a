"""This process's client sockets, counted where every process sees them (the `ClientSocket` table).

Rules:

* A socket is admitted before it relays: the user's open sockets are counted and this one is
  registered in one statement, or `LimitExceeded` (`too_many_sockets`, relay/limits.py) is raised.
  A user without a socket limit is admitted uncounted, with no row.
* Its row goes when it closes. Each process beats its rows like its upstream sockets (process.py),
  so the rows of a process that died stop counting after `lease()`, and are deleted after ten.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections
from django.utils import timezone

from .. import process
from ..models import ClientSocket
from ..models.statements import Statement, lock_user_row
from ..recording import delete_row, insert_row, on_db_thread, read_on_db_thread
from ..relay.limits import LimitExceeded, Limits, limits_for
from .edge_log import EdgeLog

__all__ = ["Admitted", "admit", "CredentialGone", "uncounted", "release_socket", "start_socket_heartbeat", "lease"]

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


async def admit(*, user_pk: int, face: str, token_pk: int | None = None, limits: Limits | None = None) -> Admitted:
    """Register this socket if the user's open sockets are fewer than allowed, or raise LimitExceeded.

    One guarded INSERT (count and insert in one statement), written with other sockets' rows: grouped
    under SQLite's write lock, from the loop after a lock on the user's row on PostgreSQL (recording's
    `insert_row`), never a database thread's ORM transaction of its own: every socket of a user under
    the default limits passes here. `limits` are the user's when the handshake read them."""
    if limits is None:
        limits = await read_on_db_thread(limits_for, user_pk=user_pk)
    if (admitted := uncounted(limits, token_pk)) is not None:
        return admitted
    row = ClientSocket(user_id=user_pk, face=face, token_id=token_pk, holder=process.PROCESS_ID)
    since = timezone.now() - lease()
    try:
        pk = await insert_row(row, guard=_fewer_open_sockets(user_pk, since, limits.max_sockets),
                              lock=lock_user_row(user_pk))
    except IntegrityError:  # the user or the token was deleted since the handshake read them
        raise CredentialGone() from None
    if pk is None:
        live = await read_on_db_thread(_open_sockets, user_pk=user_pk, since=since)
        logger.warning("Socket refused: user %s has %d sockets open (limit %d)", user_pk, live, limits.max_sockets)
        raise LimitExceeded("too_many_sockets",
                            f"You have {live} sockets open; the limit is {limits.max_sockets} concurrent "
                            "sockets per user. Close one and try again.")
    return Admitted(pk, token_pk, limits)


class CredentialGone(Exception):
    """The socket's user or token no longer exists: it is refused like a revoked one."""


def _fewer_open_sockets(user_pk: int, since, limit: int) -> Statement:
    """The guard of a socket's admission: the user's sockets beaten since `since` are fewer than `limit`."""
    connection = connections[DEFAULT_DB_ALIAS]
    sql = _OPEN_SOCKETS_SQL.get(connection.vendor)
    if sql is None:
        meta, quote = ClientSocket._meta, connection.ops.quote_name
        sql = _OPEN_SOCKETS_SQL[connection.vendor] = (
            f"(SELECT COUNT(*) FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('user').column)} = %s "
            f"AND {quote(meta.get_field('heartbeat_at').column)} >= %s) < %s")
    return sql, [user_pk, connection.ops.adapt_datetimefield_value(since), limit]


_OPEN_SOCKETS_SQL: dict[str, str] = {}


def _open_sockets(user_pk: int, since) -> int:
    return ClientSocket.objects.filter(user_id=user_pk, heartbeat_at__gte=since).count()


async def release_socket(socket_pk: int | None) -> None:
    """The socket closed: its row goes, written like its admission (grouped on SQLite, from the loop on
    PostgreSQL), awaited so that a client reconnecting at once is counted without it."""
    if socket_pk is not None:
        await delete_row(ClientSocket, socket_pk)


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

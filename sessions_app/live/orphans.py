"""Responses whose holding process died while browsers watch them from this process: settle them unasked.

A browser that re-attaches here after the process streaming its reply was killed (nginx sends its new socket to
another process) gets that reply in its history as still in flight. Only a new create settles it
(`RemoteHalf.reap_dead_holders`, before this process opens an upstream socket), and a page showing a reply in
progress sends none: it would wait for ever. So:

* When a client attaches to a hub that holds no upstream socket of its own while the records show a response in
  flight, the hub watches (`watch`, one task per hub): every heartbeat interval, while it still has clients, no
  upstream socket and a response in flight, it asks whether that response's holder died (its lease ran out).
* Once it did, the dead holder's records are ended `interrupted` (with what streamed) exactly as before a create,
  and every client gets a fresh `switchboard.history`, in which that reply has ended: the page can send again,
  and the next create is replayed from the records.
* Two reads per interval and watching hub, only while a response held elsewhere is in flight; none per event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from ..models import ResponseRecord
from ..recording import log_failure
from ..relay import history_event, open_connection_pks
from . import liveness

__all__ = ["watch"]

logger = logging.getLogger("sessions_app.hub")

_WATCHING: dict[uuid.UUID, asyncio.Task[None]] = {}


def watch(conversation_id: uuid.UUID, *, clients: Callable[[], list[Any]], watching: Callable[[], bool],
          reap: Callable[[], Awaitable[None]]) -> None:
    """Watch the conversation for a dead holder (one task per conversation; see the module rules). `clients`: the
    hub's attached clients; `watching`: it still has clients and no upstream socket; `reap`: its remote half's
    `reap_dead_holders`."""
    if not liveness.enabled():
        return
    running = _WATCHING.get(conversation_id)
    if running is not None and not running.done():
        return
    _WATCHING[conversation_id] = asyncio.get_running_loop().create_task(
        _watch(conversation_id, clients, watching, reap), name="switchboard-orphans")


def _in_flight(conversation_id: uuid.UUID) -> bool:
    return ResponseRecord.objects.filter(conversation_id=conversation_id, status__in=liveness.IN_FLIGHT).exists()


async def _watch(conversation_id: uuid.UUID, clients: Callable[[], list[Any]], watching: Callable[[], bool],
                 reap: Callable[[], Awaitable[None]]) -> None:
    try:
        while watching():
            await asyncio.sleep(liveness.interval())
            if not await database_sync_to_async(_in_flight)(conversation_id):
                return
            dead = await database_sync_to_async(liveness.dead_holders)(conversation_id=conversation_id,
                                                                       live=open_connection_pks())
            if dead and watching():
                await reap()
                for client in tuple(clients()):
                    if client.pending is None:
                        history = await database_sync_to_async(history_event)(user=client.user,
                                                                              conversation_id=conversation_id)
                        await client.deliver(json.dumps(history))
    except Exception as failure:
        log_failure(logger, failure, "Could not settle the dead holders of conversation %s", conversation_id)
    finally:
        if _WATCHING.get(conversation_id) is asyncio.current_task():
            del _WATCHING[conversation_id]

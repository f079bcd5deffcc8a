"""The cross-process half of a conversation hub: frames of other processes, and their dead holders.

Rules (see fanout.py and liveness.py):

* A hub with clients subscribes to its conversation's group; frames another
  process published are passed to the local clients (queued in `pending`
  for one still attaching) and the latest remote response's frames are kept,
  both as a tail for clients attaching mid-response and as what had streamed
  if that process dies.
* A gap in a publisher's batches (the layer dropped one) is caught up from
  the records: every client gets a fresh `switchboard.history`.
* The channel layer down (subscriber.py) pauses only this: every client gets
  `switchboard.live` `{"state": "paused"}` (a client attaching meanwhile too,
  after its history), and when the subscriber is in its group again, a fresh
  `switchboard.history` then `{"state": "resumed"}`. The hub's own relay,
  recording and broadcast to this process's clients never wait on the layer.
* Before this process drives the conversation on a new upstream socket, the
  open connection rows of dead holders are closed and their in-flight records
  ended `interrupted` with the remote frames' partial output (recording ops,
  then a flush, so a replay reads complete records).
* `RemoteHalf` is held by its hub and knows nothing of it: it is handed the
  conversation id, the hub's publisher and recorder, a callable listing
  the attached clients (`Attached`), and what to call when another process
  published `switchboard.settings` (`on_settings`). It never imports hub.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.utils import timezone

from ..models import ResponseRecord, UpstreamConnection
from ..partial import partial_output
from ..recording import ConnectionClosed, Finished, Recorder
from ..relay import history_event, open_connection_pks
from . import fanout, liveness
from .subscriber import Subscriber

__all__ = ["Attached", "RemoteHalf", "live_event"]

logger = logging.getLogger("sessions_app.hub")

CREATED = '"response.created"'
SETTINGS = '"switchboard.settings"'
LIVE = "switchboard.live"


def live_event(state: str) -> str:
    """`switchboard.live`: the live view of other processes' events is `paused` (channel layer down) or
    `resumed` (after a catch-up from the records); docs/protocol.md §1."""
    reason = "channel_layer_unavailable" if state == "paused" else "channel_layer_back"
    return json.dumps({"type": LIVE, "state": state, "reason": reason})


def _response_id(frame: str) -> str | None:
    try:
        return (json.loads(frame).get("response") or {}).get("id")
    except ValueError:
        return None


class Attached(Protocol):
    """A browser socket attached to the hub, as far as frames of other processes go."""

    user: Any
    pending: list[str] | None  # frames queued while it attaches; None once live

    async def deliver(self, text: str) -> None: ...


class RemoteHalf:
    """Frames other processes publish for the conversation, and the records their dead holders left open."""

    def __init__(self, conversation_id: uuid.UUID, *, clients: Callable[[], Iterable[Attached]],
                 recorder: Recorder, publisher: fanout.Publisher | None,
                 on_settings: Callable[[], Awaitable[None]] | None = None) -> None:
        self.conversation_id = conversation_id
        self._clients = clients
        self._on_settings = on_settings
        self._recorder = recorder
        self._publisher = publisher
        self.subscriber: Subscriber | None = None
        self.frames: list[str] = []  # the latest remote response's frames

    async def subscribe(self) -> None:
        """Join the conversation's group (once; a layer that is down starts it paused, module rules).
        A client attaching while it is paused is told so after its history."""
        if self.subscriber is not None:
            if self.subscriber.paused:
                self._tell_attaching(live_event("paused"))
            return
        channel_layer = fanout.layer()
        if channel_layer is None:
            return
        publisher = self._publisher
        self.subscriber = Subscriber(
            self.conversation_id, channel_layer, deliver=self._remote, on_gap=self._catch_up,
            skip_origin=publisher.origin if publisher is not None else None,
            on_pause=self._paused, on_resume=self._resumed)
        try:
            await self.subscriber.start()
        except Exception as exc:  # the live view is best effort; the records are the truth
            logger.warning("Could not join the fan-out group of %s: %r", self.conversation_id, exc)
            self.subscriber = None
            return
        if publisher is not None:  # our own subscriber does not make our frames watched
            publisher.own_channel = self.subscriber.channel
            publisher.recheck()

    async def stop(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.stop()

    async def _remote(self, frames: list[str]) -> None:
        settings_changed = False
        for frame in frames:
            head = frame[:80]
            if CREATED in head:
                self.frames = []
            elif SETTINGS in head:
                settings_changed = True
                continue  # not a response's frame: no tail keeps it
            self.frames.append(frame)
        if settings_changed and self._on_settings is not None:
            await self._on_settings()
        for client in tuple(self._clients()):
            if client.pending is not None:
                client.pending.extend(frames)
            else:
                for frame in frames:
                    await client.deliver(frame)

    def _tell_attaching(self, frame: str) -> None:
        for client in tuple(self._clients()):
            if client.pending is not None:
                client.pending.append(frame)

    async def _tell(self, frame: str) -> None:
        """A notice of this process (not a remote frame: no tail keeps it)."""
        self._tell_attaching(frame)
        for client in tuple(self._clients()):
            if client.pending is None:
                await client.deliver(frame)

    async def _paused(self) -> None:
        await self._tell(live_event("paused"))

    async def _resumed(self) -> None:
        await self._catch_up()
        await self._tell(live_event("resumed"))

    async def _catch_up(self) -> None:
        for client in tuple(self._clients()):
            if client.pending is None:
                history = await database_sync_to_async(history_event)(user=client.user,
                                                                      conversation_id=self.conversation_id)
                await client.deliver(json.dumps(history))

    def tail(self, recorded: set[str]) -> list[str]:
        """The latest remote response's frames, unless the records already hold it ended."""
        frames = self.frames
        if not frames or _response_id(frames[0]) in recorded:
            return []
        return list(frames)

    async def reap_dead_holders(self) -> None:
        if not liveness.enabled():
            return
        dead = await database_sync_to_async(liveness.dead_holders)(conversation_id=self.conversation_id,
                                                                   live=open_connection_pks())
        if not dead:
            return
        now = timezone.now()
        remote_id = _response_id(self.frames[0]) if self.frames else None
        recorder = self._recorder
        for holder in dead:
            logger.warning("Upstream connection %s of conversation %s lost its holder process",
                           holder.connection_pk, self.conversation_id)
            for record_pk, response_id in holder.records:
                output: tuple[dict[str, Any], ...] = ()
                if response_id and response_id == remote_id:
                    output = partial_output(self.frames, {})
                recorder.add(Finished(conversation_id=self.conversation_id, record_pk=record_pk,
                                      status=ResponseRecord.Status.INTERRUPTED, response_id=response_id,
                                      output=output, completed_at=now))
            recorder.add(ConnectionClosed(holder.connection_pk, None, "the holding process stopped",
                                          UpstreamConnection.CloseReason.UPSTREAM_ERROR, now, holder.carried))
        await recorder.flush()

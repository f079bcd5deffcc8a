"""Live fan-out across processes: a conversation's frames published, in batches, to a channel-layer group.

Rules:

* The channel layer is for showing events live, never for getting anything
  into the database: it delivers at most once and drops messages when a
  group's capacity or expiry is hit. The process holding the upstream socket
  records directly (recording.py); a viewer that missed a batch catches up
  from the records.
* Group `conversation_<uuid hex>`. Each message is one batch:
  `{"type": "conversation.frames", "origin": "<process>/<publisher>", "batch": n, "frames": [...]}`.
  `Publisher.publish` is O(1) on the hot path (a list append); batches go out
  every `FLUSH_SECONDS` or every `MAX_BATCH` frames, in order, from one
  sender task per conversation. Never one group_send per delta.
* Both faces publish: a browser conversation's hub, and a gateway session.
  A hub's `Subscriber` joins the group, skips its own hub's batches (a hub on
  the same process as a gateway session still gets that session's), and
  reports a gap in a publisher's batch numbers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.conf import settings

__all__ = ["PROCESS_ID", "group_name", "Publisher", "Subscriber", "layer"]

logger = logging.getLogger("sessions_app.fanout")

PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
FLUSH_SECONDS = 0.02
MAX_BATCH = 64
MESSAGE_TYPE = "conversation.frames"


def group_name(conversation_id: uuid.UUID) -> str:
    return f"conversation_{conversation_id.hex}"


_LAYERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def layer() -> Any | None:
    """This event loop's channel layer (None without CHANNEL_LAYERS).

    One instance per loop, not channels' process-wide one: a layer keeps loop-bound state (the
    Redis layer's receive lock), and tests run each case on a loop of its own.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    instance = _LAYERS.get(loop)
    if instance is None:
        if DEFAULT_CHANNEL_LAYER not in getattr(settings, "CHANNEL_LAYERS", {}):
            return None
        instance = _LAYERS[loop] = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    return instance


class Publisher:
    """Batches one conversation's frames to its group (see the module rules)."""

    def __init__(self, conversation_id: uuid.UUID, channel_layer: Any) -> None:
        self.group = group_name(conversation_id)
        self._layer = channel_layer
        self._outbox: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: deque[dict[str, Any]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._number = 0
        self.origin = f"{PROCESS_ID}/{uuid.uuid4().hex[:8]}"

    def publish(self, frame: str) -> None:
        self._outbox.append(frame)
        if len(self._outbox) >= MAX_BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._outbox:
            return
        frames, self._outbox = self._outbox, []
        self._number += 1
        self._batches.append({"type": MESSAGE_TYPE, "origin": self.origin, "batch": self._number, "frames": frames})
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="switchboard-fanout")

    async def _send(self) -> None:
        while self._batches:
            message = self._batches.popleft()
            try:
                await self._layer.group_send(self.group, message)
            except Exception as exc:  # live view only: a lost batch is caught up from the records
                logger.warning("Could not publish to %s: %r", self.group, exc)

    async def close(self) -> None:
        self.flush()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)


class Subscriber:
    """Receives other processes' batches for one conversation."""

    def __init__(self, conversation_id: uuid.UUID, channel_layer: Any, *,
                 deliver: Callable[[list[str]], Awaitable[None]], on_gap: Callable[[], Awaitable[None]],
                 skip_origin: str | None = None) -> None:
        self.group = group_name(conversation_id)
        self._layer = channel_layer
        self._deliver = deliver
        self._on_gap = on_gap
        self._skip = skip_origin
        self._channel: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._last: dict[str, int] = {}

    async def start(self) -> None:
        self._channel = await self._layer.new_channel()
        await self._layer.group_add(self.group, self._channel)
        self._task = asyncio.get_running_loop().create_task(self._receive(), name="switchboard-fanout-in")

    async def _receive(self) -> None:
        assert self._channel is not None
        while True:
            try:
                message = await self._layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Fan-out receive on %s failed: %r", self.group, exc)
                await asyncio.sleep(0.5)
                continue
            origin = message.get("origin")
            if message.get("type") != MESSAGE_TYPE or origin == self._skip:
                continue
            number = int(message.get("batch") or 0)
            previous = self._last.get(origin)
            self._last[origin] = number
            if previous is not None and number != previous + 1:
                await self._on_gap()
            await self._deliver(list(message.get("frames") or ()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._channel is not None:
            try:
                await self._layer.group_discard(self.group, self._channel)
            except Exception:
                pass

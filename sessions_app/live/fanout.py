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
  A hub's `Subscriber` (subscriber.py) joins the group, skips its own hub's batches (a hub on
  the same process as a gateway session still gets that session's), and
  reports a gap in a publisher's batch numbers.
* Nobody watching, nothing sent: every `WATCH_CHECK_SECONDS` one check per
  event loop asks the layer who is in the groups of all its publishers (one
  pipelined query per Redis host, however many sockets publish), and a
  subscriber starting in this process has it asked at once. A publisher is
  watched while its group has a member other than its own hub's subscriber
  (in-memory and Redis layers; with another layer it always publishes).
  Unwatched, `publish` returns at once. When a watcher appears, the
  publisher first sends its backlog (the frames of its responses still in
  flight), so the watcher gets them whole. A publisher counts as watched
  until its first check, except a new conversation's (a gateway's first
  turn): nobody can know its id yet, so it starts unwatched and waits for
  the next round's check, with no check of its own (at 150 new sockets a
  second those checks and the batches nobody read were 7 % of the loop;
  bench/README.md, 2026-12-03 night).
* The layer going down (Redis stopped) never reaches the relay: `publish`
  does no I/O, the sender and the watch catch every layer error, and
  layer_health.py logs one warning when the outage starts and one when it
  ends. While the watch cannot ask, publishers are unwatched and skip a batch
  number, so a viewer sees a gap and catches up from the records; its checks
  wait with backoff. Subscribers pause and resume (subscriber.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.conf import settings

from ..process import PROCESS_ID
from .layer_health import Backoff, health

__all__ = ["PROCESS_ID", "group_name", "Publisher", "layer", "publisher_for", "local_publishers"]

logger = logging.getLogger("sessions_app.fanout")

FLUSH_SECONDS = 0.02
MAX_BATCH = 64
MESSAGE_TYPE = "conversation.frames"
WATCH_CHECK_SECONDS = 1.0


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


async def group_members(channel_layer: Any, groups: list[str]) -> dict[str, set[str]] | None:
    """Each group's current members (channel names); None when the layer cannot tell."""
    layer_groups = getattr(channel_layer, "groups", None)
    if isinstance(layer_groups, dict):  # channels.layers.InMemoryChannelLayer
        return {group: set(layer_groups.get(group, ())) for group in groups}
    if not all(hasattr(channel_layer, name) for name in ("_group_key", "connection", "consistent_hash")):
        return None
    # channels_redis' RedisChannelLayer: members are a sorted set scored by when they joined.
    since = int(time.time()) - channel_layer.group_expiry
    by_host: dict[int, list[str]] = {}
    for group in groups:
        by_host.setdefault(channel_layer.consistent_hash(group), []).append(group)
    members: dict[str, set[str]] = {}
    for index, host_groups in by_host.items():
        async with channel_layer.connection(index).pipeline(transaction=False) as pipe:
            for group in host_groups:
                pipe.zrangebyscore(channel_layer._group_key(group), since, "+inf")
            found = await pipe.execute()
        for group, names in zip(host_groups, found, strict=True):
            members[group] = {name.decode() if isinstance(name, bytes) else name for name in names}
    return members


class _Watch:
    """Who watches the groups of one layer's publishers: one check for all of them (module rules)."""

    def __init__(self, channel_layer: Any) -> None:
        self.layer = channel_layer
        self.publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, publisher: Publisher, *, now: bool = True) -> None:
        """Check `publisher` from now on, the first time at once (with whatever else is due), or with the next
        round unless `now`."""
        self.publishers.add(publisher)
        if now:
            self.wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard-fanout-watch")

    async def _run(self) -> None:
        backoff = Backoff()
        while self.publishers:
            publishers = list(self.publishers)
            self.wake.clear()
            wait = WATCH_CHECK_SECONDS
            groups = sorted({p.group for p in publishers})
            try:
                try:
                    members = await group_members(self.layer, groups)
                except Exception:  # once more: a pooled connection may date from before a Redis restart
                    members = await group_members(self.layer, groups)
            except Exception as exc:  # the layer is down: nobody can be reached (module rules)
                health.failed(exc, "who watches")
                for publisher in publishers:
                    publisher.unreachable()
                wait = backoff.next()
            else:
                health.succeeded()
                backoff.reset()
                if members is None:  # this layer cannot tell: always publish
                    for publisher in publishers:
                        publisher.set_watched(True)
                    return
                for publisher in publishers:
                    found = members.get(publisher.group)
                    try:
                        publisher.set_watched(found is None or any(m != publisher.own_channel for m in found))
                    except Exception as exc:  # one publisher's backlog must not stop the others' checks
                        logger.warning("Could not update the fan-out of %s: %r", publisher.group, exc)
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except TimeoutError:
                pass


_WATCHES: weakref.WeakKeyDictionary[Any, _Watch] = weakref.WeakKeyDictionary()  # by layer (one per loop)


def _watch(channel_layer: Any) -> _Watch:
    watch = _WATCHES.get(channel_layer)
    if watch is None:
        watch = _WATCHES[channel_layer] = _Watch(channel_layer)
    return watch


_LOCAL: dict[str, weakref.WeakSet[Publisher]] = {}  # this process's publishers, by group


def local_publishers(group: str) -> list[Publisher]:
    """This process's publishers to `group` (a subscriber joining has them ask the layer at once)."""
    return list(_LOCAL.get(group, ()))


def publisher_for(conversation_id: uuid.UUID, backlog: Callable[[], list[str]], *,
                  new: bool = False) -> Publisher | None:
    """A gateway session's fan-out to the viewers of its conversation (None without a channel layer); a `new`
    conversation's starts unwatched (module rules)."""
    channel_layer = layer()
    if channel_layer is None:
        return None
    return Publisher(conversation_id, channel_layer, backlog=backlog, watched=not new)


class Publisher:
    """Batches one conversation's frames to its group (see the module rules).

    `backlog` returns the frames of the publisher's responses still in flight."""

    def __init__(self, conversation_id: uuid.UUID, channel_layer: Any, *,
                 backlog: Callable[[], list[str]] | None = None, watched: bool = True) -> None:
        self.group = group_name(conversation_id)
        self._layer = channel_layer
        self._outbox: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: deque[dict[str, Any]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._number = 0
        self.origin = f"{PROCESS_ID}/{uuid.uuid4().hex[:8]}"
        self.own_channel: str | None = None  # the publishing hub's own subscriber: not a watcher
        self.watched = watched  # until the first check says otherwise (module rules)
        self._backlog = backlog
        self._watching = False  # known to its layer's _Watch (from the first publish)
        _LOCAL.setdefault(self.group, weakref.WeakSet()).add(self)

    def publish(self, frame: str) -> None:
        if not self._watching:
            self._watching = True
            _watch(self._layer).add(self, now=self.watched)
        if not self.watched:
            return
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
                try:
                    await self._layer.group_send(self.group, message)
                except Exception:  # once more: a pooled connection may date from before a Redis restart
                    await self._layer.group_send(self.group, message)
            except Exception as exc:  # live view only: lost batches are caught up from the records
                health.failed(exc, "publish")
                self._batches.clear()  # their numbers are spent: the viewer sees the gap
            else:
                health.succeeded()

    def unreachable(self) -> None:
        """The layer is down: publish nothing until a check succeeds, and skip a batch number
        so a viewer that was watching sees a gap and catches up from the records."""
        if self.watched:
            self._number += 1
        self.set_watched(False)

    def recheck(self) -> None:
        """Ask the layer now (a subscriber of this process just joined)."""
        if self._watching:
            _watch(self._layer).wake.set()

    def set_watched(self, watched: bool) -> None:
        """The watch's answer: becoming watched sends the backlog first; unwatched drops what waits."""
        if watched and not self.watched:
            self.watched = True
            for frame in self._backlog() if self._backlog is not None else ():
                self.publish(frame)
        elif not watched:  # nobody to send the pending frames to
            self._outbox.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.watched = watched

    async def close(self) -> None:
        if self._watching:
            _watch(self._layer).publishers.discard(self)
        local = _LOCAL.get(self.group)
        if local is not None:
            local.discard(self)
            if not local:
                _LOCAL.pop(self.group, None)
        self.flush()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

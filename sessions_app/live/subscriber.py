"""A conversation's subscriber: other processes' batches (fanout.py), received through a layer outage.

Rules (and fanout.py's):

* `start` joins the conversation's group and returns; it never raises for the layer. A layer that is
  down (or a join slower than `JOIN_TIMEOUT_SECONDS`) starts it paused.
* A receive failing is followed at once by a join: if that works, it was one stale pooled connection
  (Redis restarted under it), not an outage. A join failing pauses it (`on_pause`, once per outage);
  it then re-joins its group with `Backoff` (a restarted Redis forgot every group) and, joined,
  resumes (`on_resume`: the hub catches its browsers up from the records). Batch numbers seen before
  the pause are forgotten.
* Any layer failure seen in this process pauses every subscriber of it (`layer_health.health`'s
  listeners): a receive blocked on a Redis that restarted would otherwise wait forever in a group it
  is no longer in. The end of an outage wakes paused subscribers to re-join at once.
* The receive is never cancelled to wake it (channels_redis drops a channel's buffered messages when
  a receive is cancelled): it stays pending beside a wake event.
* A callback failing (a catch-up needing the database while it is down) is logged as one warning line
  and the subscription goes on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from . import fanout
from .layer_health import Backoff, health

__all__ = ["Subscriber", "JOIN_TIMEOUT_SECONDS"]

logger = logging.getLogger("sessions_app.fanout")

JOIN_TIMEOUT_SECONDS = 1.0


class Subscriber:
    """Receives other processes' batches for one conversation; pauses through a layer outage (module rules)."""

    def __init__(self, conversation_id: uuid.UUID, channel_layer: Any, *,
                 deliver: Callable[[list[str]], Awaitable[None]], on_gap: Callable[[], Awaitable[None]],
                 skip_origin: str | None = None, on_pause: Callable[[], Awaitable[None]] | None = None,
                 on_resume: Callable[[], Awaitable[None]] | None = None) -> None:
        self.group = fanout.group_name(conversation_id)
        self._layer = channel_layer
        self._deliver = deliver
        self._on_gap = on_gap
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._skip = skip_origin
        self._channel: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._last: dict[str, int] = {}
        self.paused = False  # not in its group for sure: the layer failed since it last joined
        self._joined_in = -1  # health.outages when it last joined its group
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @property
    def channel(self) -> str | None:
        return self._channel

    async def start(self) -> None:
        """Join the group and listen. A layer that is down is no error: it starts paused, and joins later."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._channel = await self._layer.new_channel()
        health.listeners.add(self)
        try:  # even during an outage: the first to try after Redis came back ends it
            await asyncio.wait_for(self._layer.group_add(self.group, self._channel), JOIN_TIMEOUT_SECONDS)
        except Exception as exc:
            health.failed(exc, "join")
            await self._pause()
        else:
            health.succeeded()
            self._joined_in = health.outages
            self._recheck_publishers()
        self._task = self._loop.create_task(self._run(), name="switchboard-fanout-in")

    def rejoin_soon(self) -> None:
        """The layer failed or came back somewhere in this process (any thread): pause, re-join, resume."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        assert self._channel is not None and self._wake is not None
        backoff = Backoff()
        receiving: asyncio.Task[dict] | None = None
        waking: asyncio.Task[bool] | None = None
        try:
            while True:
                if self._wake.is_set():
                    self._wake.clear()
                    if self._joined_in != health.outages:  # an outage began since it joined
                        await self._pause()
                if self.paused:
                    if not await self._rejoin(backoff):
                        continue
                    if receiving is not None and receiving.done() and (
                            receiving.cancelled() or receiving.exception() is not None):
                        receiving = None  # failed during the outage it has just resumed from
                if receiving is None:
                    receiving = asyncio.ensure_future(self._layer.receive(self._channel))
                if waking is None:
                    waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait((receiving, waking), return_when=asyncio.FIRST_COMPLETED)
                if waking.done():
                    waking = None
                if not receiving.done():
                    continue
                done, receiving = receiving, None
                try:
                    message = done.result()
                except Exception as exc:
                    if await self._join_now():  # one stale pooled connection, not an outage
                        await asyncio.sleep(backoff.next())  # (never a busy loop: messages wait in Redis)
                    else:
                        health.failed(exc, "receive")
                        await self._pause()
                    continue
                health.succeeded()
                backoff.reset()
                await self._handle(message)
        finally:
            for task in (receiving, waking):
                if task is not None:
                    task.cancel()

    async def _rejoin(self, backoff: Backoff) -> bool:
        """One attempt to join the group again after `backoff`'s delay (cut short by a wake). The delay is
        reset by a message received, not by the join: a layer that joins but cannot receive is retried slowly."""
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), backoff.next())
        except TimeoutError:
            pass
        self._wake.clear()
        try:
            await self._layer.group_add(self.group, self._channel)
        except Exception as exc:
            health.failed(exc, "re-join")
            return False
        health.succeeded()
        self._joined_in = health.outages
        self.paused = False
        self._last.clear()  # resuming catches up from the records: earlier numbers tell nothing
        self._recheck_publishers()
        await self._call(self._on_resume)
        return True

    async def _join_now(self) -> bool:
        """Join at once (after a receive failed: one connection dating from before a Redis restart fails
        once, and that is no outage). Only True tells the layer is up."""
        try:
            await asyncio.wait_for(self._layer.group_add(self.group, self._channel), JOIN_TIMEOUT_SECONDS)
        except Exception:
            return False
        health.succeeded()
        self._joined_in = health.outages
        return True

    async def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            await self._call(self._on_pause)

    async def _handle(self, message: dict) -> None:
        origin = message.get("origin")
        if message.get("type") != fanout.MESSAGE_TYPE or origin == self._skip:
            return
        number = int(message.get("batch") or 0)
        previous = self._last.get(origin)
        self._last[origin] = number
        if previous is not None and number != previous + 1:
            await self._call(self._on_gap)
        await self._call(self._deliver, list(message.get("frames") or ()))

    async def _call(self, callback: Callable[..., Awaitable[None]] | None, *args: Any) -> None:
        """A callback failing (the database down for a catch-up) must not end the subscription."""
        if callback is None:
            return
        try:
            await callback(*args)
        except Exception as exc:
            logger.warning("Fan-out of %s: %s failed: %r", self.group, getattr(callback, "__name__", "a callback"),
                           exc)

    def _recheck_publishers(self) -> None:
        for publisher in list(fanout.local_publishers(self.group)):
            publisher.recheck()

    async def stop(self) -> None:
        health.listeners.discard(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._channel is not None and not self.paused and not health.down:
            try:
                await asyncio.wait_for(self._layer.group_discard(self.group, self._channel), JOIN_TIMEOUT_SECONDS)
            except Exception:  # the membership expires anyway
                pass

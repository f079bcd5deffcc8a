"""Group commit for the user's input: creates that arrive while one write is in flight go out together.

On SQLite every write takes the one write lock and a recorder thread: with 50 sockets the creates
queued for both, one by one (bench/relay.py, 50 connections: input write p50 38 ms). A `Groups`
writes whatever has gathered in one call (recording_sqlite.write_many_at_once: one thread hop, one
turn at the lock, one commit), then the next group.

Rules:

* Each create still awaits its own commit before it is sent (recorder.py's rule); only the waiting
  is shared. A create that finds no write in flight is written alone, at once, from its caller's
  own task (a task to start and wake costs a loop turn each way; on a chain that was 0.1 ms a turn);
  creates that arrive meanwhile gather and go out as the next group, from a task.
* One create refused fails alone (its own exception); if the group as a whole fails, each of its
  creates is written again on its own, so a bad one never takes the others down.
* Per event loop, one `Groups`; a waiter cancelled meanwhile does not cancel the write, nor does a
  cancelled first create strand the creates gathered behind it.
* Order: statements are written in the order they came, in the same group or a later one, and a group
  that fails is written again one by one in that order. So a row `queue`d ahead of the rows that refer
  to it (a new conversation, then its first request and upstream socket) commits with them or before
  them, and they need not wait for its commit before joining (SQLite checks foreign keys at COMMIT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Groups"]

WriteMany = Callable[[list[Any]], Awaitable[list[Any]]]


class Groups:
    def __init__(self, write_many: WriteMany) -> None:
        self._write_many = write_many
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a group is being written

    async def write(self, statement: Any) -> Any:
        """The statement's result, once it is committed; raises what refused it."""
        if self._busy:  # a write is in flight: join the next group
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._pending.append((statement, waiter))
            return await waiter
        # Nothing in flight: write this one from the caller's own task (no task to start and wake),
        # then hand what gathered meanwhile to a task of its own.
        self._busy = True
        try:
            [result] = await self._write_group([statement])
        finally:
            if self._pending:
                self._start_drain()
            else:
                self._busy = False
        if isinstance(result, BaseException):
            raise result
        return result

    def queue(self, statement: Any) -> asyncio.Future[Any]:
        """`write` without waiting: `statement` joins the next group at once, ahead of whatever the caller
        writes next. The future gives its result or what refused it."""
        waiter = asyncio.get_running_loop().create_future()
        self._pending.append((statement, waiter))
        if not self._busy:
            self._busy = True
            self._start_drain()
        return waiter

    def _start_drain(self) -> None:
        """Write what is pending, group by group, from a task of its own (the caller holds `_busy`)."""
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="switchboard-input-groups")

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                results = await self._write_group([statement for statement, _ in group])
                for (_, waiter), result in zip(group, results, strict=True):
                    if waiter.done():
                        continue
                    if isinstance(result, BaseException):
                        waiter.set_exception(result)
                    else:
                        waiter.set_result(result)
        finally:
            self._busy = False

    async def _write_group(self, statements: list[Any]) -> list[Any]:
        """Each statement's result or exception; a group that fails as a whole is written again one by one."""
        try:
            return await self._write_many(statements)
        except Exception as exc:
            if len(statements) == 1:
                return [exc]
            return [await self._alone(statement) for statement in statements]

    async def _alone(self, statement: Any) -> Any:
        try:
            [result] = await self._write_many([statement])
        except Exception as exc:
            return exc
        return result


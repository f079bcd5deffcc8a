"""Group commit for the user's input: creates that arrive while one write is in flight go out together.

On SQLite every write takes the one write lock and a recorder thread: with 50 sockets the creates
queued for both, one by one (bench/relay.py, 50 connections: input write p50 38 ms). A `Groups`
writes whatever has gathered in one call (recording_sqlite.write_many_at_once: one thread hop, one
turn at the lock, one commit), then the next group.

Rules:

* Each create still awaits its own commit before it is sent (recording.py's rule); only the waiting
  is shared. A create alone is written alone, at once.
* One create refused fails alone (its own exception); if the group as a whole fails, each of its
  creates is written again on its own, so a bad one never takes the others down.
* Per event loop, one `Groups`; a waiter cancelled meanwhile does not cancel the write.
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

    async def write(self, statement: Any) -> Any:
        """The statement's result, once it is committed; raises what refused it."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._pending.append((statement, waiter))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="switchboard-input-groups")
        return await waiter

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            statements = [statement for statement, _ in group]
            try:
                results = await self._write_many(statements)
            except Exception as exc:  # the group as a whole: each one again, alone
                results = [exc] if len(group) == 1 else [await self._alone(statement) for statement in statements]
            for (_, waiter), result in zip(group, results, strict=True):
                if waiter.done():
                    continue
                if isinstance(result, BaseException):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)

    async def _alone(self, statement: Any) -> Any:
        try:
            [result] = await self._write_many([statement])
        except Exception as exc:
            return exc
        return result


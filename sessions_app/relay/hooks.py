"""What a consumer hands its relay session (session.py): how to reach the client, and the live fan-out."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["SendText", "Publishing", "PublisherFor"]

SendText = Callable[[str], Awaitable[None]]


class Publishing(Protocol):
    """A conversation's live fan-out (live/fanout.Publisher)."""

    def publish(self, text: str) -> None: ...

    async def close(self) -> None: ...


class PublisherFor(Protocol):
    """(conversation id, the in-flight frames for a viewer arriving mid-response) -> its fan-out, or None;
    live/fanout.py's `publisher_for` (a `new` conversation's starts unwatched)."""

    def __call__(self, conversation_id: uuid.UUID, backlog: Callable[[], list[str]], *,
                 new: bool = False) -> Publishing | None: ...

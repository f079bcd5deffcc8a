"""Where finished responses live: the connection-local cache and the process-wide store.

Rules (PROTOCOL.md §4):

* Each connection caches the latest response of each lane (key None = the
  default lane); a new response on a lane replaces the lane's entry.
* A `store=true` response is also put in the `ResponseStore` shared by every
  connection of one `Simulator`, so a new socket can continue from it
  (hydration, without the cached-token discount).
* Nothing is written to disk: a restarted simulator has forgotten everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Record", "ResponseStore"]


@dataclass(frozen=True)
class Record:
    """A finished response: its id, lane and the full context a continuation starts from."""

    id: str
    stream_id: str | None
    context: tuple[dict[str, Any], ...]
    store: bool
    model: str


class ResponseStore:
    """Process-wide `store=true` responses (in memory, shared across connections)."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}

    def put(self, record: Record) -> None:
        self._records[record.id] = record

    def get(self, response_id: str) -> Record | None:
        return self._records.get(response_id)

    def __len__(self) -> int:
        return len(self._records)

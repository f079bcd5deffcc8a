"""Which response continues which, as far as one client socket has seen: so a continuation needs no lookup.

Rules:

* A response is known once its id is bound to its record (`started`); its record and lane are then looked
  up here, not in the database (`parent`). A response this socket never saw is left to the database.
* Continuing a response forks its chain when the continuation is on another lane, or when another
  continuation of it sent here has not ended badly (recording.RequestRow's `parent_forks`).
"""

from __future__ import annotations

from .lanes import Ticket

__all__ = ["Lineage"]


class Lineage:
    def __init__(self) -> None:
        self._records: dict[str, tuple[int, str | None]] = {}  # response id -> (record, lane)
        self._continued: dict[int, int] = {}  # record -> its children sent here that did not end badly

    def __contains__(self, response_id: str) -> bool:
        return response_id in self._records

    def started(self, response_id: str, record_pk: int, lane: str | None) -> None:
        self._records[response_id] = (record_pk, lane)

    def parent(self, response_id: str | None, lane: str | None) -> tuple[int | None, bool | None]:
        """(record, forks) of a response this socket streamed, continued on `lane`; (None, None) leaves both
        to the database."""
        known = self._records.get(response_id) if response_id else None
        if known is None:
            return None, None
        record_pk, parent_lane = known
        return record_pk, parent_lane != lane or self._continued.get(record_pk, 0) > 0

    def sent_child(self, ticket: Ticket) -> None:
        if ticket.parent_pk is not None:
            self._continued[ticket.parent_pk] = self._continued.get(ticket.parent_pk, 0) + 1

    def child_ended_badly(self, ticket: Ticket) -> None:
        if ticket.parent_pk is not None and self._continued.get(ticket.parent_pk):
            self._continued[ticket.parent_pk] -= 1

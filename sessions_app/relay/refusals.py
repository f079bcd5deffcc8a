"""A relay session's refusals, as rows: the relay's own failures one each, the client's aggregated.

Rules:

* A refusal the relay or its upstream caused (`RelayError.source` other than `client`) is one
  `ErrorRow`: it ended a request, so there is at most one per request.
* A client mistake is written once per session and code, as the example; later ones only count
  in memory (`ErrorTally`) and reach that row as one `ErrorCount` op at most every
  `CLIENT_ERROR_FLUSH_SECONDS`, and whenever the recorder flushes (its `before_flush`, so at close).
* An upstream `error` that ends no request (connection-level, `record_upstream`) is aggregated the
  same way, per upstream socket and code: a broken upstream cannot write a row per frame. Past
  `MAX_UPSTREAM_CODES` codes on one socket, further new codes count in that socket's newest row.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from django.utils import timezone

from ..models import ErrorEvent
from ..protocol.errors import ProtocolError
from ..recording import ErrorCount, ErrorRow, ErrorTally, Recorder
from . import errors as relay_errors

__all__ = ["CLIENT_ERROR_FLUSH_SECONDS", "MAX_UPSTREAM_CODES", "Refusals"]

CLIENT_ERROR_FLUSH_SECONDS = 1.0
MAX_UPSTREAM_CODES = 32


class Refusals:
    """Records one session's refusals through its recorder (see the module rules)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._client_errors: dict[str, ErrorTally] = {}  # code -> this session's aggregated row
        self._upstream_errors: dict[tuple[int | None, str], ErrorTally] = {}  # (socket, code) -> its row
        self._newest_upstream: dict[int | None, ErrorTally] = {}  # socket -> its newest row
        self._count_timer: asyncio.TimerHandle | None = None
        recorder.before_flush = self.flush

    def record(self, exc: ProtocolError, event: dict[str, Any], *, conversation_id: uuid.UUID | None) -> None:
        source = exc.source if isinstance(exc, relay_errors.RelayError) else ErrorEvent.Source.CLIENT
        if source != ErrorEvent.Source.CLIENT:
            self.recorder.add(ErrorRow.from_event(event, source=source, conversation_id=conversation_id))
            return
        code = str(exc.code or "")
        tally = self._client_errors.get(code)
        if tally is None:
            self._client_errors[code] = tally = ErrorTally(last_seen_at=timezone.now())
            self.recorder.add(ErrorRow.from_event(event, source=source, conversation_id=conversation_id,
                                                  tally=tally, created_at=tally.last_seen_at))
            return
        self._again(tally)

    def record_upstream(self, event: dict[str, Any], *, conversation_id: uuid.UUID | None,
                        connection_pk: int | None, record_pk: int | None) -> None:
        """An upstream `error` that ended no request: one row per socket and code, then counted."""
        error = event.get("error")
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        tally = self._upstream_errors.get((connection_pk, code))
        if tally is None and sum(1 for key in self._upstream_errors if key[0] == connection_pk) >= MAX_UPSTREAM_CODES:
            tally = self._newest_upstream[connection_pk]  # a socket inventing codes: counted in its newest row
        if tally is None:
            self._upstream_errors[connection_pk, code] = tally = ErrorTally(last_seen_at=timezone.now())
            self._newest_upstream[connection_pk] = tally
            self.recorder.add(ErrorRow.from_event(event, source=ErrorEvent.Source.UPSTREAM,
                                                  conversation_id=conversation_id, connection_pk=connection_pk,
                                                  record_pk=record_pk, tally=tally, created_at=tally.last_seen_at))
            return
        self._again(tally)

    def _again(self, tally: ErrorTally) -> None:
        tally.count += 1
        tally.last_seen_at = timezone.now()
        if self._count_timer is None:
            self._count_timer = asyncio.get_running_loop().call_later(CLIENT_ERROR_FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Queue one `ErrorCount` per client error that happened again since the last call."""
        if self._count_timer is not None:
            self._count_timer.cancel()
            self._count_timer = None
        for tally in [*self._client_errors.values(), *self._upstream_errors.values()]:
            if tally.count != tally.queued:
                tally.queued = tally.count
                self.recorder.add(ErrorCount(tally))

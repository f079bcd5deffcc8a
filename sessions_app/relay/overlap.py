"""A continuation goes upstream while its input commits; its events wait for the commit.

Rules (docs/protocol.md §3 "Recording before relaying"):

* No response reaches a client whose input is not durable. What may overlap is
  the commit and the upstream's time: the usual continuation is sent upstream
  at once, its record's one-statement write (recording.at_once_statement) runs
  beside it, and the socket's reader holds every frame (`UpstreamLink.gate`)
  until the write has committed. Then the frames go on as usual.
* Only the usual create overlaps: on an open socket with nothing else in
  flight, its parent (if any) known to the session, no replay, no title to set,
  and the database not known to be unavailable (then nothing goes upstream). Anything else (a first turn,
  whose socket opens beside the write instead; a replay; a steer; a socket busy
  with another request; a request new rows were queued for, recording's `Recorder.queue_row`) is
  written first and sent after, as before.
* If the write fails, the socket is closed (WebSocket mode has no cancel; reason
  `recording_failed`): nothing of the response reaches the client, which gets
  `recording_failed` exactly as when the write fails before a send. The next
  request opens a new socket and, for a continuation, replays its context
  from the records. No other request is cut: the socket had nothing else in flight.
* If the database answers that the request needs the general path (a standalone
  compaction is pending, so the records rewrite its input), the socket is closed
  the same way (reason `resent`), the client is told nothing, and the request
  goes the ordinary way on a new socket: from the compacted window, which
  needs no cache, so it is not a replay (and the page shows no recovery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from django.utils import timezone

from ..models import UpstreamConnection
from ..recording import Recorder, RequestRow, at_once_statement
from . import errors as relay_errors
from .lanes import Ticket
from .recovery import Resend
from .stream import Downstream
from .upstream_link import UpstreamLink

__all__ = ["Overlap", "OverlapHost"]

logger = logging.getLogger("sessions_app.relay")

Reason = UpstreamConnection.CloseReason


class OverlapHost(Protocol):
    """What an overlapped send needs of its relay session."""

    downstream: Downstream
    recorder: Recorder
    write_failed: Callable[[BaseException, RequestRow], relay_errors.RelayError]
    row_needs_replay: Callable[[RequestRow], bool]


class Overlap:
    """A relay session's overlapped sends (module rules); `host` is the session."""

    def __init__(self, host: OverlapHost) -> None:
        self.host = host
        self._closing: asyncio.Future[None] | None = None  # a close started by a cancelled send

    def link_for(self, row: RequestRow) -> UpstreamLink | None:
        """The socket `row` may go out on before its write commits, or None (write first)."""
        link = self.host.downstream.link
        recorder = self.host.recorder
        if (link is None or row.replay or row.title or recorder.writer.outage is not None or recorder.holds_rows
                or not link.is_open or link.limit_reached or link.gate is not None or link.book.busy
                or row.connection_pk != link.connection_pk):
            return None
        return link

    async def send(self, link: UpstreamLink, row: RequestRow, text: str) -> RequestRow | None:
        """Send `text` on `link` and write `row` meanwhile. None: sent and recorded. A row: nothing was relayed
        and nothing recorded; the caller sends that row the ordinary way. Raises the relay's `recording_failed`
        when the write failed (the response, if any, was cut upstream and never reached the client)."""
        statement = at_once_statement(row)
        if statement is None:
            return row
        downstream = self.host.downstream
        ticket = Ticket(record_pk=None, kind="create", stream_id=row.stream_id,
                        previous_response_id=row.previous_response_id, parent_pk=statement.parent_pk,
                        sent_at=timezone.now(), request=Resend(row=row, resends=0))
        gate: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        link.gate = gate
        if await link.put(ticket, text) != "sent":  # the socket died under us: its reader ends it; the ordinary
            self._open_gate(link, gate, True)  # path opens a new one, whose empty cache a continuation needs replayed
            return replace(row, connection_pk=None, replay=self.host.row_needs_replay(row))
        try:
            written = await self.host.recorder.write_at_once(statement)
        except Exception as failure:
            await self._abandon(link, gate, ticket, Reason.RECORDING_FAILED)
            raise self.host.write_failed(failure, row) from None
        except BaseException:  # cancelled mid-write (the session is going): none of it may be relayed
            link.book.discard(ticket)
            link.reason = Reason.RECORDING_FAILED
            self._open_gate(link, gate, False)
            self._closing = asyncio.ensure_future(link.socket.close(1000, "request not recorded"))
            raise
        if written is None:  # the records say to send another input (a compacted window, which needs no cache)
            await self._abandon(link, gate, ticket, Reason.RESENT)
            return replace(row, connection_pk=None)
        ticket.record_pk = written.record_pk
        self._open_gate(link, gate, True)
        downstream.lineage.sent_child(ticket)
        await downstream.update_status()
        return None

    @staticmethod
    def _open_gate(link: UpstreamLink, gate: asyncio.Future[bool], relay: bool) -> None:
        if link.gate is gate and relay:
            link.gate = None
        gate.set_result(relay)

    async def _abandon(self, link: UpstreamLink, gate: asyncio.Future[bool], ticket: Ticket, reason: str) -> None:
        """Forget the request and close its socket; the reader drops every frame it still holds (link.py)."""
        link.book.discard(ticket)
        link.reason = reason
        self._open_gate(link, gate, False)  # the gate stays shut: the reader drops frames until the close
        logger.warning("Closing the upstream socket: a request sent before its record committed %s",
                       "could not be recorded" if reason == Reason.RECORDING_FAILED else "must be resent",
                       extra=self.host.downstream.log_ids(None, link.connection_pk))
        await link.socket.close(1000, "request not recorded" if reason == Reason.RECORDING_FAILED else "resent")
        if link.reader is not None:
            await asyncio.wait([link.reader], timeout=5)

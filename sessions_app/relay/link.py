"""The relay session's upstream socket: open it, read it, close it (`UpstreamLinks`, held by RelaySession).

Rules (session.py states the whole relay's):

* A socket opens on the first request that needs it, never at attach (a gateway's
  first request takes the socket it warmed at connect instead, warm.py); per
  process a conversation has at most one driving session with a socket
  (`_DRIVERS`): an idle one held by another session is closed (reason
  `idle`), a busy one is refused (`conversation_busy`).
* A socket that said `websocket_connection_limit_reached` is not reused: the
  next request opens a new one (recovery.py resends what it ended).
* Opening is serialised per session: recovery tasks and the client may ask at once.
* A request is sent on the open socket, or on one opened for it (`send`); if the socket
  died under the send, once more on a new one; the request's record learns the socket.
* A socket's row (UpstreamConnection) is written while its handshake runs, so a first turn waits for
  the slower of the two, not both; a handshake that fails ends that row `handshake_failed` (its
  `opened_at` says when the opening began). Under an upstream-socket limit (limits.py) the row comes
  first: its guarded INSERT counts the user's sockets, and a refused one opens no socket. A request that
  opens a socket beside its write queues the row with its own (`queue_record`: SQLite's group commit,
  PostgreSQL's one transaction), so its send waits for one commit; a queued row no socket takes ends
  `handshake_failed`.
* Every open socket is beaten by live/liveness.py while it is open: the session's
  `on_link_open` (handed in by the hub or the gateway consumer) starts the beat.
* A bad upstream never holds a client's turn: the handshake is bounded
  (`SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS`), so is one frame
  (`SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES`), and a socket that sends nothing for
  `SWITCHBOARD_UPSTREAM_STALL_SECONDS` while a request is open on it is closed
  (`_watch`); the requests it ends fail with the reason (`link.failure`:
  `upstream_timeout`, `upstream_frame_too_large`), not a bare disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from ..models import ResponseRecord, UpstreamConnection
from ..models.statements import lock_user_row
from ..protocol.frames import forward_only_kind
from ..recording import ConnectionClosed as ConnectionEnded
from ..recording import ConnectionFailed, Sent, log_failure, read_on_db_thread
from ..upstream import (
    UpstreamError,
    UpstreamRejected,
    UpstreamSocket,
    UpstreamTarget,
    UpstreamTimeout,
    open_upstream,
)
from . import errors as relay_errors
from . import limits
from .context import ConversationView
from .lanes import Ticket
from .stream import HOLD_SECONDS, Downstream
from .upstream_link import UpstreamLink, decode_event
from .warm import WarmSocket

__all__ = ["LinkHost", "QueuedRow", "UpstreamLinks", "open_connection_pks"]

logger = logging.getLogger("sessions_app.relay")

Reason = UpstreamConnection.CloseReason
Status = ResponseRecord.Status

NOT_TAKEN = "queued for a socket that did not open with it"
# One driving session per conversation and process holds an upstream socket (module rules).
_DRIVERS: dict[uuid.UUID, UpstreamLinks] = {}


def open_connection_pks() -> list[int]:
    """The UpstreamConnection rows of the sockets this process holds open (live/liveness.py beats them)."""
    return [d.downstream.link.connection_pk for d in list(_DRIVERS.values())
            if d.downstream.link is not None and d.downstream.link.is_open]


class LinkHost(Protocol):
    """What the upstream socket needs of its relay session."""

    user: Any
    conversation: ConversationView | None
    downstream: Downstream
    recorder: Any  # recording.Recorder
    on_link_open: Callable[[], None] | None
    quota: limits.Quota
    warm: WarmSocket | None


@dataclass
class QueuedRow:
    """A socket's row queued before it opens (`UpstreamLinks.queue_record`): its URL, and its pk once written."""

    url: str
    written: asyncio.Future[int | None]
    taken: bool = False

    def take(self, url: str) -> asyncio.Future[int | None] | None:
        """The row, for the socket to `url` that opens with it; None if it is for another URL or taken."""
        if self.taken or url != self.url:
            return None
        self.taken = True
        return self.written


class UpstreamLinks:
    """A relay session's upstream socket (see the module rules); `host` is the session."""

    def __init__(self, host: LinkHost) -> None:
        self.host = host
        self._lock = asyncio.Lock()  # recovery tasks may ask at the same time as the client

    @property
    def downstream(self) -> Downstream:
        return self.host.downstream

    @property
    def _conversation_id(self) -> uuid.UUID | None:
        return self.host.conversation.id if self.host.conversation else None

    async def ensure(self, queued: QueuedRow | None = None) -> UpstreamLink:
        """The open socket, or a new one (whose row is `queued`'s, if given: `queue_record`)."""
        try:
            current = self.downstream.link
            if current is not None and current.is_open and not current.limit_reached:
                return current
            if (closing := self._closing()) is not None:  # its end is queued first (on_closed), then waited for
                await asyncio.wait([closing], timeout=HOLD_SECONDS)
            async with self._lock:
                current = self.downstream.link
                if current is not None and current.is_open and not current.limit_reached:
                    return current
                if current is not None and current.is_open and not current.book.busy:
                    await self.close(Reason.CONNECTION_LIMIT, "connection limit reached")
                return await self._open(queued)
        finally:
            if queued is not None and not queued.taken:  # its socket never opened
                queued.written.add_done_callback(partial(self._never_opened, text=NOT_TAKEN))

    def _closing(self) -> asyncio.Task[None] | None:
        """The reader of the current socket when its close is read but not yet handled (`on_closed`)."""
        current = self.downstream.link
        reader = current.reader if current is not None and not current.is_open else None
        return reader if reader is not None and not reader.done() and reader is not asyncio.current_task() else None

    def queue_record(self) -> QueuedRow | None:
        """Queue the row of the socket about to open with the request the caller writes next (recording's
        `Recorder.queue_row`: one group commit on SQLite, one transaction on PostgreSQL), so the send waits for one
        commit. None when something must be read or written first: the user's limits, or under a socket limit
        the end of this session's last socket, closed but not yet handled or not yet written (`ensure` and
        `_open` wait for it). Hand it to `ensure`, which ends it `handshake_failed` if no socket takes it."""
        host = self.host
        conversation = host.conversation
        if conversation is None or conversation.profile is None or host.quota.limits is None:
            return None
        if host.quota.limits.max_upstream_sockets and (
                self._closing() is not None or not host.recorder.is_written(self.downstream.end_queued)):
            return None
        url = conversation.profile.target.url
        written = host.recorder.queue_connection(**self._row(url))
        return QueuedRow(url, written) if written is not None else None

    async def _open(self, queued: QueuedRow | None) -> UpstreamLink:
        host = self.host
        conversation = host.conversation
        assert conversation is not None
        if conversation.profile is None:
            raise relay_errors.no_upstream_profile()
        other = _DRIVERS.get(conversation.id)
        held = other.downstream.link if other is not None and other is not self else None
        if held is not None:
            if held.book.busy:
                raise relay_errors.conversation_busy()
            await other.close(Reason.IDLE, "superseded by another client socket")
        target = conversation.profile.target
        counted = self._counts_upstream_sockets()
        recording = queued.take(target.url) if queued is not None else None
        if recording is None:
            if counted:  # this socket's last end, until written, counts as a held socket
                await host.recorder.written(HOLD_SECONDS, mark=self.downstream.end_queued)
            recording = asyncio.ensure_future(self._record_open(target.url))
        try:
            if counted:  # the row first: a user over the limit never opens a socket
                await asyncio.wait([recording])  # a failure to write it is reported below, as any row's
                if recording.exception() is None and recording.result() is None:
                    raise await read_on_db_thread(limits.upstream_sockets_refused, user_pk=host.user.pk,
                                                  limit=host.quota.limits.max_upstream_sockets)
            socket = await self._handshake(conversation.profile.pk, target)
        except UpstreamError as exc:
            await self._record_failed_open(exc, recording)
            if isinstance(exc, UpstreamRejected):
                raise relay_errors.upstream_rejected(exc.status, str(exc)) from None
            if isinstance(exc, UpstreamTimeout):
                raise relay_errors.upstream_timeout(str(exc)) from None
            if exc.code == "upstream_protocol_error":
                raise relay_errors.upstream_protocol_error(str(exc)) from None
            raise relay_errors.upstream_unavailable(str(exc)) from None
        except BaseException:  # cancelled (the session is going): the row, once written, says the socket never opened
            recording.add_done_callback(self._never_opened)
            raise
        try:
            connection_pk = await recording
        except Exception as failure:
            log_failure(logger, failure, "Could not record an upstream connection for conversation %s",
                        conversation.id)
            await socket.close()
            raise relay_errors.recording_failed() from None
        link = UpstreamLink(socket=socket, connection_pk=connection_pk)
        logger.info("Upstream socket opened", extra={"conversation_id": str(conversation.id),
                                                     "connection_id": connection_pk})
        link.reader = asyncio.get_running_loop().create_task(self._read(link), name="switchboard-upstream-reader")
        self.downstream.link = link
        _DRIVERS[conversation.id] = self
        if host.on_link_open is not None:  # the live layer's liveness heartbeat
            host.on_link_open()
        await self.downstream.update_status()
        return link

    async def _record_open(self, url: str) -> int | None:
        """The upstream socket's row. Under an upstream-socket limit it is written only if the user holds
        fewer (limits.py: one guarded INSERT, counted and written at once); None when refused."""
        host = self.host
        if host.quota.limits is None:  # a browser session's first create reads them here
            host.quota.limits = await read_on_db_thread(limits.limits_for, user_pk=host.user.pk)
        return await host.recorder.open_connection(**self._row(url))

    def _row(self, url: str) -> dict[str, Any]:
        """The socket's row, and under an upstream-socket limit its guard and lock (`_record_open`)."""
        host = self.host
        conversation = host.conversation
        assert conversation is not None and conversation.profile is not None and host.quota.limits is not None
        limit = host.quota.limits.max_upstream_sockets
        guard = limits.upstream_sockets_guard(user_pk=host.user.pk, limit=limit) if limit else None
        return {"conversation_id": conversation.id, "owner_id": host.user.pk, "profile_id": conversation.profile.pk,
                "url": url, "guard": guard, "lock": lock_user_row(host.user.pk) if guard else None}

    def _counts_upstream_sockets(self) -> bool:
        """Whether the user's upstream sockets are counted (a limit, or limits not read yet)."""
        known = self.host.quota.limits
        return known is None or bool(known.max_upstream_sockets)

    async def _handshake(self, profile_pk: int, target: UpstreamTarget) -> UpstreamSocket:
        """The gateway's warm socket when it is for this profile and open (warm.py), else a new one."""
        warm = self.host.warm  # kept by the session, which waits at its close for a warm socket it closed
        socket = await warm.take(profile_pk, target) if warm is not None else None
        if socket is not None:
            return socket
        return await open_upstream(target, open_timeout=settings.SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS,
                                   max_size=settings.SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES or None)

    async def send(self, ticket: Ticket, text: str, recorded_connection: int | None, *,
                             opening: asyncio.Task[UpstreamLink] | None = None) -> None:
        """Send on the open link (opening one if needed, or the one `opening`); one retry if the socket
        died under us.

        `recorded_connection` is the socket the record already names; another one is recorded here.
        """
        for attempt in range(2):
            try:
                link = await (opening if opening is not None and attempt == 0 else self.ensure())
            except relay_errors.RelayError as exc:
                await self.downstream.end_ticket(ticket, Status.FAILED, exc, connection_pk=None)
                return
            put = await link.put(ticket, text)
            if put == "ended":
                return  # the socket's close, read meanwhile, already ended it and told the client (on_closed)
            if put == "unsent":
                if link.reader is not None:
                    await asyncio.wait([link.reader], timeout=5)
                continue
            self.downstream.lineage.sent_child(ticket)
            if link.connection_pk != recorded_connection:
                ticket.sent_at = timezone.now()
                self.host.recorder.add(Sent(ticket.record_pk, link.connection_pk, ticket.sent_at))
            await self.downstream.update_status()
            return
        closed = link.socket  # it closed under both sends: say how
        await self.downstream.end_ticket(ticket, Status.FAILED, relay_errors.upstream_disconnected(
            closed.close_code, Reason.UPSTREAM_ERROR, closed.close_reason), connection_pk=link.connection_pk)

    async def _record_failed_open(self, exc: UpstreamError, recording: asyncio.Future[int]) -> None:
        """The row written beside the handshake ends `handshake_failed`; if it could not be written, the
        recorder writes one that says so."""
        conversation = self.host.conversation
        assert conversation is not None and conversation.profile is not None
        logger.warning("Upstream for conversation %s did not open: %s", conversation.id, exc,
                       extra={"conversation_id": str(conversation.id)})
        try:
            connection_pk = await recording
        except Exception:
            connection_pk = None
        if connection_pk is not None:
            self.host.recorder.add(ConnectionEnded(connection_pk, getattr(exc, "status", None), str(exc),
                                                    Reason.HANDSHAKE_FAILED, timezone.now()))
        else:
            self.host.recorder.add(ConnectionFailed(
                conversation_id=conversation.id, owner_id=self.host.user.pk, profile_id=conversation.profile.pk,
                url=conversation.profile.target.url, close_code=getattr(exc, "status", None), close_text=str(exc),
                at=timezone.now(),
            ))
        # Until its end is written the row counts as a held socket (limits.upstream_sockets_guard): a client
        # retrying at once would soon be refused `too_many_upstream_sockets` for sockets that never opened.
        await self.host.recorder.written(HOLD_SECONDS)

    def _never_opened(self, recording: asyncio.Future[int], text: str = "cancelled while opening") -> None:
        if not recording.cancelled() and recording.exception() is None and recording.result() is not None:
            self.host.recorder.add(ConnectionEnded(recording.result(), None, text, Reason.HANDSHAKE_FAILED,
                                                    timezone.now()))

    async def close(self, reason: str, text: str = "") -> None:
        """Close the socket (its reader ends the requests still open on it); nothing if none is open."""
        link = self.downstream.link
        if link is None:
            return
        link.reason = reason
        await link.socket.close(1000, text[:120])
        if link.reader is not None:
            await asyncio.wait([link.reader], timeout=5)

    async def _read(self, link: UpstreamLink) -> None:
        forward_only = self.downstream.on_forward_only
        stall = settings.SWITCHBOARD_UPSTREAM_STALL_SECONDS
        watch = asyncio.get_running_loop().create_task(self._watch(link, stall)) if stall > 0 else None
        try:
            async for frame in link.socket.frames():
                link.received += 1
                if link.gate is not None and not await link.gate:
                    continue  # a request sent before its record committed was not recorded: dropped (overlap.py)
                kind = forward_only_kind(frame)
                if kind is not None:  # most frames: forwarded and counted, never decoded
                    await forward_only(link, frame, kind)
                    continue
                event = decode_event(frame)
                if event is None:
                    await self.downstream.on_violation(link, frame)
                    break
                await self.downstream.on_event(link, frame, event)
        except ConnectionClosed:
            # Closed abnormally (websockets ends the iteration quietly only on a normal close); 1009 sent by
            # us: the upstream's frame was over max_size.
            if link.socket.close_sent_code == 1009 and link.failure is None:
                limit = settings.SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES
                logger.warning("Upstream sent a frame over %s bytes; socket closed", limit,
                               extra=self.downstream.log_ids(None, link.connection_pk))
                link.failure = relay_errors.upstream_frame_too_large(limit)
        except Exception:
            logger.exception("Relay failed on an upstream frame (conversation %s)", self._conversation_id)
            link.reason = link.reason or Reason.UPSTREAM_ERROR
            await link.socket.close(1011, "relay error")
        finally:
            if watch is not None:
                watch.cancel()
            if link.gate is not None:  # a request sent beside its write: it ends once its record exists (overlap.py)
                await link.gate
            await self._on_upstream_closed(link)

    async def _watch(self, link: UpstreamLink, seconds: float) -> None:
        """Close `link` once it has sent nothing for `seconds` while a request was open on it.

        Polled (at most every second) rather than timed per frame: the reader's hot path only counts
        frames. Silence is measured from the last frame, or from the last tick at which nothing was open,
        so the close comes between `seconds` less one tick and `seconds` plus one tick after the last sign of
        life. An idle socket is never closed here (the hub's idle grace and the upstream's limit do that)."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, seconds / 10)
        seen, quiet_since = link.received, loop.time()
        while link.is_open:
            await asyncio.sleep(tick)
            now = loop.time()
            if link.received != seen or not link.book.busy:
                seen, quiet_since = link.received, now
            elif now - quiet_since >= seconds:
                logger.warning("Upstream socket stalled: no frame for %g s with a request open; closing it", seconds,
                               extra=self.downstream.log_ids(None, link.connection_pk))
                link.failure = relay_errors.upstream_stalled(seconds)
                link.reason = link.reason or Reason.UPSTREAM_ERROR
                await link.socket.close(1011, "no upstream event while a response was open")
                return

    async def _on_upstream_closed(self, link: UpstreamLink) -> None:
        await self.downstream.on_closed(link)
        # A replacement link may already be open (a send raced the close): then we still drive.
        conversation_id = self._conversation_id
        if self.downstream.link is None and conversation_id and _DRIVERS.get(conversation_id) is self:
            del _DRIVERS[conversation_id]

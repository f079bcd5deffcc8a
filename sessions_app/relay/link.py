"""The relay session's upstream socket: open it, read it, close it (mixed into relay.RelaySession).

Rules (relay.py states the whole relay's):

* A socket opens on the first request that needs it, never at attach; per
  process a conversation has at most one driving session with a socket
  (`_DRIVERS`): an idle one held by another session is closed (reason
  `idle`), a busy one is refused (`conversation_busy`).
* A socket that said `websocket_connection_limit_reached` is not reused: the
  next request opens a new one (relay_recovery.py resends what it ended).
* Opening is serialised per session: recovery tasks and the client may ask at once.
* Every open socket is beaten by liveness.py while it is open.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from ..live import liveness
from ..models import UpstreamConnection
from ..protocol.frames import forward_only_kind
from ..recording import ConnectionFailed, on_db_thread
from ..upstream import UpstreamError, UpstreamRejected, open_upstream
from . import errors as relay_errors
from . import limits
from .stream import UpstreamLink, decode_event

if TYPE_CHECKING:
    from .session import RelaySession

__all__ = ["UpstreamLinkMixin", "open_connection_pks"]

logger = logging.getLogger("sessions_app.relay")

Reason = UpstreamConnection.CloseReason

# One driving session per conversation and process holds an upstream socket (module rules).
_DRIVERS: dict[uuid.UUID, RelaySession] = {}


def open_connection_pks() -> list[int]:
    """The UpstreamConnection rows of the sockets this process holds open (liveness.py beats them)."""
    return [s.downstream.link.connection_pk for s in list(_DRIVERS.values())
            if s.downstream.link is not None and s.downstream.link.is_open]


class UpstreamLinkMixin:
    """The socket half of RelaySession."""

    async def _ensure_link(self: RelaySession) -> UpstreamLink:
        current = self.downstream.link
        if current is not None and current.is_open and not current.limit_reached:
            return current
        async with self._link_lock:  # recovery tasks may ask at the same time as the client
            current = self.downstream.link
            if current is not None and current.is_open and not current.limit_reached:
                return current
            if current is not None and current.is_open and not current.book.busy:
                await self._close_link(Reason.CONNECTION_LIMIT, "connection limit reached")
            return await self._open_link()

    async def _open_link(self: RelaySession) -> UpstreamLink:
        conversation = self.conversation
        assert conversation is not None
        if conversation.profile is None:
            raise relay_errors.no_upstream_profile()
        other = _DRIVERS.get(conversation.id)
        held = other.downstream.link if other is not None and other is not self else None
        if held is not None:
            if held.book.busy:
                raise relay_errors.conversation_busy()
            await other._close_link(Reason.IDLE, "superseded by another client socket")
        # The user's upstream-socket limit (limits.py): counted only when a socket would open.
        await on_db_thread(limits.check_upstream_sockets, user_pk=self.user.pk, live=open_connection_pks())
        target = conversation.profile.target
        try:
            socket = await open_upstream(target)
        except UpstreamError as exc:
            await self._record_failed_open(exc)
            if isinstance(exc, UpstreamRejected):
                raise relay_errors.upstream_rejected(exc.status, str(exc)) from None
            if exc.code == "upstream_protocol_error":
                raise relay_errors.upstream_protocol_error(str(exc)) from None
            raise relay_errors.upstream_unavailable(str(exc)) from None
        try:
            connection_pk = await self.recorder.open_connection(
                conversation_id=conversation.id, profile_id=conversation.profile.pk, url=target.url
            )
        except Exception:
            logger.exception("Could not record an upstream connection for conversation %s", conversation.id)
            await socket.close()
            raise relay_errors.recording_failed() from None
        link = UpstreamLink(socket=socket, connection_pk=connection_pk)
        link.reader = asyncio.get_running_loop().create_task(self._read(link), name="switchboard-upstream-reader")
        self.downstream.link = link
        _DRIVERS[conversation.id] = self
        liveness.start_heartbeat(open_connection_pks)
        await self.downstream.update_status()
        return link

    async def _record_failed_open(self: RelaySession, exc: UpstreamError) -> None:
        assert self.conversation is not None and self.conversation.profile is not None
        logger.warning("Upstream for conversation %s did not open: %s", self.conversation.id, exc)
        self.recorder.add(ConnectionFailed(
            conversation_id=self.conversation.id, profile_id=self.conversation.profile.pk,
            url=self.conversation.profile.target.url, close_code=getattr(exc, "status", None), close_text=str(exc),
            at=timezone.now(),
        ))

    async def _close_link(self: RelaySession, reason: str, text: str = "") -> None:
        link = self.downstream.link
        if link is None:
            return
        link.reason = reason
        await link.socket.close(1000, text[:120])
        if link.reader is not None:
            await asyncio.wait([link.reader], timeout=5)

    async def _read(self: RelaySession, link: UpstreamLink) -> None:
        forward_only = self.downstream.on_forward_only
        try:
            async for frame in link.socket.frames():
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
            pass  # closed abnormally (websockets ends the iteration quietly only on a normal close)
        except Exception:
            logger.exception("Relay failed on an upstream frame (conversation %s)", self._conversation_id)
            link.reason = link.reason or Reason.UPSTREAM_ERROR
            await link.socket.close(1011, "relay error")
        finally:
            await self._on_upstream_closed(link)

    async def _on_upstream_closed(self: RelaySession, link: UpstreamLink) -> None:
        await self.downstream.on_closed(link)
        # A replacement link may already be open (a send raced the close): then we still drive.
        if self.downstream.link is None and self.conversation and _DRIVERS.get(self.conversation.id) is self:
            del _DRIVERS[self.conversation.id]

"""The relay session's upstream socket: open it, read it, close it (`UpstreamLinks`, held by RelaySession).

Rules (session.py states the whole relay's):

* A socket opens on the first request that needs it, never at attach; per
  process a conversation has at most one driving session with a socket
  (`_DRIVERS`): an idle one held by another session is closed (reason
  `idle`), a busy one is refused (`conversation_busy`).
* A socket that said `websocket_connection_limit_reached` is not reused: the
  next request opens a new one (recovery.py resends what it ended).
* Opening is serialised per session: recovery tasks and the client may ask at once.
* Every open socket is beaten by live/liveness.py while it is open: the session's
  `on_link_open` (handed in by the hub or the gateway consumer) starts the beat.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from ..models import UpstreamConnection
from ..protocol.frames import forward_only_kind
from ..recording import ConnectionFailed, on_db_thread
from ..upstream import UpstreamError, UpstreamRejected, open_upstream
from . import errors as relay_errors
from . import limits
from .context import ConversationView
from .stream import Downstream, UpstreamLink, decode_event

__all__ = ["LinkHost", "UpstreamLinks", "open_connection_pks"]

logger = logging.getLogger("sessions_app.relay")

Reason = UpstreamConnection.CloseReason

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

    async def ensure(self) -> UpstreamLink:
        """The open socket, or a new one."""
        current = self.downstream.link
        if current is not None and current.is_open and not current.limit_reached:
            return current
        async with self._lock:
            current = self.downstream.link
            if current is not None and current.is_open and not current.limit_reached:
                return current
            if current is not None and current.is_open and not current.book.busy:
                await self.close(Reason.CONNECTION_LIMIT, "connection limit reached")
            return await self._open()

    async def _open(self) -> UpstreamLink:
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
        # The user's upstream-socket limit (limits.py): counted only when a socket would open, and only
        # when there is one (a session knows its user's limits once it has sent a create).
        known = host.quota.limits
        if known is None or known.max_upstream_sockets:
            await on_db_thread(limits.check_upstream_sockets, user_pk=host.user.pk, live=open_connection_pks(),
                               limits=known)
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
            connection_pk = await host.recorder.open_connection(
                conversation_id=conversation.id, profile_id=conversation.profile.pk, url=target.url
            )
        except Exception:
            logger.exception("Could not record an upstream connection for conversation %s", conversation.id)
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

    async def _record_failed_open(self, exc: UpstreamError) -> None:
        conversation = self.host.conversation
        assert conversation is not None and conversation.profile is not None
        logger.warning("Upstream for conversation %s did not open: %s", conversation.id, exc,
                       extra={"conversation_id": str(conversation.id)})
        self.host.recorder.add(ConnectionFailed(
            conversation_id=conversation.id, profile_id=conversation.profile.pk,
            url=conversation.profile.target.url, close_code=getattr(exc, "status", None), close_text=str(exc),
            at=timezone.now(),
        ))

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

    async def _on_upstream_closed(self, link: UpstreamLink) -> None:
        await self.downstream.on_closed(link)
        # A replacement link may already be open (a send raced the close): then we still drive.
        conversation_id = self._conversation_id
        if self.downstream.link is None and conversation_id and _DRIVERS.get(conversation_id) is self:
            del _DRIVERS[conversation_id]

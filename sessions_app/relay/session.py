"""The relay core: one client socket relayed to its conversation's upstream Responses socket.

Both faces (browser `ws/conversations/<id>/`, gateway `/v1/responses`) are a
`RelaySession`; the consumers only wire frames in and out. Rules:

* Client frames are validated by protocol/ (JSON, known type, no
  transport-only fields, lane names) plus the relay's own checks (frame size,
  read-only viewers, model allowed by the profile). Bad input gets an `error`
  event and the socket stays open.
* A request is written and committed (recording/) before any event of its
  response is relayed: before it is sent, or for the usual create on an idle
  open socket, while it is sent, its events held until the commit
  (overlap.py). If the write fails, none of its response reaches the client.
* The upstream socket opens on the first request that needs it, not before
  (while that request is being written: neither waits for the other; a
  gateway's first request takes the one warmed at connect, warm.py); a
  session holds at most one, and per process one conversation has at most
  one (an idle one held by another session is closed; a busy one is refused).
* Upstream frames are forwarded to the client verbatim, as they arrive, then
  routed to their request by relay_lanes.LaneBook and recorded through the
  recorder's queue: no database work happens per streamed event.
* When the upstream socket closes, every request still open on it ends
  (failed, or interrupted when the client left), the close is recorded with
  its reason, and the next request opens a new socket.
* The browser face also gets `switchboard.*` control events (history,
  status, upstream_closed); the gateway face gets pure protocol, because the
  official SDK must work unchanged. docs/protocol.md is the contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from ..models import ResponseRecord, UpstreamConnection
from ..protocol.errors import ProtocolError, SteerError
from ..protocol.events import CreateEvent, SteerEvent, parse_client_event
from ..protocol.references import References, references, unverifiable_reference
from ..recording import (
    Recorder,
    RequestRow,
    RequestWritten,
    database_unavailable,
    log_failure,
    request_origin,
)
from . import errors as relay_errors
from .context import (
    CONVERSATION_METADATA_KEY,
    ConversationView,
    ProfileView,
    conversation_for_socket,
    history_event,
    title_from,
)
from .faces import BROWSER, GATEWAY, Face
from .hooks import PublisherFor, Publishing, SendText
from .lanes import Ticket
from .limits import Quota
from .link import UpstreamLinks, open_connection_pks
from .overlap import Overlap
from .ownership import Ownership
from .recovery import Recovery, Resend, replay_echo
from .stream import Downstream
from .upstream_link import UpstreamLink
from .warm import WarmSocket, warm_for

__all__ = ["Face", "BROWSER", "GATEWAY", "RelaySession", "open_connection_pks"]

logger = logging.getLogger("sessions_app.relay")

Reason = UpstreamConnection.CloseReason
Status = ResponseRecord.Status


class RelaySession:
    """One client socket's relay; `send` delivers a text frame to that client."""

    def __init__(self, *, face: Face, user, send: SendText, conversation: ConversationView | None = None,
                 recorder: Recorder | None = None, quota: Quota | None = None,
                 on_link_open: Callable[[], None] | None = None, publisher_for: PublisherFor | None = None) -> None:
        self.face = face
        self._user = user
        self.conversation = conversation
        self.recorder = recorder or Recorder()
        self.downstream = Downstream(
            face=face, send=send, recorder=self.recorder, conversation_id=conversation.id if conversation else None,
            status=conversation.status if conversation else "idle",
            latest_response_id=conversation.latest_response_id if conversation else "",
        )
        self.recorder.conversation_id = self.downstream.conversation_id
        self.recorder.on_overflow = self.recorder.on_overflow or self.downstream.recording_overflowed
        self.closing = False
        self.links = UpstreamLinks(self)
        self.recovery = Recovery(self)
        self._opening: asyncio.Task[UpstreamLink] | None = None  # an upstream socket opening beside a write
        # What the live layer hands in (the relay never imports it): a callback when an upstream socket
        # opens (the process's liveness heartbeat), and a gateway conversation's fan-out to its viewers.
        self.on_link_open = on_link_open
        self._publisher_for = publisher_for
        self._publisher: Publishing | None = None
        self.downstream.recover = self.recovery.recover
        self.quota = quota or Quota(user_pk=user.pk)
        self.downstream.on_usage = self.quota.used
        self.ownership = Ownership(self)
        self.overlap = Overlap(self)
        self.api_token_pk: int | None = None
        self.warm: WarmSocket | None = None  # a gateway's upstream socket opened ahead (warm.py): link.py takes it

    # -- construction ----------------------------------------------------------------

    @classmethod
    async def attach(cls, *, user, conversation_id: uuid.UUID | str, send: SendText) -> RelaySession:
        """A browser socket's session; raises relay_context.AttachRefused."""
        view = await database_sync_to_async(conversation_for_socket)(user=user, conversation_id=conversation_id)
        return cls(face=BROWSER, user=user, send=send, conversation=view)

    @classmethod
    def gateway(cls, *, user, send: SendText, quota: Quota | None = None,
                on_link_open: Callable[[], None] | None = None,
                publisher_for: PublisherFor | None = None, api_token_pk: int | None = None,
                warm: ProfileView | None = None) -> RelaySession:
        """A gateway socket's relay; `warm`: the profile whose upstream socket opens at once (warm.py)."""
        session = cls(face=GATEWAY, user=user, send=send, quota=quota, on_link_open=on_link_open,
                      publisher_for=publisher_for)
        session.api_token_pk = api_token_pk  # a conversation this socket makes shows which token made it
        session.warm = warm_for(warm)
        return session

    @property
    def user(self):
        return self._user

    @user.setter
    def user(self, user) -> None:
        """A hub hands its driver to the owner when the owner attaches after a staff viewer (live/hub.py):
        the ids the owner names and the limits it spends are the owner's."""
        self._user = user
        if self.quota.user_pk != user.pk:
            self.quota = Quota(user_pk=user.pk)
            self.downstream.on_usage = self.quota.used

    @property
    def read_only(self) -> bool:
        return bool(self.conversation and self.conversation.read_only)

    async def start(self) -> None:
        """Browser: send the history, then the live status."""
        if not self.face.announces or self.conversation is None:
            return
        history = await database_sync_to_async(history_event)(user=self.user, conversation_id=self.conversation.id)
        await self.downstream.to_client(json.dumps(history))
        await self.downstream.update_status(force=True)

    # -- client -> upstream ------------------------------------------------------------

    async def from_client(self, text: str | None = None, data: bytes | None = None) -> None:
        """Handle one client frame. Never raises: every failure becomes an event for the client."""
        try:
            await self._client_frame(text, data)
            return
        except SteerError as refused:
            link = self.downstream.link
            exc, event = refused, refused.to_event(stream_id=link.book.lane_of(refused.previous_response_id)
                                                   if link else None)
        except ProtocolError as refused:
            exc, event = refused, refused.to_event()
        except Exception as failure:
            log_failure(logger, failure, "Relay failed on a client frame (conversation %s)", self._conversation_id)
            # A read the request needed (limits, usage, ownership) found the database down: nothing was stored
            # or sent, as when its own write fails.
            exc = relay_errors.recording_failed() if database_unavailable(failure) else relay_errors.internal_error()
            event = exc.to_event()
        stored = await self.ownership.write_alone()  # a first create refused before its request's write
        await self.downstream.refuse(exc, event, conversation_stored=stored)

    async def _client_frame(self, text: str | None, data: bytes | None) -> None:
        if self.read_only:
            raise relay_errors.read_only()
        frame = text if text is not None else (data or b"")
        limit = settings.SWITCHBOARD_MAX_FRAME_BYTES
        # A str of n chars is n..4n UTF-8 bytes: encode only when the answer depends on it.
        exact = isinstance(frame, bytes) or len(frame) > limit or len(frame) * 4 <= limit
        size = len(frame) if exact else len(frame.encode("utf-8", "surrogatepass"))  # surrogates: refused later
        if size > limit:
            raise relay_errors.frame_too_large(size, limit)
        event = parse_client_event(frame)
        if isinstance(event, SteerEvent):
            await self._steer(event, frame)
        else:
            await self._create(event, frame)

    async def _create(self, event: CreateEvent, frame: str | bytes) -> None:
        refused = unverifiable_reference(event.raw)
        if refused is not None:
            refused.stream_id = event.stream_id
            raise refused
        refs = references(event.raw)
        if self.face is GATEWAY:
            await self._select_gateway_conversation(event, refs)
        if refs:
            await self.ownership.check(refs, event.stream_id)
        conversation = self.conversation
        assert conversation is not None
        payload = self.face.complete_create(event.raw, conversation)
        model = payload.get("model")
        if not isinstance(model, str):
            raise ProtocolError("invalid_type", "Invalid type for 'model': expected a string.", param="model",
                                stream_id=event.stream_id)
        if conversation.profile is not None and not conversation.profile.allows(model):
            exc = relay_errors.model_not_allowed(model, conversation.profile.allowed_models)
            exc.stream_id = event.stream_id
            raise exc
        await self.quota.check(event.stream_id)
        replay = self.recovery.needs_replay(event.previous_response_id, payload)
        parent_pk, parent_forks = self.downstream.lineage.parent(event.previous_response_id, event.stream_id)
        row = RequestRow(
            conversation_id=conversation.id, stream_id=event.stream_id,
            previous_response_id=event.previous_response_id, parent_pk=parent_pk, parent_forks=parent_forks,
            origin=request_origin(payload), model=model, payload=payload, use_compacted_window=True, replay=replay,
            title="" if conversation.title else title_from(payload), connection_pk=self.open_connection_pk(),
        )
        self.quota.started()
        await self.downstream.show_request(row)
        await self.submit(row, raw=event.raw, frame=frame)

    async def submit(self, row: RequestRow, *, raw: dict[str, Any] | None, frame: str | bytes | None,
                      resends: int = 0, reason: str | None = None) -> None:
        """Write a create's record, then send it (as the client framed it when nothing was rewritten); the
        usual create is sent while it is written (overlap.py)."""
        self.ownership.write_new_conversation()  # with this request's rows (again, if the first create's write failed)
        if row.replay:
            await self.recorder.flush()  # the context is rebuilt from records: the latest must be written
        elif frame is not None and not resends and not reason and (link := self.overlap.link_for(row)) is not None:
            text = _text(frame) if row.payload is raw else json.dumps(row.payload)
            resend = await self.overlap.send(link, row, text)
            if resend is None:
                return
            row = resend  # not relayed: the ordinary way, on a new socket
        opening = self._open_beside_write()
        written = await self._write(row)
        if self.conversation is not None and not self.conversation.title and row.title:  # its first message titled it
            self.conversation = replace(self.conversation, title=row.title)
            await self.downstream.announce({"type": "switchboard.conversation", "title": row.title})
        text = _text(frame) if frame is not None and written.payload is raw else json.dumps(written.payload)
        replayed, echo = replay_echo(row, written)
        ticket = Ticket(record_pk=written.record_pk, kind="create", stream_id=row.stream_id,
                        previous_response_id=written.previous_response_id, parent_pk=written.parent_pk,
                        sent_at=timezone.now(), request=Resend(row=row, resends=resends), echo=echo)
        if replayed or reason:
            await self.recovery.announce(row, replayed=replayed, reason=reason)
        await self.links.send(ticket, text, row.connection_pk, opening=opening)

    def _open_beside_write(self) -> asyncio.Task[UpstreamLink] | None:
        """Start opening the upstream socket when this request will need a new one, so the handshake
        runs while the request is written (the request is still sent only once it is committed)."""
        conversation = self.conversation
        if conversation is None or conversation.profile is None or self.open_connection_pk() is not None:
            return None
        queued = self.links.queue_record()  # its row ahead of the request's: one group commit on SQLite
        self._opening = opening = asyncio.ensure_future(self.links.ensure(queued))
        opening.add_done_callback(_retrieved)  # a write that fails leaves it unawaited
        return opening

    def row_needs_replay(self, row: RequestRow) -> bool:
        return self.recovery.needs_replay(row.previous_response_id, row.payload)

    async def _steer(self, event: SteerEvent, frame: str | bytes) -> None:
        link = self.downstream.link
        target = event.previous_response_id
        if link is None or self.conversation is None or target not in link.book.seen:
            raise SteerError("response_not_found", "Response not found on this connection.",
                             previous_response_id=target, input=event.input)
        lane = link.book.lane_of(target)
        parent_pk, _ = self.downstream.lineage.parent(target, lane)
        row = RequestRow(
            conversation_id=self.conversation.id, stream_id=lane, previous_response_id=target,
            parent_pk=parent_pk, parent_forks=False, origin=ResponseRecord.Origin.STEER,
            model=self.conversation.model, payload=event.raw, connection_pk=link.connection_pk,
        )
        await self.downstream.show_request(row)
        written = await self._write(row)
        ticket = Ticket(record_pk=written.record_pk, kind="steer", stream_id=lane, previous_response_id=target,
                        parent_pk=written.parent_pk, sent_at=timezone.now())
        await self.links.send(ticket, _text(frame), row.connection_pk)

    async def _select_gateway_conversation(self, event: CreateEvent, refs: References) -> None:
        metadata = event.raw.get("metadata") if isinstance(event.raw.get("metadata"), dict) else {}
        requested = metadata.get(CONVERSATION_METADATA_KEY)
        if self.conversation is not None:
            if requested and requested != str(self.conversation.id):
                raise relay_errors.conversation_mismatch(event.stream_id)
            return
        found = await self.ownership.gateway_conversation(
            requested=requested, continues=event.previous_response_id, refs=refs, lane=event.stream_id,
            title=title_from(event.raw) or "API conversation",
            profile=self.warm.profile if self.warm and self.warm.fresh else None)
        self.conversation = found.view
        self.ownership.learn(found.owned)
        self.recorder.conversation_id = self.downstream.conversation_id = self.conversation.id
        self.downstream.latest = self.conversation.latest_response_id
        publisher = self._publisher_for(self.conversation.id, self.downstream.in_flight_frames,
                                        new=found.new is not None) if self._publisher_for is not None else None
        if publisher is not None:  # viewers of this conversation see the gateway's events live
            self._publisher = publisher
            self.downstream.publish = publisher.publish
            self.downstream.keep_tail = True  # the backlog of a watcher that arrives mid-response

    async def _write(self, row: RequestRow) -> RequestWritten:
        try:
            return await self.recorder.write_request(row)
        except Exception as failure:
            raise self.write_failed(failure, row) from None

    def write_failed(self, failure: BaseException, row: RequestRow) -> relay_errors.RelayError:
        """Log a request's failed write (called in its `except`) and return the error its client gets."""
        # An outage: one line per request, no traceback (docs/recording.md).
        log_failure(logger, failure, "Could not record a request for conversation %s; it was not relayed",
                    row.conversation_id)
        exc = relay_errors.recording_failed()
        exc.stream_id = row.stream_id
        return exc

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self, reason: str = Reason.CLIENT_LEFT) -> None:
        """Close the upstream socket (requests still open end interrupted), drain the recorder.

        A gateway socket calls it when its client leaves; a browser conversation's hub when its
        idle grace is over (live/hub.py), with reason `idle`.
        """
        if self.closing:
            return
        self.closing = True
        self.downstream.client_gone = True
        if self._opening is not None:  # a socket opening beside a write that failed: close it too
            await asyncio.wait([self._opening])
        await self.recovery.stop()
        if self.warm is not None:  # untaken (the client left before its first turn needed it), or being closed
            await self.warm.close()
        await self.links.close(reason)
        if self._publisher is not None:
            await self._publisher.close()
        await self.recorder.close()

    @property
    def _conversation_id(self) -> uuid.UUID | None:
        return self.conversation.id if self.conversation else None

    @property
    def busy(self) -> bool:
        """A request in flight: on its socket, being resent, or its last frame waiting for its record (a drain
        waits for all three)."""
        link = self.downstream.link
        return bool(self.recovery.tasks) or self.downstream.holding > 0 or (link is not None and link.book.busy)

    def has_seen(self, response_id: str) -> bool:
        """A response of this session's conversation it already knows, with no query (ownership.py)."""
        link = self.downstream.link
        return (response_id in self.downstream.lineage or (link is not None and response_id in link.book.seen)
                or (self.conversation is not None and response_id == self.conversation.latest_response_id))

    def open_connection_pk(self) -> int | None:
        link = self.downstream.link
        return link.connection_pk if link is not None and link.is_open else None


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _text(frame: str | bytes) -> str:
    """Upstreams expect text frames; a binary client frame already parsed as UTF-8 JSON."""
    return frame if isinstance(frame, str) else frame.decode()

"""A conversation's hub: per process, it owns the upstream socket and fans events out to every browser.

Rules:

* One `ConversationHub` per conversation and process holds the conversation's
  browser relay (`RelaySession` driver, whose `send` is the hub's broadcast):
  the upstream socket, routing and recording outlive any one client socket.
  A browser leaving mid-response no longer interrupts it: it runs to the end
  upstream and is recorded whole.
* Every attached browser socket (owner tabs, staff read-only viewers) is a
  `HubClient`. Owner frames go to the driver; a viewer's frames are refused
  to that viewer only.
* Attaching mid-response: the client is registered first (frames broadcast
  from then on queue in its `pending`), then gets `switchboard.history` (the
  records, after a recorder flush), `switchboard.status`, then the live
  tail: the frames of in-flight responses, and of responses that ended so
  recently their records are not in the history yet, then its pending
  frames. A frame is one str object wherever it is kept, so the tail and the
  pending queue are de-duplicated by identity: no gap, no duplicate
  (response, sequence_number).
* When the last client leaves, in-flight responses run to completion; then
  the upstream socket stays open `SWITCHBOARD_UPSTREAM_IDLE_SECONDS` (the
  connection-local cache survives a reload) and closes with reason `idle`
  (`client_left` when the grace is 0). A client attaching meanwhile cancels that.
* What other processes publish for the conversation, and the records their
  dead holders left open, are the hub's `remote` (remote.py): a `RemoteHalf`
  the hub holds and hands only what it needs, never the hub itself.
* Every upstream socket the driver opens makes sure this process's liveness
  heartbeat runs (`on_link_open`; starting it is idempotent): the relay
  leaves that to its face.
* Settings: the driver's `ConversationView` is read again when an owner tab
  attaches, and when an owner tab sends `switchboard.settings_changed` (it
  saved the settings form). Only a short frame that starts like a
  `switchboard.*` event is decoded here; every other frame goes to the
  driver untouched. The new settings are broadcast as `switchboard.settings`;
  hubs of other processes that see it read the view again too. An upstream
  socket of a profile no longer chosen closes as soon as it is idle.
* Stop: an owner tab's `switchboard.stop` stops a response (relay/stopping.py).
* A client attaching while the records show a response in flight that no socket of this process carries
  starts `orphans.watch`: if that response's holder died, it is settled without waiting for a create.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

from channels.db import database_sync_to_async
from django.conf import settings

from ..models import UpstreamConnection
from ..recording import log_failure
from ..relay import (
    BROWSER,
    STOP_CONTROL,
    AttachRefused,
    ConversationView,
    RelaySession,
    Ticket,
    conversation_for_socket,
    history_event,
    open_connection_pks,
    settings_for_socket,
    stop_response,
)
from ..relay import errors as relay_errors
from . import fanout, lifecycle, liveness, orphans
from .remote import RemoteHalf

__all__ = ["ConversationHub", "HubClient", "attach", "hubs"]

logger = logging.getLogger("sessions_app.hub")

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int], Awaitable[None]]
SERVICE_RESTART = 1012  # the close code a draining process sends its browsers: reconnect elsewhere
Reason = UpstreamConnection.CloseReason
RECENT_SECONDS = 30.0  # how long an ended response's frames are kept for attaching clients
IDLE_POLL_SECONDS = 0.05
CLOSE_FLUSH_SECONDS = 0.2
ENDED = frozenset({"completed", "incomplete", "failed", "cancelled", "interrupted"})
# A client frame that may be a control event (module rules): short, and typed switchboard.* first thing.
CONTROL_PREFIX = re.compile(r'\s*\{\s*"type"\s*:\s*"switchboard\.')
MAX_CONTROL_CHARS = 256
SETTINGS_CHANGED = "switchboard.settings_changed"

_HUBS: dict[uuid.UUID, ConversationHub] = {}


def hubs() -> list[ConversationHub]:
    """The hubs of this process (the drainer and the fan-out walk them)."""
    return list(_HUBS.values())


class HubClient:
    """One browser socket attached to a hub."""

    def __init__(self, hub: ConversationHub, *, user, view: ConversationView, send: SendText,
                 close: CloseSocket | None = None) -> None:
        self.hub = hub
        self.user = user
        self.view = view
        self._send = send
        self._close_socket = close
        self.pending: list[str] | None = []  # frames broadcast while attaching; None once live
        self.gone = False

    async def deliver(self, text: str) -> None:
        if self.gone:
            return
        try:
            await self._send(text)
        except Exception:
            self.gone = True

    async def start(self) -> None:
        """Send history, status and the live tail, then go live (see module rules)."""
        hub = self.hub
        await hub.driver.recorder.flush()
        history = await database_sync_to_async(history_event)(user=self.user, conversation_id=self.view.id)
        await self.deliver(json.dumps(history))
        await self.deliver(json.dumps(hub.driver.downstream.status_event()))
        ended = {r["response_id"] for r in history["responses"] if r["status"] in ENDED and r["response_id"]}
        tail = hub.tail(ended)
        sent = {id(frame) for frame in tail}
        for frame in tail:
            await self.deliver(frame)
        while self.pending:
            frame = self.pending.pop(0)
            if id(frame) not in sent:
                await self.deliver(frame)
        self.pending = None
        if hub.driver.downstream.link is None and any(r["status"] not in ENDED for r in history["responses"]):
            # In flight elsewhere: settled here if its holder died (orphans.py).
            orphans.watch(hub.conversation_id, clients=lambda: hub.clients, reap=hub.remote.reap_dead_holders,
                          watching=lambda: bool(hub.clients) and not hub.closing and hub.driver.downstream.link is None)

    async def from_client(self, text: str | None = None, data: bytes | None = None) -> None:
        if self.view.read_only:
            exc = relay_errors.read_only()
            event = exc.to_event()
            self.hub.driver.downstream.record_refusal(exc, event)  # aggregated like any client mistake
            await self.deliver(json.dumps(event))
            return
        control = _control(text) if text is not None and len(text) <= MAX_CONTROL_CHARS \
            and CONTROL_PREFIX.match(text) else None
        if control is not None and control.get("type") == SETTINGS_CHANGED:
            await self.hub.settings_changed(self)
            return
        if control is not None and control.get("type") == STOP_CONTROL:
            response_id = control.get("response_id")
            await stop_response(self.hub.driver.downstream, response_id if isinstance(response_id, str) else None)
            return
        if self.hub.stale_link is not None:
            await self.hub.retire_stale_link()
        if self.hub.driver.downstream.link is None:
            try:  # a new upstream socket: first settle a dead holder's records (best effort)
                await self.hub.remote.reap_dead_holders()
            except Exception as failure:
                log_failure(logger, failure, "Could not check the holders of conversation %s", self.view.id)
        await self.hub.driver.from_client(text, data)

    async def close(self) -> None:
        self.gone = True
        await self.hub.detach(self)

    async def close_socket(self, code: int) -> None:
        self.gone = True
        if self._close_socket is not None:
            try:
                await self._close_socket(code)
            except Exception:  # plain Daphne (autobahn) refuses 1012: sessions_app.serve allows it
                await self._close_socket(1000)


def _control(text: str) -> dict | None:
    try:
        event = json.loads(text)
    except ValueError:
        return None  # the driver refuses it as any bad frame
    return event if isinstance(event, dict) else None


class ConversationHub:
    """The conversation's upstream side in this process; see the module rules (and remote.py)."""

    def __init__(self, *, user, view: ConversationView) -> None:
        self.conversation_id = view.id
        self.clients: list[HubClient] = []
        self.driver = RelaySession(face=BROWSER, user=user, send=self.broadcast, conversation=view,
                                   on_link_open=lambda: liveness.start_heartbeat(open_connection_pks))
        self.driver.downstream.keep_tail = True
        self.driver.downstream.on_ended = self._ended
        self._recent: dict[str, tuple[float, list[str]]] = {}
        self._idle_task: asyncio.Task[None] | None = None
        self.closing = False
        self.stale_link = None  # an upstream socket of a profile the settings no longer choose
        channel_layer = fanout.layer()
        self.publisher = (fanout.Publisher(view.id, channel_layer, backlog=self.driver.downstream.in_flight_frames)
                          if channel_layer is not None else None)
        self.remote = RemoteHalf(view.id, clients=lambda: self.clients, recorder=self.driver.recorder,
                                 publisher=self.publisher, on_settings=self._remote_settings)

    # -- fan-out (hot path) -------------------------------------------------------------

    async def broadcast(self, text: str) -> None:
        if self.publisher is not None:
            self.publisher.publish(text)
        for client in tuple(self.clients):
            if client.pending is not None:
                client.pending.append(text)
            else:
                await client.deliver(text)

    def _ended(self, ticket: Ticket) -> None:
        if ticket.response_id and ticket.frames:
            now = time.monotonic()
            self._recent[ticket.response_id] = (now, ticket.frames)
            for key in [k for k, (at, _) in self._recent.items() if now - at > RECENT_SECONDS]:
                del self._recent[key]

    def tail(self, recorded: set[str]) -> list[str]:
        """Frames of responses not (yet) in the records as ended: recently ended ones, then in-flight ones."""
        frames = self.remote.tail(recorded)
        frames += [f for rid, (_, kept) in self._recent.items() if rid not in recorded for f in kept]
        frames += self.driver.downstream.in_flight_frames()
        return frames

    @property
    def busy(self) -> bool:
        return self.driver.busy

    # -- clients ---------------------------------------------------------------------

    def add(self, client: HubClient) -> None:
        self.clients.append(client)
        if not client.view.read_only:
            # The owner's view carries the upstream profile, and is the freshest (settings may have changed).
            self.adopt(client.view)
            self.driver.user = client.user
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None

    # -- settings --------------------------------------------------------------------

    def adopt(self, view: ConversationView) -> None:
        """Drive with an owner's `view`, read just now, from the next create on. A title the driver gave
        the conversation is kept; an open upstream socket of another profile is retired once idle."""
        current = self.driver.conversation
        if current is not None and current.title and not view.title:
            view = replace(view, title=current.title)
        link = self.driver.downstream.link
        if current is not None and link is not None and link.is_open and view.profile != current.profile:
            self.stale_link = link
        self.driver.conversation = view

    async def retire_stale_link(self) -> None:
        """Close the upstream socket of a profile no longer chosen, unless it still streams (then later)."""
        link, self.stale_link = self.stale_link, None
        if link is None or link is not self.driver.downstream.link or not link.is_open:
            return
        if link.book.busy:
            self.stale_link = link
            return
        await self.driver.links.close(Reason.IDLE, "upstream profile changed")

    async def settings_changed(self, client: HubClient) -> None:
        """An owner tab saved the settings: read them, drive with them, tell every tab."""
        try:
            view, event = await database_sync_to_async(settings_for_socket)(
                user=client.user, conversation_id=self.conversation_id)
        except AttachRefused:
            return  # no longer the user's to see: revocation closes the socket
        client.view = view
        if not view.read_only:
            self.adopt(view)
            await self.retire_stale_link()
        await self.broadcast(json.dumps(event))

    async def _remote_settings(self) -> None:
        """A tab on another process saved the settings: this process's driver reads them too."""
        current = self.driver.conversation
        if current is None or current.read_only:
            return  # no owner has driven here: the first owner tab to attach reads them
        try:
            view, _ = await database_sync_to_async(settings_for_socket)(user=self.driver.user,
                                                                        conversation_id=self.conversation_id)
        except AttachRefused:
            return
        if not view.read_only:
            self.adopt(view)
            await self.retire_stale_link()

    async def detach(self, client: HubClient) -> None:
        if client in self.clients:
            self.clients.remove(client)
        if self.clients or self.closing:
            return
        grace = float(settings.SWITCHBOARD_UPSTREAM_IDLE_SECONDS)
        if grace <= 0 and not self.busy:
            await self._close(Reason.CLIENT_LEFT)
            return
        self._idle_task = asyncio.get_running_loop().create_task(self._idle(grace), name="switchboard-hub-idle")

    async def _idle(self, grace: float) -> None:
        """Let in-flight responses finish, keep the socket warm for `grace`, then close it."""
        while self.busy:  # noqa: ASYNC110 (polling keeps the hot path free of event bookkeeping)
            await asyncio.sleep(IDLE_POLL_SECONDS)
        if grace > 0:
            await asyncio.sleep(grace)
        if self.clients or self.busy:
            return
        self._idle_task = None
        await self._close(Reason.IDLE if grace > 0 else Reason.CLIENT_LEFT)

    async def _close(self, reason: str) -> None:
        self.closing = True
        if _HUBS.get(self.conversation_id) is self:
            del _HUBS[self.conversation_id]
        await self.driver.close(reason)
        await self.remote.stop()
        if self.publisher is not None:
            await self.publisher.close()

    async def shut_down(self) -> None:
        """This process stops: what is still in flight ends interrupted (streamed text kept), browsers get 1012."""
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self._close(Reason.SERVER_SHUTDOWN)
        for client in tuple(self.clients):
            await client.close_socket(SERVICE_RESTART)


@lifecycle.on_drain
async def drain(seconds: float) -> None:
    """SIGTERM (sessions_app.serve): let in-flight responses finish within `seconds`, then shut every hub down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while any(hub.busy for hub in hubs()) and loop.time() < deadline:  # noqa: ASYNC110 (bounded wait)
        await asyncio.sleep(IDLE_POLL_SECONDS)
    draining = hubs()
    results = await asyncio.gather(*(hub.shut_down() for hub in draining), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            logger.error("A hub failed to shut down: %r", result)
    if draining:
        await asyncio.sleep(CLOSE_FLUSH_SECONDS)  # Daphne stops right after: let the 1012 close frames leave


async def attach(*, user, conversation_id: uuid.UUID | str, send: SendText,
                 close: CloseSocket | None = None) -> HubClient:
    """Attach a browser socket to its conversation's hub; raises relay_context.AttachRefused."""
    view = await database_sync_to_async(conversation_for_socket)(user=user, conversation_id=conversation_id)
    hub = _HUBS.get(view.id)
    if hub is None or hub.closing:
        hub = _HUBS[view.id] = ConversationHub(user=user, view=view)
    client = HubClient(hub, user=user, view=view, send=send, close=close)
    hub.add(client)
    await hub.remote.subscribe()
    return client


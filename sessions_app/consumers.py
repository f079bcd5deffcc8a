"""The two client faces. They only wire sockets to the relay; all logic lives there.

* `BrowserConsumer` (`ws/conversations/<uuid>/`): attaches to the conversation's hub
  (live/hub.py), which outlives the socket. Django session auth. An
  anonymous socket is accepted and closed with 4401, a conversation the user
  may not see with 4404, so the browser's reconnecting client stops trying.
* `GatewayConsumer` (`/v1/responses`): API-token auth (gateway_auth.py). A
  socket without a valid token is refused at the handshake (HTTP 403), which
  the official SDK reports as a connection error.
* Both admit a socket against the user's concurrent-socket limit before it
  relays anything (live/sockets.py: over it, an `error` event and close 4429) and
  have its credential re-checked while it is open (live/revocation.py: revoked,
  an `error` event and close 4401, or 4403 for a lost staff flag).
* Neither listens on the channel layer itself (`channel_layer_alias` names no
  layer): nothing is ever sent to a consumer's own channel. Channels would
  otherwise make every socket wait on a receive from the layer, and a Redis
  outage would end each socket with 1011. What needs the layer, the live view
  across processes, has its own subscriber that survives an outage
  (live/subscriber.py); the gateway never needs it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from .live import fanout, gateways, hub, liveness, revocation, sockets
from .relay import AttachRefused, RelaySession, open_connection_pks
from .relay.limits import LimitExceeded, Quota

logger = logging.getLogger("sessions_app.relay")

LIMITED_CODE = 4429  # over the user's concurrent-socket limit (docs/protocol.md)
NO_CHANNEL_LAYER = "switchboard.none"  # an alias CHANNEL_LAYERS never defines: get_channel_layer() is None


class RelayConsumer(AsyncWebsocketConsumer):
    """Hands client frames to its relay and the relay's frames back; subclasses choose the relay."""

    channel_layer_alias = NO_CHANNEL_LAYER  # module rules: no socket waits on the layer
    relay: hub.HubClient | RelaySession | None = None
    admitted: sockets.Admitted | None = None
    credential: revocation.Credential | None = None

    async def dispatch(self, message) -> None:
        # Channels' dispatch first awaits aclose_old_connections(), a hop to the thread-sensitive
        # database thread, before *every* message: on the relay that is each client frame, on the
        # path of every turn's first delta. This consumer never touches Django's connections on
        # the loop: each database_sync_to_async call already closes old connections around itself,
        # and the recorder's threads keep and check their own (recording/recorder.py).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message) -> None:
        # Channels' own also ends with aclose_old_connections(), the same hop as in its dispatch (above), once
        # per socket; this consumer joins no groups (no channel layer), so what is left is the disconnect.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.relay is not None:
            await self.relay.from_client(text_data, bytes_data)

    async def disconnect(self, code: int) -> None:
        revocation.unwatch(self.credential)
        if self.relay is not None:
            await self.relay.close()
        if self.admitted is not None and self.admitted.socket_pk is not None:
            try:
                await sockets.release_socket(self.admitted.socket_pk)
            except Exception as exc:  # the row stops counting once this process stops beating it
                logger.warning("Could not release a client socket row: %r", exc)

    async def _admit(self, face: str, token_pk: int | None = None) -> bool:
        """Count this socket against its user's limit; over it, tell the client and close (already accepted).

        With the limits read at the handshake (gateway_auth.py) nothing else is read: a socket limit is
        one guarded INSERT, and none is nothing at all (live/sockets.py)."""
        try:
            self.admitted = await sockets.admit(user_pk=self.scope["user"].pk, face=face, token_pk=token_pk,
                                                limits=self.scope.get("switchboard_limits"))
        except LimitExceeded as exc:
            await self._send_text(json.dumps(exc.to_event()))
            await self.close(code=LIMITED_CODE)
            return False
        except sockets.CredentialGone:
            await self._send_text(json.dumps(revocation.revoked_event("token_revoked")))
            await self.close(code=revocation.REVOKED_CODE)
            return False
        sockets.start_socket_heartbeat()
        return True

    def _watch(self, *, session_key: str | None = None, staff_view: bool = False) -> None:
        self.credential = revocation.watch(revocation.Credential(
            user_pk=self.scope["user"].pk, send=self._send_text, close=self._close_with, session_key=session_key,
            token_pk=self.admitted.token_pk if self.admitted else None, staff_view=staff_view,
        ))

    async def _close_with(self, code: int) -> None:
        await self.close(code=code)

    def _send_text(self, text: str) -> Awaitable[None]:
        # What AsyncWebsocketConsumer.send(text_data=...) does, without its coroutine layers (not even
        # one of its own: the caller awaits the server's send directly). This runs once per relayed event.
        return self.base_send({"type": "websocket.send", "text": text})


class BrowserConsumer(RelayConsumer):
    relay: hub.HubClient | None = None

    async def connect(self) -> None:
        await self.accept()
        user = self.scope["user"]
        if getattr(user, "is_authenticated", False) and not await self._admit("browser"):
            return
        try:
            self.relay = await hub.attach(
                user=user, conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"],
                send=self._send_text, close=self._close_with,
            )
        except AttachRefused as refused:
            await self.close(code=refused.close_code)
            return
        self._watch(session_key=self.scope["session"].session_key, staff_view=self.relay.view.read_only)
        await self.relay.start()


class GatewayConsumer(RelayConsumer):
    relay: RelaySession | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        await self.accept()
        if not await self._admit("gateway", self.scope.get("api_token_pk")):
            return
        admitted = self.admitted
        self.relay = RelaySession.gateway(
            user=user, send=self._send_text, quota=Quota(user_pk=user.pk, limits=admitted.limits),
            on_link_open=_start_heartbeat, publisher_for=fanout.publisher_for,
            api_token_pk=self.scope.get("api_token_pk"), warm=self.scope.get("switchboard_warm_profile"),
        )
        gateways.track(self.relay, self._close_with)  # drained on SIGTERM (live/gateways.py)
        self._watch()

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:  # server_shutdown when the drain closed this socket (live/gateways.py)
            await self.relay.close(gateways.close_reason(self.relay))
        await super().disconnect(code)
        gateways.untrack(self.relay)


def _start_heartbeat() -> None:
    """A gateway session opened an upstream socket: this process beats the ones it holds (live/liveness.py)."""
    liveness.start_heartbeat(open_connection_pks)

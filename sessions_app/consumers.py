"""The two client faces. They only wire sockets to the relay; all logic lives there.

* `BrowserConsumer` (`ws/conversations/<uuid>/`): attaches to the conversation's hub
  (hub.py), which outlives the socket. Django session auth. An
  anonymous socket is accepted and closed with 4401, a conversation the user
  may not see with 4404, so the browser's reconnecting client stops trying.
* `GatewayConsumer` (`/v1/responses`): API-token auth (gateway_auth.py). A
  socket without a valid token is refused at the handshake (HTTP 403), which
  the official SDK reports as a connection error.
"""

from __future__ import annotations

from collections.abc import Awaitable

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from . import hub
from .relay import RelaySession
from .relay_context import AttachRefused


class RelayConsumer(AsyncWebsocketConsumer):
    """Hands client frames to its relay and the relay's frames back; subclasses choose the relay."""

    relay: hub.HubClient | RelaySession | None = None

    async def dispatch(self, message) -> None:
        # Channels' dispatch first awaits aclose_old_connections(), a hop to the thread-sensitive
        # database thread, before *every* message: on the relay that is each client frame, on the
        # path of every turn's first delta. This consumer never touches Django's connections on
        # the loop: each database_sync_to_async call already closes old connections around itself,
        # and the recorder's threads keep and check their own (recording.py).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.relay is not None:
            await self.relay.from_client(text_data, bytes_data)

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:
            await self.relay.close()

    def _send_text(self, text: str) -> Awaitable[None]:
        # What AsyncWebsocketConsumer.send(text_data=...) does, without its coroutine layers (not even
        # one of its own: the caller awaits the server's send directly). This runs once per relayed event.
        return self.base_send({"type": "websocket.send", "text": text})


class BrowserConsumer(RelayConsumer):
    relay: hub.HubClient | None = None

    async def connect(self) -> None:
        await self.accept()
        try:
            self.relay = await hub.attach(
                user=self.scope["user"], conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"],
                send=self._send_text, close=self._close_with,
            )
        except AttachRefused as refused:
            await self.close(code=refused.close_code)
            return
        await self.relay.start()

    async def _close_with(self, code: int) -> None:
        await self.close(code=code)


class GatewayConsumer(RelayConsumer):
    relay: RelaySession | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.relay = RelaySession.gateway(user=user, send=self._send_text)
        await self.accept()


"""WebSocket routes. Browser sockets: session auth + origin check. Gateway: API token auth.

Origins are checked by origins.py (scheme, host and port must match the socket's own origin, or
CSRF_TRUSTED_ORIGINS); the gateway also lets a socket without an Origin header through.

The gateway path is `/v1/responses` so the official SDK finds it from
`websocket_base_url="ws://<host>/v1"`; any query string is accepted.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.urls import path

from .consumers import BrowserConsumer, GatewayConsumer
from .gateway_auth import ApiTokenAuthMiddleware, gateway_origin_validator
from .origins import SocketOriginValidator
from .outage import DatabaseOutageGuard

websocket_urlpatterns = [
    path(
        "ws/conversations/<uuid:conversation_id>/",
        SocketOriginValidator(AuthMiddlewareStack(BrowserConsumer.as_asgi())),
    ),
    path("v1/responses", gateway_origin_validator(ApiTokenAuthMiddleware(GatewayConsumer.as_asgi()))),
]

# A database error before the handshake is answered: HTTP 503, one warning line (outage.py).
websocket_application = DatabaseOutageGuard(URLRouter(websocket_urlpatterns))

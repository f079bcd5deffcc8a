"""WebSocket routes. Browser sockets: session auth + origin check. Gateway: API token auth.

The gateway path is `/v1/responses` so the official SDK finds it from
`websocket_base_url="ws://<host>/v1"`; any query string is accepted.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import BrowserConsumer, GatewayConsumer
from .gateway_auth import ApiTokenAuthMiddleware, gateway_origin_validator

websocket_urlpatterns = [
    path(
        "ws/conversations/<uuid:conversation_id>/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(BrowserConsumer.as_asgi())),
    ),
    path("v1/responses", gateway_origin_validator(ApiTokenAuthMiddleware(GatewayConsumer.as_asgi()))),
]

websocket_application = URLRouter(websocket_urlpatterns)

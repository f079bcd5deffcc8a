"""ASGI middleware for the gateway socket: a personal API token instead of a session.

* `Authorization: Bearer sb_…` on the upgrade request sets `scope["user"]`
  (ApiToken.authenticate, which also records the use); anything else leaves
  an `AnonymousUser` and the consumer refuses the socket.
* Programmatic clients (the official SDK) send no `Origin` header, and that is
  allowed. A socket that does send one must come from the socket's own origin
  (scheme, host and port) or a trusted one (origins.py), so a web page cannot
  drive the gateway with a token it should not have.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from .models import ApiToken
from .origins import SocketOriginValidator

__all__ = ["ApiTokenAuthMiddleware", "GatewayOriginValidator", "bearer_token"]


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class ApiTokenAuthMiddleware:
    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        token = bearer_token(scope.get("headers", []))
        user = await database_sync_to_async(ApiToken.authenticate)(token) if token else None
        return await self.application({**scope, "user": user or AnonymousUser()}, receive, send)


class GatewayOriginValidator(SocketOriginValidator):
    """The browser socket's origin rule (origins.py: scheme, host and port), except that no
    Origin header at all is fine."""

    def __init__(self, application) -> None:
        super().__init__(application, allow_missing=True)


def gateway_origin_validator(application) -> GatewayOriginValidator:
    return GatewayOriginValidator(application)

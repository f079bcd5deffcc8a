"""ASGI middleware for the gateway socket: a personal API token instead of a session.

* `Authorization: Bearer sb_…` on the upgrade request sets `scope["user"]` (and `scope["api_token_pk"]`)
  (ApiToken.authenticate, which also records the use), `scope["switchboard_limits"]`, the user's
  limits, and `scope["switchboard_warm_profile"]`, the profile whose upstream socket the relay opens
  ahead of the first turn (relay/warm.py), all read in the same trip to a database thread (on
  PostgreSQL from the event loop itself, recording/reads.py): a user without a socket limit is then
  admitted without another (consumers.py). Anything else leaves
  an `AnonymousUser` and the consumer refuses the socket (403), after the
  failure is counted and logged (token_guard.py). A client with too many
  failures is refused before any lookup: error event, then close 4429.
* Programmatic clients (the official SDK) send no `Origin` header, and that is
  allowed. A socket that does send one must come from the socket's own origin
  (scheme, host and port) or a trusted one (origins.py), so a web page cannot
  drive the gateway with a token it should not have.
"""

from __future__ import annotations

import json

from django.contrib.auth.models import AnonymousUser

from .client_address import scope_client_address
from .models import ApiToken, read_handshake
from .origins import SocketOriginValidator
from .recording import read_on_db_thread, read_row, reads_on_loop
from .relay.context import ProfileView, new_conversation_profile, new_conversation_profile_of
from .relay.limits import Limits, limits_of
from .relay.warm import warms
from .throttle import Throttled, athrottled, token_prefix
from .token_guard import Reason, failure_log, token_authenticate, token_refused

__all__ = ["ApiTokenAuthMiddleware", "GatewayOriginValidator", "bearer_token"]


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class ApiTokenAuthMiddleware:
    """Sets `scope["user"]` from the bearer token; refuses throttled clients before any lookup.

    Failures are counted per client address and token prefix (throttle.py) and logged (token_guard.py).
    A throttled handshake is accepted, told why in one `error` event and closed with 4429: Daphne 4.2.3
    has no "websocket.http.response" extension, so a 429 with Retry-After cannot be sent at the
    handshake, and a bare 403 would look like a bad token to the client. A bad token stays a 403.
    """

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        token = bearer_token(scope.get("headers", []))
        address = scope_client_address(scope)
        prefix = token_prefix(token)
        refused = await athrottled(address=address, prefix=prefix)
        if refused is not None:
            failure_log(face="gateway", reason=Reason.THROTTLED, address=address, prefix=prefix,
                        retry_after=refused.retry_after)
            return await _refuse_throttled(receive, send, refused)
        if reads_on_loop():
            api_token, limits, profile = await _credential_on_loop(raw=token, address=address)
        else:
            # On a recorder database thread, not Django's one shared thread (recording/threads.py): a burst of
            # handshakes looks its tokens up side by side, beside pages and first turns, not behind them.
            api_token, limits, profile = await read_on_db_thread(_credential, raw=token, address=address)
        user = api_token.user if api_token is not None else AnonymousUser()
        return await self.application({**scope, "user": user, "api_token_pk": api_token.pk if api_token else None,
                                       "switchboard_limits": limits, "switchboard_warm_profile": profile},
                                      receive, send)


def _credential(*, raw: str | None, address: str | None) -> tuple[ApiToken | None, Limits | None, ProfileView | None]:
    """The token (or None, counted and logged), its user's limits, and the profile its socket warms an
    upstream socket to (relay/warm.py), if any (sync: one trip to a database thread)."""
    api_token = token_authenticate(raw=raw, address=address, face="gateway")
    if api_token is None:
        return None, None, None
    limits = limits_of(api_token.user)
    return api_token, limits, new_conversation_profile(api_token.user) if warms() else None


async def _credential_on_loop(*, raw: str | None, address: str | None
                              ) -> tuple[ApiToken | None, Limits | None, ProfileView | None]:
    """`_credential` read from the event loop (PostgreSQL: recording/reads.py), the same rules, the token and the
    profile in one statement (models/access.py, `read_handshake`); a refused token is counted and logged on a
    database thread, as `_credential` does."""
    warm = warms()
    api_token, profile = await read_handshake(raw, read_row, with_profile=warm) if raw else (None, None)
    if api_token is None:
        await read_on_db_thread(token_refused, raw=raw, address=address, face="gateway")
        return None, None, None
    return api_token, limits_of(api_token.user), new_conversation_profile_of(profile) if warm else None


THROTTLED_CLOSE_CODE = 4429


def throttled_event(refused: Throttled) -> dict:
    return {"type": "error", "status": 429, "error": {
        "type": "rate_limit_error", "code": "too_many_failed_handshakes",
        "message": f"Too many failed authentication attempts; try again in {refused.retry_after} s.",
        "param": None,
    }}


async def _refuse_throttled(receive, send, refused: Throttled) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(throttled_event(refused))})
    await send({"type": "websocket.close", "code": THROTTLED_CLOSE_CODE})


class GatewayOriginValidator(SocketOriginValidator):
    """The browser socket's origin rule (origins.py: scheme, host and port), except that no
    Origin header at all is fine."""

    def __init__(self, application) -> None:
        super().__init__(application, allow_missing=True)


def gateway_origin_validator(application) -> GatewayOriginValidator:
    return GatewayOriginValidator(application)

"""Which web pages may open a socket: the socket's own origin, or one the operator trusts.

Rules (the browser socket and the gateway share them):

* A socket's own origin is its scheme and its Host header, port included. The scheme is `http`
  for `ws` and `https` for `wss`; when SECURE_PROXY_SSL_HEADER is configured and the proxy sent
  that header, the header decides, exactly as Django's `request.is_secure()` does for pages.
* The Host header must itself be allowed (ALLOWED_HOSTS, through Django's `validate_host`, with
  Django's DEBUG defaults). A socket with no Host header, or with an unusable one, has no own
  origin: then only CSRF_TRUSTED_ORIGINS can match. Every browser sends a Host header.
* An Origin is accepted when it equals the own origin (scheme, host and port, default ports
  filled in), or exactly an entry of CSRF_TRUSTED_ORIGINS. Wildcard entries
  (`https://*.example.com`) are not honoured for sockets.
* Anything else is refused before the handshake completes (a close before accept: HTTP 403)
  and logged once, as a WARNING on `sessions_app.security`.
* The browser socket must carry an Origin; the gateway may omit it (the SDK sends none), see
  gateway_auth.py.

Settings are read on every handshake, not when the routes are built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

__all__ = ["Origin", "SocketOriginValidator", "origin_allowed", "socket_origin"]

logger = logging.getLogger("sessions_app.security")

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """A web origin with its port made explicit, so `http://h` equals `http://h:80`."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """`scheme://host[:port]` and nothing more (no path, query, user), else None."""
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            return None
        return cls(scheme=scheme, host=parts.hostname.lower(), port=port or DEFAULT_PORTS[scheme])


def _headers(scope) -> dict[bytes, list[str]]:
    found: dict[bytes, list[str]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.lower(), []).append(value.decode("latin1"))
    return found


def _single(headers: dict[bytes, list[str]], name: bytes) -> str | None:
    """The header's value; None when absent or repeated (two Origins or Hosts mean nothing sure)."""
    values = headers.get(name, [])
    return values[0] if len(values) == 1 else None


def _is_secure(scope, headers: dict[bytes, list[str]]) -> bool:
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        forwarded = _single(headers, name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1"))
        if forwarded is not None:
            return forwarded.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme", "ws") in ("wss", "https")


def _allowed_hosts() -> list[str]:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        return [".localhost", "127.0.0.1", "[::1]"]  # Django's own default for pages
    return allowed


def socket_origin(scope) -> Origin | None:
    """The origin a page that may open this socket has; None without an allowed Host header."""
    headers = _headers(scope)
    host = _single(headers, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return Origin.parse(f"{'https' if _is_secure(scope, headers) else 'http'}://{host}")


def origin_allowed(origin: str, scope) -> bool:
    parsed = Origin.parse(origin)
    if parsed is None:
        return False
    if parsed == socket_origin(scope):
        return True
    trusted = (Origin.parse(entry) for entry in settings.CSRF_TRUSTED_ORIGINS if "*" not in entry)
    return parsed in trusted


class SocketOriginValidator:
    """ASGI middleware: passes a socket on only if its Origin is allowed (see the module's rules).

    `allow_missing`: a socket without an Origin header passes too (programmatic clients).
    """

    def __init__(self, application, *, allow_missing: bool = False) -> None:
        self.application = application
        self.allow_missing = allow_missing

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("SocketOriginValidator guards WebSocket connections only")
        origins = _headers(scope).get(b"origin", [])
        if not origins and self.allow_missing:
            return await self.application(scope, receive, send)
        if len(origins) == 1 and origin_allowed(origins[0], scope):
            return await self.application(scope, receive, send)
        client = scope.get("client") or ("?", None)
        logger.warning(
            "socket refused: origin %r is not allowed on %s (client %s:%s)",
            origins[0] if len(origins) == 1 else origins or None, scope.get("path", "?"), client[0], client[1],
        )
        return await WebsocketDenier()(scope, receive, send)

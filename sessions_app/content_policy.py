"""The Content-Security-Policy's one per-request part: the page's own socket origin in connect-src.

django-csp's CSPMiddleware writes the policy from settings.CONTENT_SECURITY_POLICY. CSP3 `'self'`
already covers same-origin ws:/wss: in current browsers; older ones (Safari before 15.4) read
`'self'` as http(s) only and would block the chat socket, so connect-src also names the socket's
origin explicitly: `ws://host:port` under http, `wss://host:port` under https, from the same
validated host and scheme Django uses for the page (`request.get_host()`, `request.is_secure()`).
That is exactly the origin static/js/socket.js connects to and origins.py accepts.

Place this middleware right after `csp.middleware.CSPMiddleware` in MIDDLEWARE: it runs first on
the way out and leaves the addition on the response, where CSPMiddleware reads it (the same
attribute django-csp's `@csp_update` sets; a view's own update is kept and extended).
"""

from __future__ import annotations

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin


def socket_origin_of(request: HttpRequest) -> str | None:
    """`ws://host[:port]` or `wss://…` for the page's own host; None when the host is not allowed, or
    an IPv6 literal (CSP host-sources cannot name one; `'self'` covers it)."""
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    if host.startswith("["):
        return None
    return f"{'wss' if request.is_secure() else 'ws'}://{host}"


class SocketConnectSrcMiddleware(MiddlewareMixin):
    """MiddlewareMixin, like CSPMiddleware: sync and async capable, so ASGI pays no thread hop."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        origin = socket_origin_of(request)
        if origin:
            update = dict(getattr(response, "_csp_update", None) or {})
            update["connect-src"] = [*update.get("connect-src", ()), origin]
            response._csp_update = update
        return response

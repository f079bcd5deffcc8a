"""Which address a request or socket comes from, for throttling and the security log.

Rules:

* With no proxy in front (SWITCHBOARD_TRUSTED_PROXIES = 0, the default) the client is the peer:
  ``REMOTE_ADDR`` / ``scope["client"]``. ``X-Forwarded-For`` is ignored, since anyone can send it.
* Behind N reverse proxies that each append the address they received from (nginx
  ``$proxy_add_x_forwarded_for``), the client is the N-th address from the right of
  ``X-Forwarded-For``: everything left of it was written by the client and proves nothing.
* Anything that is not an IP address counts as unknown (None), never as a name to trust or log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

__all__ = ["client_address", "request_client_address", "scope_client_address"]


def _ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_address(*, peer: str | None, forwarded_for: Iterable[str] = ()) -> str | None:
    """The client's address from the peer and the `X-Forwarded-For` values, per SWITCHBOARD_TRUSTED_PROXIES."""
    proxies = settings.SWITCHBOARD_TRUSTED_PROXIES
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if proxies <= 0 or not hops:
        return _ip(peer)
    # Fewer hops than proxies: a proxy did not append, so the left-most is the best there is.
    return _ip(hops[-proxies] if len(hops) >= proxies else hops[0])


def request_client_address(request: HttpRequest) -> str | None:
    """For Django views and django-axes (AXES_CLIENT_IP_CALLABLE)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address(peer=request.META.get("REMOTE_ADDR"), forwarded_for=[forwarded] if forwarded else [])


def scope_client_address(scope: dict) -> str | None:
    """For ASGI sockets (Daphne puts the peer in `scope["client"]`)."""
    client = scope.get("client")
    forwarded = [value.decode("latin1") for name, value in scope.get("headers", []) if name.lower() == b"x-forwarded-for"]
    return client_address(peer=client[0] if client else None, forwarded_for=forwarded)

"""Test connection: open a socket to a profile's upstream with its stored key and say, in words, how it went.

Nothing is sent on the socket: the handshake alone tells whether the URL answers and the key is accepted.
The key goes only into the handshake headers; no message, log line or exception here carries it.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from socket import gaierror

from asgiref.sync import async_to_sync

from .models import UpstreamProfile
from .upstream.socket import (
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamTarget,
    UpstreamUnavailable,
    auth_headers,
    open_upstream,
)

CHECK_TIMEOUT_SECONDS = 5.0
REJECTED_WORDS = {
    401: "the upstream refused the API key (HTTP 401 Unauthorized): enter the key again",
    403: "the upstream forbids this key here (HTTP 403 Forbidden)",
    404: "the upstream has no WebSocket endpoint at this URL (HTTP 404 Not Found)",
    429: "the upstream is rate limiting this key (HTTP 429 Too Many Requests)",
}


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str


def _unreachable_words(exc: UpstreamUnavailable, timeout: float) -> str:
    cause = exc.__context__  # open_upstream raises `from None`: the cause is hidden, not gone
    if isinstance(cause, ssl.SSLError):
        return f"the TLS handshake failed ({cause.reason or type(cause).__name__}): check the URL's scheme and host"
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in str(cause):
        return "the connection was refused: nothing listens at that host and port"
    if isinstance(cause, TimeoutError):
        return f"no answer within {timeout:g} s (timeout)"
    if isinstance(cause, gaierror):
        return "the host name does not resolve (DNS)"
    return str(exc).rstrip(".")


def profile_check_connection(*, profile: UpstreamProfile, timeout: float = CHECK_TIMEOUT_SECONDS) -> ConnectionCheck:
    """Open and close one socket to `profile`'s upstream; the result says what happened, in words."""
    headers = auth_headers(auth_style=profile.auth_style, api_key=profile.get_api_key(), extra=profile.extra_headers)
    target = UpstreamTarget(url=profile.websocket_url, headers=headers)
    return async_to_sync(_check)(target, timeout, profile.has_api_key)


async def _check(target: UpstreamTarget, open_timeout: float, has_key: bool) -> ConnectionCheck:
    started = time.monotonic()
    try:
        socket = await open_upstream(target, open_timeout=open_timeout)
    except UpstreamRejected as exc:
        words = REJECTED_WORDS.get(exc.status, f"the upstream answered HTTP {exc.status} instead of a WebSocket")
        return ConnectionCheck(False, f"Failed: {words}.")
    except UpstreamUnavailable as exc:
        return ConnectionCheck(False, f"Failed: {_unreachable_words(exc, open_timeout)}.")
    except UpstreamProtocolError as exc:
        return ConnectionCheck(False, f"Failed: {exc}")
    elapsed_ms = (time.monotonic() - started) * 1000
    await socket.close()
    accepted = "accepted the stored key" if has_key else "accepted the handshake (no key is stored)"
    return ConnectionCheck(True, f"Connected in {elapsed_ms:.0f} ms: the upstream {accepted}.")

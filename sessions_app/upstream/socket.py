"""A thin client socket to an upstream Responses endpoint (OpenAI, Azure, the simulator).

Rules of this module:

* It knows nothing about Django or our models: callers hand it an
  `UpstreamTarget` (URL + handshake headers) and get text frames back.
* Frames are passed through as the `str` the upstream sent; nothing here
  decodes JSON (the relay does, once).
* Opening fails with one of these exceptions the relay turns into protocol
  `error` events: `UpstreamUnavailable` (network, bad URL), `UpstreamTimeout`
  (no completed handshake within `open_timeout`: a host that accepts TCP and
  never answers must not hold the client's turn), `UpstreamRejected` (an HTTP
  status instead of the upgrade: 401/403/429/5xx…), `UpstreamProtocolError`
  (something that is not a valid WebSocket handshake).
* `max_size` caps one upstream frame (the caller's setting): a misbehaving
  upstream cannot make the relay buffer an unbounded message. Over the cap
  websockets closes the socket with 1009 (`UpstreamSocket.close_sent_code`).
* Handshake headers carry the API key, so `UpstreamTarget` never shows them in
  its repr, and the wire logger masks request header values in debug logs.
* An upstream that speaks before it is asked (an SSH or SMTP banner on a misconfigured port) is an
  `UpstreamProtocolError` like any other invalid answer. websockets 15 parses those bytes as a bad HTTP
  response as soon as they arrive, and when that happens before its handshake sends the request (as it
  does on uvloop, which reads a new connection at once) its handshake fails an internal assertion
  instead (`_SpokenFirst`).
* A proxy is chosen as websockets chooses it (`*_proxy` and `no_proxy` in the environment), once per
  URL for the process's life (`_proxy`): websockets reads the whole environment twice per connect
  (about 150 µs of a new socket's CPU on the bench machine).

Hierarchy::

    UpstreamError
     ├── UpstreamUnavailable
     │    └── UpstreamTimeout     (.seconds)
     ├── UpstreamRejected          (.status)
     └── UpstreamProtocolError
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidProxy, InvalidStatus, InvalidURI
from websockets.uri import get_proxy, parse_uri

__all__ = [
    "UpstreamTarget",
    "UpstreamSocket",
    "UpstreamError",
    "UpstreamUnavailable",
    "UpstreamTimeout",
    "UpstreamRejected",
    "UpstreamProtocolError",
    "auth_headers",
    "open_upstream",
]

OPEN_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 2.0
# Request headers that are safe to show in websockets' debug log; every other value is masked.
SAFE_LOG_HEADERS = frozenset(
    {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "user-agent"}
)


class _MaskHandshakeHeaders(logging.Filter):
    """websockets logs each request header at DEBUG ("> %s: %s"): keep secrets out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "> %s: %s" and isinstance(record.args, tuple) and len(record.args) == 2:
            name = str(record.args[0])
            if name.lower() not in SAFE_LOG_HEADERS:
                record.args = (name, "[masked]")
        return True


wire_logger = logging.getLogger("sessions_app.upstream.wire")
wire_logger.addFilter(_MaskHandshakeHeaders())


class UpstreamError(Exception):
    """The upstream socket could not be opened; `code` is the relay's error code."""

    code = "upstream_unavailable"


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamUnavailable):
    """No completed handshake within the open timeout (TCP accepted and silent, or no TCP answer at all)."""

    code = "upstream_timeout"

    def __init__(self, seconds: float, message: str) -> None:
        super().__init__(message)
        self.seconds = seconds


class UpstreamRejected(UpstreamError):
    """The upstream answered the upgrade with an HTTP status (bad key, forbidden, rate limited, down)."""

    code = "upstream_rejected"

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


@dataclass(frozen=True)
class UpstreamTarget:
    """Where to connect and with which handshake headers (headers hold the key: never shown)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Header values that must never be stored or logged (the relay scrubs them from records)."""
        return tuple(v for k, v in self.headers.items() if k.lower() in ("authorization", "api-key") and v)


def auth_headers(*, auth_style: str, api_key: str, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Handshake headers for an auth style (`bearer`, `azure_api_key`, `none`) plus extra headers.

    Extra headers come first so a profile can never override the auth header by accident.
    """
    headers = {str(k): str(v) for k, v in (extra or {}).items()}
    if api_key and auth_style == "bearer":
        headers["Authorization"] = f"Bearer {api_key}"
    elif api_key and auth_style == "azure_api_key":
        headers["api-key"] = api_key
    return headers


class UpstreamSocket:
    """One open upstream socket: `send` text, iterate frames, then read `close_code`."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    async def send(self, text: str) -> None:
        """Send one frame. Raises `websockets.ConnectionClosed` if the socket is gone (nothing was sent)."""
        await self._connection.send(text)

    def frames(self) -> AsyncIterator[str | bytes]:
        """Frames until the socket closes: the iteration ends on a normal close, an abnormal one raises
        `websockets.ConnectionClosedError`. The connection's own iterator, not a generator re-yielding
        it: one layer less per frame on the relay's hot path."""
        return aiter(self._connection)

    @property
    def close_code(self) -> int | None:
        """The close code received (1006 when the TCP connection died without a close frame)."""
        return self._connection.close_code

    @property
    def close_reason(self) -> str:
        return self._connection.close_reason or ""

    @property
    def is_open(self) -> bool:
        return self._connection.close_code is None

    @property
    def close_sent_code(self) -> int | None:
        """The code of the close frame *we* sent (1009: the upstream's frame was over `max_size`)."""
        sent = self._connection.protocol.close_sent
        return sent.code if sent is not None else None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._connection.close(code, reason)


class _SpokenFirst(ClientConnection):
    """websockets' client connection, raising the invalid response it already parsed (module rules)."""

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        if self.protocol.handshake_exc is not None:  # the upstream spoke first: `connect` aborts the transport
            raise self.protocol.handshake_exc
        await super().handshake(*args, **kwargs)


async def open_upstream(target: UpstreamTarget, *, open_timeout: float = OPEN_TIMEOUT_SECONDS,
                        max_size: int | None = None) -> UpstreamSocket:
    """Open a socket to `target`, like the official SDK does (no compression; no frame cap unless `max_size`)."""
    try:
        connection = await connect(
            target.url,
            additional_headers=target.headers,
            compression=None,
            max_size=max_size,
            open_timeout=open_timeout,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
            logger=wire_logger,
            proxy=_proxy(target.url),
            create_connection=_SpokenFirst,
        )
    except InvalidStatus as exc:
        raise _rejected(exc.response.status_code, exc.response.headers.get("Retry-After")) from None
    except InvalidURI:
        raise UpstreamUnavailable("The upstream URL is not a valid WebSocket URL.") from None
    except InvalidProxy:
        raise UpstreamUnavailable("The proxy configured for the upstream is not a valid proxy URL.") from None
    except InvalidHandshake as exc:
        raise UpstreamProtocolError(f"The upstream handshake was invalid ({type(exc).__name__}).") from None
    except TimeoutError:  # before OSError, its base: websockets' open_timeout, or the OS's connect timeout
        raise UpstreamTimeout(open_timeout, f"The upstream did not complete the WebSocket handshake within "
                                            f"{open_timeout:g} s.") from None
    except OSError as exc:
        raise UpstreamUnavailable(f"The upstream could not be reached ({type(exc).__name__}).") from None
    return UpstreamSocket(connection)


@functools.lru_cache(maxsize=256)
def _proxy(url: str) -> str | Literal[True] | None:
    """The proxy websockets would pick for `url` (None: none), worked out once; True lets `connect`
    report a URL it cannot parse."""
    try:
        return get_proxy(parse_uri(url))
    except InvalidURI:
        return True


STATUS_WORDS = {401: "Unauthorized: check the upstream key", 403: "Forbidden", 404: "Not Found",
                429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                503: "Service Unavailable", 504: "Gateway Timeout"}


def _rejected(status: int, retry_after: str | None) -> UpstreamRejected:
    """The refusal in words: the status, what it means, and the upstream's Retry-After when it sent one
    (a number of seconds; an HTTP date is not repeated)."""
    words = STATUS_WORDS.get(status)
    message = f"The upstream refused the connection with HTTP {status}" + (f" ({words})." if words else ".")
    seconds = retry_after.strip() if retry_after else ""
    if seconds.isdigit():
        message += f" It asked to retry after {int(seconds)} s."
    return UpstreamRejected(status, message, retry_after=seconds if seconds.isdigit() else None)

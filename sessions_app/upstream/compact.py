"""The upstream's standalone compaction call, `POST <upstream>/v1/responses/compact` (PROTOCOL.md §5.2).

No Django here: the caller (compaction.py) decides what to send and records what came back.
The call is synchronous; it runs in a page's view, never on the relay's event loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .socket import UpstreamTarget

__all__ = ["COMPACT_MAX_BYTES", "COMPACT_TIMEOUT_SECONDS", "compact_url", "post_compact"]

COMPACT_TIMEOUT_SECONDS = 120
# The largest answer read (the relay's default upstream frame cap): a broken upstream cannot make a page's
# worker buffer an unbounded body.
COMPACT_MAX_BYTES = 64 * 1024 * 1024


def compact_url(websocket_url: str) -> str:
    """`wss://host/v1/responses?x` -> `https://host/v1/responses/compact?x` (query kept)."""
    parts = urlsplit(websocket_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/responses"):
        path += "/responses"
    return urlunsplit((scheme, parts.netloc, path + "/compact", parts.query, ""))


def post_compact(target: UpstreamTarget, body: dict[str, Any], *,
                 max_bytes: int = COMPACT_MAX_BYTES) -> tuple[int, dict[str, Any]]:
    """POST `body` to the compact URL of `target`'s socket URL: (HTTP status, JSON body or {}).

    Raises OSError (unreachable) or ValueError (a 200 whose body is not JSON, or is over `max_bytes`)."""
    request = urllib.request.Request(
        compact_url(target.url), data=json.dumps(body).encode(), method="POST",
        headers={**target.headers, "Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=COMPACT_TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, _json_body(response, max_bytes)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, _json_body(exc, max_bytes)
        except ValueError:
            return exc.code, {}


def _json_body(stream: Any, max_bytes: int) -> dict[str, Any]:
    """The answer's JSON, read no further than `max_bytes` (one byte more tells a body that is longer)."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"The upstream's answer is larger than {max_bytes} bytes.")
    return json.loads(data or b"{}")

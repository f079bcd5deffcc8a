"""The upstream clients: the Responses socket (`websockets`) and the standalone compaction call (HTTP).

No Django: the relay (relay/) and standalone compaction (compaction.py) both talk upstream through
here, with an `UpstreamTarget` whose headers carry the key and are never shown or logged.
"""

from .compact import compact_url, post_compact
from .socket import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamSocket,
    UpstreamTarget,
    UpstreamTimeout,
    UpstreamUnavailable,
    auth_headers,
    open_upstream,
)

__all__ = [
    "UpstreamTarget", "UpstreamSocket", "UpstreamError", "UpstreamUnavailable", "UpstreamTimeout", "UpstreamRejected",
    "UpstreamProtocolError", "auth_headers", "open_upstream", "compact_url", "post_compact",
]

"""Opaque blobs (`encrypted_content`) that only the simulator can read back.

Clients must treat compaction and reasoning `encrypted_content` as opaque;
the simulator needs to decode its own blobs so a compaction item passed back
as input (or hydrated from a cache) restores the facts it summarised.  The
format is "gAAAAB" (the Fernet-token look of OpenAI's blobs) followed by
URL-safe base64 of a JSON object.  Nothing here is secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["seal", "unseal", "PREFIX"]

PREFIX = "gAAAAB"


def seal(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode()


def unseal(blob: str) -> dict[str, Any] | None:
    """The payload of a blob made by `seal`, or None for anything else (foreign blobs)."""
    if not isinstance(blob, str) or not blob.startswith(PREFIX):
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(blob[len(PREFIX):].encode()))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None

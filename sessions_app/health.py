"""What /healthz reports: each dependency, checked with a short timeout.

* database: `SELECT 1` on the default connection. Down means the whole report is "down" and HTTP 503.
* channel_layer: one message sent to a private channel and received back within 1 s ("not configured"
  when no layer is).
* upstream: a TCP connect to the default profile's WebSocket host and port within 2 s, remembered for
  a few seconds so a probe every second costs one connect per interval. With the database down, the
  last known host and port are used.

A failing channel layer or upstream makes the report "degraded" (HTTP 200: this process still serves
pages and sockets). Nothing here carries a key, a URL or an exception's text: only states and class names.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, connection

from . import selectors

__all__ = ["health_report"]

LAYER_TIMEOUT_SECONDS = 1.0
UPSTREAM_TIMEOUT_SECONDS = 2.0
UPSTREAM_CACHE_SECONDS = 10.0
DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}

_lock = threading.Lock()
_target: tuple[str, int] | None = None  # the default profile's host and port, as last read
_upstream: tuple[float, tuple[str, int], dict] | None = None  # (checked at, target, result)


def health_report() -> tuple[dict, int]:
    """(the JSON document, its HTTP status)."""
    database = check_database()
    report = {"database": database, "channel_layer": check_channel_layer(),
              "upstream": check_upstream(database_up=database["status"] == "ok")}
    if database["status"] != "ok":
        status = "down"
    elif all(report[name]["status"] in ("ok", "not configured") for name in ("channel_layer", "upstream")):
        status = "ok"
    else:
        status = "degraded"
    return {"status": status, **report}, 503 if status == "down" else 200


def _failed(exc: BaseException) -> dict:
    return {"status": "down", "error": type(exc).__name__}


def check_database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        connection.close_if_unusable_or_obsolete()  # the next request opens a fresh connection
        return _failed(exc)
    return {"status": "ok", "ms": round((time.monotonic() - started) * 1000, 1)}


def check_channel_layer() -> dict:
    layer = get_channel_layer()
    if layer is None:
        return {"status": "not configured"}
    started = time.monotonic()
    try:
        async_to_sync(_layer_round_trip)(layer)
    except Exception as exc:  # a timeout included
        return _failed(exc)
    return {"status": "ok", "backend": type(layer).__name__, "ms": round((time.monotonic() - started) * 1000, 1)}


async def _layer_round_trip(layer) -> None:
    async def round_trip() -> None:
        channel = await layer.new_channel("healthz.")
        await layer.send(channel, {"type": "healthz.ping"})
        await layer.receive(channel)

    await asyncio.wait_for(round_trip(), LAYER_TIMEOUT_SECONDS)


def _default_target() -> tuple[str, int] | None:
    profile = selectors.default_profile()
    if profile is None:
        return None
    parts = urlsplit(profile.websocket_url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme, 443)


def check_upstream(*, database_up: bool) -> dict:
    global _target, _upstream
    if database_up:
        try:
            _target = _default_target()
        except DatabaseError:
            pass  # keep the last known target
        if _target is None:
            return {"status": "not configured"}
    elif _target is None:
        return {"status": "unknown", "error": "the default profile is read from the database"}
    target = _target
    with _lock:
        if _upstream is not None and _upstream[1] == target and time.monotonic() - _upstream[0] < UPSTREAM_CACHE_SECONDS:
            return _upstream[2]
        started = time.monotonic()
        try:
            socket.create_connection(target, timeout=UPSTREAM_TIMEOUT_SECONDS).close()
        except OSError as exc:
            result = _failed(exc)
        else:
            result = {"status": "ok", "ms": round((time.monotonic() - started) * 1000, 1)}
        _upstream = (time.monotonic(), target, result)
        return result

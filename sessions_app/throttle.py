"""Counts failed token authentications on Django's cache, and says when to refuse before looking a token up.

Rules:

* A failure (missing, unknown or revoked token, inactive user) counts against the client's address
  and, for a Switchboard token, against its public prefix (its first 10 characters, `sb_xxxxxxx`, as
  the tokens page shows it): guessing the rest of one known token is slowed down as much as guessing
  from one address.
* Counts live in fixed windows of SWITCHBOARD_THROTTLE_WINDOW_SECONDS. At
  SWITCHBOARD_THROTTLE_ADDRESS_FAILURES (per address) or SWITCHBOARD_THROTTLE_PREFIX_FAILURES (per
  prefix), requests are refused until the window ends, before any database lookup. Refused requests
  do not count, so a lockout ends when its window does.
* An unknown address (no peer, nothing trusted in X-Forwarded-For) is not counted per address: one
  client could otherwise lock out every client that shares the unknown.
* The cache is shared by all Daphne processes when REDIS_URL is set (settings "Cache"); with
  LocMemCache each process counts alone. While the shared cache fails (Redis down), each process
  counts alone in memory (so the throttle still holds, per process) instead of refusing every
  handshake: one warning when that starts, one when the shared cache answers again.
* `athrottled` (every gateway handshake) never leaves the event loop for Django's shared database
  thread: with Redis it asks one `MGET` on a per-loop asyncio client (Django's `cache.aget_many` runs
  the sync call on that thread, and under ASGI each task gets a cache object, so a Redis connection,
  of its own: 150 handshakes a second queued there behind each other and behind the token lookups);
  with the in-process cache it reads it directly (no I/O). The keys and integer values are Django's
  own (`make_and_validate_key`; RedisCache stores an int as its digits), so both paths count the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
import weakref
from dataclasses import dataclass

import redis.asyncio
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

__all__ = ["Throttled", "token_prefix", "throttled", "athrottled", "failure_record"]

logger = logging.getLogger("sessions_app.security")

PREFIX_LENGTH = 10
_LOCAL = LocMemCache("switchboard-throttle-fallback", {})  # while the shared cache is down (rules)
_shared_down = False
_clock = time.time  # tests replace it to stand at a known point of a window
_PREFIX = re.compile(r"sb_[A-Za-z0-9_\-]{7}")


@dataclass(frozen=True)
class Throttled:
    """Why a request is refused, and when to come back (seconds, at least 1)."""

    by: str  # "address" or "token_prefix"
    retry_after: int


def token_prefix(raw: str | None) -> str | None:
    """A Switchboard token's public prefix, or None (no token, or not one of ours: nothing to show)."""
    prefix = (raw or "")[:PREFIX_LENGTH]
    return prefix if _PREFIX.fullmatch(prefix) else None


def _keys(address: str | None, prefix: str | None, window: int) -> dict[str, tuple[str, int]]:
    """Cache key -> (what it counts, its limit), for this window."""
    keys = {}
    if address:
        digest = hashlib.sha256(address.encode()).hexdigest()[:32]
        keys[f"throttle:address:{digest}:{window}"] = ("address", settings.SWITCHBOARD_THROTTLE_ADDRESS_FAILURES)
    if prefix:
        keys[f"throttle:prefix:{prefix}:{window}"] = ("token_prefix", settings.SWITCHBOARD_THROTTLE_PREFIX_FAILURES)
    return keys


def _window(now: float) -> tuple[int, int]:
    """(this window's number, seconds until it ends)."""
    length = settings.SWITCHBOARD_THROTTLE_WINDOW_SECONDS
    number = int(now // length)
    return number, max(1, math.ceil((number + 1) * length - now))


def _verdict(keys: dict[str, tuple[str, int]], counts: dict[str, int], retry_after: int) -> Throttled | None:
    for key, (by, limit) in keys.items():
        if limit > 0 and counts.get(key, 0) >= limit:
            return Throttled(by=by, retry_after=retry_after)
    return None


def _shared_failed(exc: Exception) -> LocMemCache:
    global _shared_down
    if not _shared_down:
        _shared_down = True
        logger.warning("Shared cache unavailable (%s): failed token authentications are counted per process "
                       "until it is back", type(exc).__name__)
    return _LOCAL


def _shared_answered() -> None:
    global _shared_down
    if _shared_down:
        _shared_down = False
        logger.warning("Shared cache back: failed token authentications are counted across processes again")


def throttled(*, address: str | None, prefix: str | None) -> Throttled | None:
    number, retry_after = _window(_clock())
    keys = _keys(address, prefix, number)
    if not keys:
        return None
    try:
        counts = cache.get_many(keys)
    except Exception as exc:
        counts = _shared_failed(exc).get_many(keys)
    else:
        _shared_answered()
    return _verdict(keys, counts, retry_after)


_ASYNC_REDIS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> (client, key maker)


def _async_redis():
    """This loop's asyncio Redis client and a cache object to make keys with; None without RedisCache."""
    loop = asyncio.get_running_loop()
    found = _ASYNC_REDIS.get(loop)
    if found is None:
        shared = caches.create_connection(DEFAULT_CACHE_ALIAS)
        if not isinstance(shared, RedisCache):
            return None
        location = shared._servers[0]
        found = _ASYNC_REDIS[loop] = (redis.asyncio.Redis.from_url(location, socket_connect_timeout=2,
                                                                   socket_timeout=2), shared)
    return found


async def _shared_counts(keys: dict[str, tuple[str, int]]) -> dict[str, int]:
    found = _async_redis()
    if found is None:  # the in-process cache: no I/O, read on the loop
        return cache.get_many(keys)
    client, shared = found
    values = await client.mget([shared.make_and_validate_key(key) for key in keys])
    return {key: int(value) for key, value in zip(keys, values, strict=True) if value is not None}


async def athrottled(*, address: str | None, prefix: str | None) -> Throttled | None:
    """`throttled` for the event loop, which it never leaves (see the module rules)."""
    number, retry_after = _window(_clock())
    keys = _keys(address, prefix, number)
    if not keys:
        return None
    try:
        counts = await _shared_counts(keys)
    except Exception as exc:
        counts = _shared_failed(exc).get_many(keys)
    else:
        _shared_answered()
    return _verdict(keys, counts, retry_after)


def failure_record(*, address: str | None, prefix: str | None) -> None:
    """Count one failure against the address and the prefix."""
    number, _ = _window(_clock())
    try:
        _count(cache, _keys(address, prefix, number))
    except Exception as exc:
        _count(_shared_failed(exc), _keys(address, prefix, number))


def _count(store, keys) -> None:
    timeout = settings.SWITCHBOARD_THROTTLE_WINDOW_SECONDS + 60  # outlives its window, then goes
    for key in keys:
        store.add(key, 0, timeout)
        try:
            store.incr(key)
        except ValueError:  # expired between add and incr: start again
            store.add(key, 1, timeout)

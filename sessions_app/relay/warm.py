"""A gateway socket's upstream socket opened ahead of its first turn (`WarmSocket`, held by RelaySession).

An agent that connects to the gateway sends a `response.create` next, and its first turn would
otherwise wait for an upstream handshake (a TCP connect, TLS and an HTTP upgrade to the real API).

Rules:

* Only a gateway socket warms one, once it is admitted, and only to the profile a new conversation of
  its user would get (read in the handshake's one trip to the database, gateway_auth.py). The user's
  upstream-socket limit counts it once a request takes it, checked then like any socket a request
  opens (link.py); untaken, it is bounded by the client-socket limit and its time (below).
* The first socket the session opens takes it (link.py) if the conversation's profile is that one and
  the socket is still open; it is then recorded and read like any other. Otherwise it is closed and
  the session opens its own, as without one.
* While it is untaken, a new conversation the socket makes gets its profile as read at connect
  (at most `SWITCHBOARD_UPSTREAM_WARM_SECONDS` old, like the token checked then), not read again.
* It has no row until it is taken: nothing was sent on it. A warm open that fails is dropped
  silently: the open a request makes is what records and reports a failing upstream.
* Untaken after `SWITCHBOARD_UPSTREAM_WARM_SECONDS`, or when its client leaves, it is closed: an
  idle client holds no upstream socket for long.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from ..upstream import UpstreamError, UpstreamSocket, UpstreamTarget, open_upstream
from .context import ProfileView

__all__ = ["WarmSocket", "warm_for", "warms"]

logger = logging.getLogger("sessions_app.relay")


class WarmSocket:
    """An upstream socket opening (or open) to `profile`'s target, until taken or dropped."""

    def __init__(self, *, profile: ProfileView, keep_seconds: float) -> None:
        self.profile = profile
        loop = asyncio.get_running_loop()
        self._opening: asyncio.Task[UpstreamSocket] | None = loop.create_task(
            open_upstream(profile.target, open_timeout=settings.SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS,
                          max_size=settings.SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES or None),
            name="switchboard-upstream-warm")
        self._expiry = loop.call_later(keep_seconds, self.drop)
        self._closing: set[asyncio.Task[None]] = set()

    async def take(self, profile_pk: int, target: UpstreamTarget) -> UpstreamSocket | None:
        """The open socket for a conversation of `profile_pk` at `target`, once; None (and the warm socket
        closed) when it is for another profile (or the profile's target changed since), failed or closed
        meanwhile, or was taken or dropped already."""
        opening, self._opening = self._opening, None
        self._expiry.cancel()
        if opening is None:
            return None
        if profile_pk != self.profile.pk or target != self.profile.target:
            self._close(opening)
            return None
        try:
            socket = await asyncio.shield(opening)
        except asyncio.CancelledError:
            self._close(opening)  # the taker was cancelled: a socket that opens anyway is closed
            raise
        except UpstreamError as exc:
            logger.info("A warm upstream socket did not open (%s); the request opens its own", exc)
            return None
        if not socket.is_open:
            return None
        return socket

    @property
    def fresh(self) -> bool:
        """Neither taken, dropped nor expired: its `profile`, read at connect, may stand for a new
        conversation's (context.py), saving that trip a lookup."""
        return self._opening is not None

    def drop(self) -> None:
        """Close it unless taken (the client left)."""
        opening, self._opening = self._opening, None
        self._expiry.cancel()
        if opening is not None:
            self._close(opening)

    async def close(self) -> None:
        """Drop it and wait until it is closed (a session's close: none outlives its client)."""
        self.drop()
        if self._closing:
            await asyncio.wait(self._closing)

    def _close(self, opening: asyncio.Task[UpstreamSocket]) -> None:
        closing = asyncio.get_running_loop().create_task(_close_when_open(opening))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)


async def _close_when_open(opening: asyncio.Task[UpstreamSocket]) -> None:
    if not opening.done():
        opening.cancel()
    try:
        socket = await opening
    except (asyncio.CancelledError, UpstreamError):
        return
    await socket.close(1000, "unused")


def warms() -> bool:
    """Whether gateway sockets warm one (`SWITCHBOARD_UPSTREAM_WARM_SECONDS` is not 0)."""
    return settings.SWITCHBOARD_UPSTREAM_WARM_SECONDS > 0


def warm_for(profile: ProfileView | None) -> WarmSocket | None:
    """A warm socket to `profile` (a context.ProfileView, read where `warms` said yes), or None."""
    if profile is None:
        return None
    return WarmSocket(profile=profile, keep_seconds=settings.SWITCHBOARD_UPSTREAM_WARM_SECONDS)

"""Twisted's TCP connections send at the end of the loop turn that wrote, without waiting for writability.

Daphne runs Twisted on the asyncio loop. Twisted's `FileDescriptor.write` never sends: it buffers
the bytes and registers the socket as a writer (an `epoll_ctl`); the loop's next turn finds the socket
writable, sends, and unregisters it (another `epoll_ctl`). For a relay at a model's pace, which sends
each upstream event as its own small frame, that is two system calls and a poll per frame on top of the
send itself (about 10 % of a busy Daphne's samples in bench/capacity.py: `add_writer`, `modify`,
`doWrite`). Sending each frame at once instead (a first version of this module) cost one `send` per
frame when events come in bursts (bench/relay.py, unpaced), where Twisted's buffer had sent a loop
turn's frames together.

`deferred_tcp_writes` keeps both: a plain (non-TLS) TCP connection with nothing waiting in Twisted's
buffer collects what is written during one loop turn and sends it with one `send` from a `call_soon`
callback, which runs before the loop polls again. Rules:

* Order: bytes go out in the order written. Collecting starts only when Twisted's buffer is empty,
  and whatever the kernel does not take (a full socket buffer) moves to Twisted's buffer, with its
  usual writer registration, producer pausing and flow control; later writes queue behind it there.
* A send that fails (the connection is lost) moves the bytes to Twisted's buffer too: Twisted's own
  `doWrite` then meets the same error and closes the connection as it always does.
* Bytes written before `loseConnection` (or `loseWriteConnection`) still go first: the close sends what
  was collected before Twisted registers its writer, whose `doWrite` would find its buffer empty and close
  the socket. The callback alone is not enough on uvloop (event_loop.py), which runs a writer's callback
  inside its poll, ahead of callbacks already scheduled. Bytes written after it take Twisted's path,
  which sends them before it closes.
* A TLS connection, or one that is closing, half-closed or gone, keeps Twisted's path throughout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp

__all__ = ["deferred_tcp_writes", "twisted_writes"]

_twisted_write = tcp.Connection.write


def _deferred_write(self: tcp.Connection, data: bytes) -> None:
    pending: list[bytes] | None = self.__dict__.get("_switchboard_pending")
    if pending:  # collecting this turn's bytes already (so Twisted's buffer is empty)
        if type(data) is bytes and self.connected and not self.disconnecting and not self._writeDisconnected:
            pending.append(data)
            return
        _send_pending(self)
        return _twisted_write(self, data)
    loop = getattr(self.reactor, "_asyncioEventloop", None)
    if (loop is None or self.TLS or not self.connected or self.disconnecting or self._writeDisconnecting
            or self._writeDisconnected or self._tempDataBuffer or self.offset < len(self.dataBuffer) or type(data) is not bytes or not data):
        return _twisted_write(self, data)
    self._switchboard_pending = [data]
    loop.call_soon(_send_pending, self)


def _send_pending(self: tcp.Connection) -> None:
    pending = self.__dict__.get("_switchboard_pending")
    if not pending:
        return
    self._switchboard_pending = None
    if not self.connected or self._writeDisconnected:
        return  # gone meanwhile: Twisted drops what is written to a lost connection too
    data = pending[0] if len(pending) == 1 else b"".join(pending)
    sent = self.writeSomeData(data) if not self._tempDataBuffer and self.offset >= len(self.dataBuffer) else 0
    if type(sent) is not int or sent <= 0:  # lost (an exception value) or nothing taken: Twisted's way
        _twisted_write(self, data)
    elif sent < len(data):
        _twisted_write(self, data[sent:])


def _sent_first(close: Callable[..., None]) -> Callable[..., None]:
    """`close` (Twisted's), after what this turn collected is sent (module rules)."""

    @functools.wraps(close)
    def closing(self: tcp.Connection, *args: Any, **kwargs: Any) -> None:
        _send_pending(self)
        close(self, *args, **kwargs)

    return closing


_twisted_closes = {name: getattr(tcp.Connection, name) for name in ("loseConnection", "loseWriteConnection")}


def deferred_tcp_writes() -> None:
    """Install the collected write on Twisted's TCP connections (module rules); idempotent."""
    tcp.Connection.write = _deferred_write
    for name, close in _twisted_closes.items():
        setattr(tcp.Connection, name, _sent_first(close))


def twisted_writes() -> None:
    """Put Twisted's own write and closes back (tests)."""
    tcp.Connection.write = _twisted_write
    for name, close in _twisted_closes.items():
        setattr(tcp.Connection, name, close)

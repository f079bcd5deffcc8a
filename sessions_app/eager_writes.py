"""Twisted's TCP connections send at once when they can, as asyncio's transports do.

Daphne runs Twisted on the asyncio loop. Twisted's `FileDescriptor.write` never sends: it buffers
the bytes and registers the socket as a writer (an `epoll_ctl`); the loop's next turn finds the socket
writable, sends, and unregisters it (another `epoll_ctl`). For a relay, which sends each upstream
event as its own small frame, that is two system calls and a loop turn per frame on top of the send
itself (about 10 % of a busy Daphne's samples in bench/capacity.py: `add_writer`, `modify`, `doWrite`).

`eager_tcp_writes` makes a plain (non-TLS) TCP connection with nothing buffered send the bytes
straight away. Rules:

* Order: only when nothing is buffered (the send buffer and Twisted's list buffer are both empty), so
  bytes never overtake earlier ones.
* Whatever the kernel does not take (a full socket buffer, more than Twisted's SEND_LIMIT) is buffered
  the usual way, with the usual writer registration, producer pausing and flow control.
* A send that fails (the connection is lost) sends nothing and buffers the bytes the usual way:
  Twisted's own `doWrite` then meets the same error and closes the connection as it always does.
* A connection that is closing (`loseConnection`, half-close) or speaks TLS keeps Twisted's path.
"""

from __future__ import annotations

from twisted.internet import tcp

__all__ = ["eager_tcp_writes"]

_twisted_write = tcp.Connection.write


def _eager_write(self: tcp.Connection, data: bytes) -> None:
    if (self.TLS or not self.connected or self.disconnecting or self._writeDisconnecting
            or self._writeDisconnected or self._tempDataBuffer or self.offset < len(self.dataBuffer)
            or type(data) is not bytes or not data):
        return _twisted_write(self, data)
    sent = self.writeSomeData(data)
    if type(sent) is not int or sent <= 0:  # lost (an exception value) or nothing taken: Twisted's way
        return _twisted_write(self, data)
    if sent < len(data):
        _twisted_write(self, data[sent:])


def eager_tcp_writes() -> None:
    """Install the eager write on Twisted's TCP connections (module rules); idempotent."""
    tcp.Connection.write = _eager_write


def twisted_writes() -> None:
    """Put Twisted's own write back (tests)."""
    tcp.Connection.write = _twisted_write

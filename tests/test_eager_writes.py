"""sessions_app.eager_writes: a Twisted TCP connection sends at once when nothing is buffered, and never
reorders or loses bytes when the kernel takes only part of them (real sockets, Twisted's asyncio reactor)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from twisted.internet import asyncioreactor, protocol, tcp

from sessions_app.eager_writes import eager_tcp_writes, twisted_writes


@pytest.fixture
def eager():
    eager_tcp_writes()
    yield
    twisted_writes()


@pytest.fixture
def pair():
    """A Twisted connection over one end of a real socket pair, on an asyncio reactor that is not running."""
    loop = asyncio.new_event_loop()
    reactor = asyncioreactor.AsyncioSelectorReactor(loop)
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    connection = tcp.Connection(ours, protocol.Protocol(), reactor)
    connection.connected = True
    yield connection, peer, reactor
    reactor.removeAll()
    ours.close()
    peer.close()
    loop.close()


def _read(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(5)
    received = b""
    while len(received) < size:
        received += peer.recv(65536)
    return received


def test_a_frame_goes_out_at_once_without_registering_a_writer(eager, pair) -> None:
    connection, peer, reactor = pair
    connection.write(b"frame one")
    connection.write(b"frame two")
    assert connection not in reactor.getWriters()
    assert _read(peer, 18) == b"frame oneframe two"


def test_what_the_kernel_does_not_take_waits_in_order_for_the_reactor(eager, pair) -> None:
    connection, peer, reactor = pair
    big = bytes(range(256)) * 40_000  # 10 MB: far more than the socket buffers hold
    connection.write(big)
    assert connection in reactor.getWriters()  # the rest waits, the usual Twisted way
    connection.write(b"after")  # buffered behind it, never sent ahead of it
    received = b""
    peer.setblocking(False)
    while len(received) < len(big) + 5:
        connection.doWrite()
        try:
            received += peer.recv(1 << 20)
        except BlockingIOError:
            pass
    assert received == big + b"after"
    assert connection not in reactor.getWriters()


def test_a_closing_connection_keeps_twisteds_path(eager, pair) -> None:
    connection, peer, reactor = pair
    connection.disconnecting = True
    connection.write(b"last words")
    assert connection in reactor.getWriters()
    connection.doWrite()
    assert _read(peer, 10) == b"last words"


def test_a_lost_connection_buffers_for_twisted_to_find_the_loss(eager, pair) -> None:
    connection, peer, reactor = pair
    peer.close()
    connection.write(b"x" * 10)  # the first send may still succeed into the kernel's buffer
    for _ in range(5):
        connection.write(b"y" * 100_000)
    assert connection in reactor.getWriters()  # doWrite will meet the error and close as usual
    assert isinstance(connection.doWrite(), Exception)

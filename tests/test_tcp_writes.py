"""sessions_app.tcp_writes: a Twisted TCP connection sends what one loop turn wrote with one send, without
registering the socket as a writer, and never reorders or loses bytes when the kernel takes only part of them
(real sockets, Twisted's asyncio reactor on a loop the test turns by hand)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop
from twisted.internet import asyncioreactor, protocol, tcp

from sessions_app.tcp_writes import deferred_tcp_writes, twisted_writes


@pytest.fixture
def deferred():
    deferred_tcp_writes()
    yield
    twisted_writes()


class Sends:
    """Counts the connection's sends (its `writeSomeData` calls)."""

    def __init__(self, connection: tcp.Connection) -> None:
        self.count = 0
        original = connection.writeSomeData

        def counted(data):
            self.count += 1
            return original(data)

        connection.writeSomeData = counted


@pytest.fixture(params=["asyncio", "uvloop"])
def pair(request):
    """A Twisted connection over one end of a real socket pair, on an asyncio reactor whose loop is not running:
    the standard library's loop, and uvloop (what `python -m sessions_app.serve` runs on, event_loop.py)."""
    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    reactor = asyncioreactor.AsyncioSelectorReactor(loop)
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    connection = tcp.Connection(ours, protocol.Protocol(), reactor)
    connection.connected = True
    yield connection, peer, reactor, loop
    reactor.removeAll()
    ours.close()
    peer.close()
    loop.close()


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    """Run what is ready on the loop (one turn)."""
    loop.run_until_complete(asyncio.sleep(0))


def _read(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(5)
    received = b""
    while len(received) < size:
        received += peer.recv(65536)
    return received


def test_a_turns_frames_go_out_in_one_send_without_a_writer(deferred, pair) -> None:
    connection, peer, reactor, loop = pair
    sends = Sends(connection)
    connection.write(b"frame one")
    connection.write(b"frame two")
    assert sends.count == 0  # collected until the turn ends
    assert connection not in reactor.getWriters()  # no epoll_ctl for it, before or after
    _turn(loop)
    assert sends.count == 1
    assert connection not in reactor.getWriters()
    assert _read(peer, 18) == b"frame oneframe two"
    connection.write(b"next turn")
    _turn(loop)
    assert sends.count == 2 and _read(peer, 9) == b"next turn"


def test_twisteds_own_write_waits_for_a_writer(pair) -> None:
    connection, peer, reactor, loop = pair
    connection.write(b"frame")
    assert connection in reactor.getWriters()  # what the deferred write saves: epoll_ctl, a poll, epoll_ctl


def test_what_the_kernel_does_not_take_waits_in_order_for_the_reactor(deferred, pair) -> None:
    connection, peer, reactor, loop = pair
    big = bytes(range(256)) * 40_000  # 10 MB: far more than the socket buffers hold
    connection.write(big)
    _turn(loop)
    assert connection in reactor.getWriters()  # the rest waits, the usual Twisted way
    connection.write(b"after")  # behind it in Twisted's buffer, never sent ahead of it
    _turn(loop)
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


def test_bytes_written_before_lose_connection_go_out_first(deferred, pair) -> None:
    connection, peer, reactor, loop = pair
    connection.write(b"last words")
    connection.loseConnection()  # Twisted closes once its buffer is empty (doWrite)
    _turn(loop)  # the collected bytes are sent before the loop polls again
    assert _read(peer, 10) == b"last words"


def test_bytes_written_then_closed_within_one_callback_go_out_first(deferred, pair) -> None:
    """What an application does from a task (a refusal sent, then the connection closed): on uvloop the
    writer Twisted registers on close runs inside the next poll, before the callback that sends what was
    collected, so the close itself sends it first."""
    connection, peer, reactor, loop = pair

    def answer_and_close() -> None:
        connection.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        connection.loseConnection()

    loop.call_soon(answer_and_close)
    for _ in range(3):
        _turn(loop)
    assert not connection.connected
    peer.settimeout(5)
    received = b""
    while chunk := peer.recv(65536):
        received += chunk
    assert received == b"HTTP/1.1 403 Forbidden\r\n\r\n"


def test_a_half_close_sends_what_was_collected_first(deferred, pair) -> None:
    connection, peer, reactor, loop = pair
    loop.call_soon(lambda: (connection.write(b"all of it"), connection.loseWriteConnection()))
    for _ in range(3):
        _turn(loop)
    peer.settimeout(5)
    assert peer.recv(65536) == b"all of it" and peer.recv(65536) == b""


def test_bytes_written_after_lose_connection_go_out_before_the_close(deferred, pair) -> None:
    connection, peer, reactor, loop = pair
    connection.loseConnection()
    connection.write(b"after the close was asked")  # Twisted's path: doWrite sends it, then closes
    connection.doWrite()
    assert _read(peer, 25) == b"after the close was asked"


def test_a_lost_connection_is_closed_the_usual_way(deferred, pair) -> None:
    connection, peer, reactor, loop = pair
    lost = []
    connection.protocol.connectionLost = lost.append
    peer.close()
    for _ in range(5):  # the first sends may still land in the kernel's buffer
        connection.write(b"y" * 100_000)
        _turn(loop)
    assert not connection.connected and lost  # Twisted's doWrite met the error and closed it
    assert connection not in reactor.getWriters()

"""An upstream that speaks before it is asked is a clear `UpstreamProtocolError` on both event loops
(upstream/socket.py): websockets 15 alone fails an internal assertion when the bytes arrive before its
handshake sends the request, which is how uvloop (what Daphne runs on, event_loop.py) delivers them."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading

import pytest
import uvloop

from sessions_app.upstream import UpstreamTarget
from sessions_app.upstream.socket import UpstreamProtocolError, open_upstream

BANNERS = (b"SSH-2.0-OpenSSH_9.2p1\r\n", b"220 mail.example ESMTP\r\n", b"\x16\x03\x01 not HTTP\r\n\r\n")


@pytest.fixture
def banner_server():
    """A TCP server on its own thread that writes a banner the moment it accepts, then reads until the client
    hangs up: (its URL, how many connections it saw end)."""
    listener = socket.create_server(("127.0.0.1", 0))
    ended: list[int] = []

    def serve() -> None:
        for attempt in itertools.count():
            try:
                peer, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with peer:
                peer.sendall(BANNERS[attempt % len(BANNERS)])
                while peer.recv(65536):
                    pass
            ended.append(attempt)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}/v1/responses", ended
    listener.shutdown(socket.SHUT_RDWR)  # wakes the thread's accept
    listener.close()
    thread.join(5)
    assert not thread.is_alive()


async def _open_against(url: str, ended: list[int]) -> list[str]:
    messages = []
    for attempt in range(12):
        with pytest.raises(UpstreamProtocolError) as raised:
            await open_upstream(UpstreamTarget(url=url), open_timeout=5)
        messages.append(str(raised.value))
        for _ in range(500):  # the relay's side hung up: the server saw the end of its connection
            if len(ended) > attempt:
                break
            await asyncio.sleep(0.01)
        assert len(ended) == attempt + 1
    return messages


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_an_upstream_that_speaks_first_is_a_protocol_error(banner_server, loop_factory) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        messages = runner.run(_open_against(*banner_server))
    assert set(messages) == {"The upstream handshake was invalid (InvalidMessage)."}

"""sessions_app.ws_send: Daphne's text messages framed in one step put autobahn's own bytes on the wire, move its
counters the same way, and leave every case they do not cover (compression, a queued send, a message over the
limit, a binary message) to autobahn's path. Daphne's protocol on Twisted's StringTransport, as autobahn's own
tests drive it; tests/live.py's Daphne (`python -m sessions_app.serve`) runs the path end to end for the rest of
the suite."""

from __future__ import annotations

import pytest
from autobahn.exception import PayloadExceededError
from autobahn.websocket.compress import PerMessageDeflate
from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketFactory
from twisted.internet.testing import StringTransport

from sessions_app.ws_send import autobahn_text_sends, frame_header, framed_text_sends

# Each length form of RFC 6455 §5.2 at its edges: 7-bit, 16-bit, 64-bit; and text that is not ASCII.
TEXTS = ["", "a", "x" * 125, "x" * 126, "é" * 70, "x" * 65535, "x" * 65536, "🦜" * 20_000]
COUNTERS = ("outgoingWebSocketMessages", "outgoingOctetsAppLevel", "outgoingOctetsWebSocketLevel",
            "outgoingWebSocketFrames", "outgoingOctetsWireLevel")


@pytest.fixture
def protocol():
    """An open server connection of Daphne's protocol (no handshake: autobahn checks only the state)."""
    factory = WebSocketFactory(server_class=None)
    connection = factory.buildProtocol(("127.0.0.1", 1))
    connection.makeConnection(StringTransport())
    connection.state = AutobahnProtocol.STATE_OPEN
    connection.client_addr = ["127.0.0.1", 1]  # Daphne sets it when the handshake arrives
    yield connection
    autobahn_text_sends()


def sent(connection, text: str, *, framed: bool) -> tuple[bytes, dict[str, int]]:
    framed_text_sends() if framed else autobahn_text_sends()
    before = {name: getattr(connection.trafficStats, name) for name in COUNTERS}
    connection.transport.clear()
    connection.serverSend(text)
    moved = {name: getattr(connection.trafficStats, name) - before[name] for name in COUNTERS}
    return connection.transport.value(), moved


@pytest.mark.parametrize("text", TEXTS, ids=lambda text: f"{len(text.encode())}B")
def test_the_bytes_and_counters_are_autobahn_s(protocol, text) -> None:
    wire, counted = sent(protocol, text, framed=True)
    assert (wire, counted) == sent(protocol, text, framed=False)
    payload = text.encode()
    assert wire == frame_header(len(payload)) + payload and wire[0] == 0x81  # FIN, text; unmasked below
    assert wire[1] & 0x80 == 0


def test_a_compressed_connection_keeps_autobahn_s_path(protocol) -> None:
    protocol._perMessageCompress = PerMessageDeflate(
        is_server=True, server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=15, client_max_window_bits=15, mem_level=8)
    wire, _ = sent(protocol, "hello " * 50, framed=True)
    assert wire[0] == 0xC1  # RSV1: compressed, as autobahn does it
    assert len(wire) < 300


def test_a_send_queued_before_goes_first(protocol) -> None:
    """autobahn queued bytes (a chopped or synchronous send): a later message queues behind them, not ahead."""
    framed_text_sends()
    protocol.send_queue.append((b"queued", False))
    protocol.serverSend("after")
    wire = protocol.transport.value() + b"".join(data for data, _ in protocol.send_queue)  # sent, then still queued
    assert wire == b"queued" + frame_header(5) + b"after"


def test_a_message_over_the_limit_is_refused_as_before(protocol) -> None:
    framed_text_sends()
    protocol.maxMessagePayloadSize = 10
    with pytest.raises(PayloadExceededError):
        protocol.serverSend("x" * 11)
    assert protocol.transport.value() == b""


def test_a_closed_connection_is_autobahn_s_to_refuse(protocol) -> None:
    framed_text_sends()
    protocol.state = AutobahnProtocol.STATE_CLOSED
    with pytest.raises(Exception, match="closed protocol"):
        protocol.serverSend("late")
    assert protocol.transport.value() == b""


def test_binary_messages_keep_autobahn_s_path(protocol) -> None:
    framed_text_sends()
    protocol.serverSend(b"\x00\x01", binary=True)
    assert protocol.transport.value() == b"\x82\x02\x00\x01"

"""Daphne's text messages, framed in one step: a header and one transport write per message.

Daphne sends a text message through autobahn's general path: `serverSend` → `sendMessage` (type asserts,
compression and fragmentation set-up) → `sendFrame` (the header built bit by bit, masking considered) →
`sendData` (a send queue, a debug line's arguments). For a relay, which sends every upstream event as its
own small text message, those layers were about a sixth of a busy Daphne's samples (py-spy, bench/relay.py's
chain load). `framed_text_sends` puts a direct path in front of them for the one case a relay sends all day;
everything else takes autobahn's path unchanged.

Rules:

* Only a text message on an open connection, with no per-message compression negotiated, nothing waiting in
  autobahn's send queue, no automatic fragmentation, no timing or frame/octet logging and unmasked server
  frames (autobahn's and Daphne's defaults) takes the direct path. A message over autobahn's
  `maxMessagePayloadSize` takes autobahn's path, which refuses it as before.
* The bytes on the wire are autobahn's own: one unfragmented frame, FIN set, opcode 1, no mask, the
  7-bit / 16-bit / 64-bit length form by size (tests/test_ws_send.py compares them for every form).
* autobahn's traffic counters move as they would, and Daphne's debug line is written when its logger is on.
"""

from __future__ import annotations

import logging

from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketProtocol

__all__ = ["autobahn_text_sends", "framed_text_sends"]

_daphne_server_send = WebSocketProtocol.serverSend
_daphne_logger = logging.getLogger("daphne.ws_protocol")
_OPEN = AutobahnProtocol.STATE_OPEN
_TEXT_FIN = 0x81


def frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of `length` payload bytes (RFC 6455 §5.2)."""
    if length <= 125:
        return bytes((_TEXT_FIN, length))
    if length <= 0xFFFF:
        return bytes((_TEXT_FIN, 126)) + length.to_bytes(2, "big")
    return bytes((_TEXT_FIN, 127)) + length.to_bytes(8, "big")


def _server_send(self: WebSocketProtocol, content, binary: bool = False) -> None:
    if (binary or self.state != _OPEN or self._perMessageCompress is not None or self.send_queue
            or self.autoFragmentSize or self.trackedTimings or self.logFrames or self.logOctets
            or self.maskServerFrames):
        return _daphne_server_send(self, content, binary)
    payload = content.encode("utf8")
    length = len(payload)
    if 0 < self.maxMessagePayloadSize < length:
        return _daphne_server_send(self, content, binary)
    if _daphne_logger.isEnabledFor(logging.DEBUG):
        _daphne_logger.debug("Sent WebSocket packet to client for %s", self.client_addr)
    data = frame_header(length) + payload
    stats = self.trafficStats
    stats.outgoingWebSocketMessages += 1
    stats.outgoingOctetsAppLevel += length
    stats.outgoingOctetsWebSocketLevel += length
    stats.outgoingWebSocketFrames += 1
    stats.outgoingOctetsWireLevel += len(data)
    self.transport.write(data)


def framed_text_sends() -> None:
    """Install the direct path on Daphne's WebSocket protocol (module rules); idempotent."""
    WebSocketProtocol.serverSend = _server_send


def autobahn_text_sends() -> None:
    """Put Daphne's own `serverSend` back (tests)."""
    WebSocketProtocol.serverSend = _daphne_server_send

"""sessions_app.serve's tuning of autobahn: debug arguments are formatted plainly (no click colouring per frame)."""

from __future__ import annotations

from autobahn.websocket import protocol

from sessions_app import serve


def test_autobahn_debug_arguments_are_plain_text_after_quieting(monkeypatch) -> None:
    monkeypatch.setattr(protocol, "hltype", protocol.hltype)
    monkeypatch.setattr(protocol, "hlval", protocol.hlval)
    assert "\x1b[" in protocol.hlval(123)  # autobahn's own: ANSI colour codes, built for every frame sent
    serve.quiet_autobahn()
    assert protocol.hlval(123) == "123"
    assert protocol.hltype(protocol.WebSocketProtocol.sendData) == "WebSocketProtocol.sendData"

"""sessions_app.serve's tuning of autobahn: debug arguments are formatted plainly (no click colouring per frame)."""

from __future__ import annotations

from autobahn.twisted import websocket
from autobahn.websocket import protocol

from sessions_app import serve


def test_autobahn_debug_arguments_are_plain_text_after_quieting(monkeypatch) -> None:
    for module in (protocol, websocket):
        monkeypatch.setattr(module, "hltype", module.hltype)
        monkeypatch.setattr(module, "hlval", module.hlval)
    assert "\x1b[" in protocol.hlval(123)  # autobahn's own: ANSI colour codes, built for every frame sent
    serve.quiet_autobahn()
    for module in (protocol, websocket):  # the protocol, and its Twisted adapter (per frame received)
        assert module.hlval(123) == "123"
        assert module.hltype(protocol.WebSocketProtocol.sendData) == "WebSocketProtocol.sendData"


def test_autobahn_formats_a_socket_s_settings_only_when_its_debug_line_is_written(monkeypatch) -> None:
    monkeypatch.setattr(protocol, "pformat", protocol.pformat)
    monkeypatch.setattr(protocol.Timings, "__str__", protocol.Timings.__str__)
    serve.quiet_autobahn()
    settings = [("openHandshakeTimeout", 5, "WebSocketServerFactory")]
    deferred = protocol.pformat(settings)
    assert not isinstance(deferred, str)
    text = "[('openHandshakeTimeout', 5, 'WebSocketServerFactory')]"
    assert str(deferred) == "{}".format(deferred) == text  # noqa: UP032 - txaio formats its lines with str.format
    timings = protocol.Timings()
    timings.track("onOpen")
    assert str(timings).startswith("{'onOpen':")

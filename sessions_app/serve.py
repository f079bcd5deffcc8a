"""Daphne with a graceful drain: ``python -m sessions_app.serve`` takes Daphne's own arguments.

Plain ``daphne`` cancels every application instance the moment it stops,
which would cut responses mid-stream. This entry point first stops
listening, then runs ``lifecycle.drain`` (bounded by SWITCHBOARD_DRAIN_SECONDS)
and the recorder's shutdown (bounded by SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS: records
held through a database outage), and only then lets Daphne cancel what is left.

Daphne's own message limit is raised well above the relay's (`websocket_message_limit`), so a
frame over SWITCHBOARD_MAX_FRAME_BYTES is answered `frame_too_large` by the relay instead of
dropping the socket; beyond Daphne's limit the socket is closed with 1009 and a reason.

It also tunes the garbage collector for a relay: what exists once the
application is loaded is frozen out of collections, and young collections
run every 10,000 allocations instead of 700. bench/relay.py (one run each,
PostgreSQL): collector time 340-410 ms per run with the defaults, 130-160 ms
tuned; its pauses land in the middle of streams.

And it stops autobahn (26.11) from dressing up debug lines nobody reads: `WebSocketProtocol.sendData`
builds the arguments of a `log.debug` line for every frame sent, and two of them colour text with
click (`hltype`, `hlval`: about 4 µs a frame, ~11 % of a busy Daphne's samples in bench/capacity.py)
before the logger drops the line. `quiet_autobahn` makes them plain `str` in autobahn's protocol
module; a debug line, if anyone turns autobahn's debug logging on, reads the same, uncoloured. Each new
socket's debug line of its 29 settings is `pformat`ted (about 180 µs) whether written or not: there
the formatting waits until the line is written.

And its TCP connections send what a loop turn wrote with one send at the end of that turn, instead of
registering the socket as a writer and sending on the next turn (tcp_writes.py).

And a text message is framed in one step, with one transport write, instead of through autobahn's general
send path (ws_send.py).

And after its own close frame it waits up to 10 s (CLOSE_HANDSHAKE_SECONDS, as the `websockets` library
does) for the client's, not autobahn's 1 s. Autobahn then resets the connection, and a client whose reader
came late loses what it had not yet read: the `websockets` sync client, which the `openai` SDK uses, drops
the frames of a read whose close reply it could not send, so a socket refused after its handshake (the
socket limit: an `error` event, then 4429) reached a reader stalled 1.5 s as a bare 4429.

And it runs on uvloop unless SWITCHBOARD_EVENT_LOOP says otherwise (event_loop.py): chosen at the top of
this module when it runs as the program, because importing Daphne's server creates the loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
from http import HTTPStatus
from pprint import pformat

from .event_loop import choose_event_loop_or_exit

if __name__ == "__main__":  # before Daphne's server module creates the loop Twisted runs on (event_loop.py)
    choose_event_loop_or_exit("Switchboard")

from daphne.cli import CommandLineInterface  # noqa: E402
from daphne.server import Server  # noqa: E402
from daphne.ws_protocol import WebSocketProtocol  # noqa: E402
from twisted.internet import defer  # noqa: E402

from .tcp_writes import deferred_tcp_writes  # noqa: E402
from .ws_send import framed_text_sends  # noqa: E402

# Close codes a server may send (RFC 6455 §7.4.1, IANA) that autobahn's sendClose refuses
# (it allows only 1000 and 3000-4999). The drain closes browsers with 1012 (service restart).
SERVER_CLOSE_CODES = frozenset({1001, 1011, 1012, 1013})
GC_THRESHOLDS = (10_000, 10, 10)
CLOSE_HANDSHAKE_SECONDS = 10
DAPHNE_MESSAGE_FLOOR = 8 * 1024 * 1024
_daphne_server_close = WebSocketProtocol.serverClose
_daphne_handle_reply = WebSocketProtocol.handle_reply
DENIAL_EXTENSION = "websocket.http.response"


def _server_close(self, code=None) -> None:
    if code in SERVER_CLOSE_CODES:
        self.sendCloseFrame(code=code, isReply=False)
    else:
        _daphne_server_close(self, code)


def websocket_message_limit(relay_limit: int, requested: int = 0) -> int:
    """Daphne's own limit on an incoming message (and frame): well above the relay's, so a frame over
    the relay's limit still reaches the relay, which answers `frame_too_large` and keeps the socket.

    Beyond it autobahn fails the connection with 1009 (message too big) and a reason; `failByDrop`
    is turned off (`listen_success`) so that is a close frame, not a dropped TCP connection (1006).
    A larger `--websocket-max-message-size` is kept; a smaller one (Daphne's default is 1 MiB) or 0
    (no limit at all) is raised to this floor.
    """
    return max(requested, 4 * relay_limit, DAPHNE_MESSAGE_FLOOR)


def _handle_reply(self, message) -> None:
    """Daphne's, plus the ASGI "websocket.http.response" extension: before the handshake is
    answered, `websocket.http.response.start` then `.body` refuse it with that HTTP status, headers
    and body (Daphne 4.2.3 knows only accept, which it answers 101, and close, which it answers 403)."""
    kind = message.get("type")
    if kind == "websocket.http.response.start" and hasattr(self, "handshake_deferred"):
        self.switchboard_denial = (int(message["status"]), list(message.get("headers", [])), [])
    elif kind == "websocket.http.response.body" and getattr(self, "switchboard_denial", None):
        status, headers, body = self.switchboard_denial
        body.append(bytes(message.get("body", b"")))
        if not message.get("more_body"):
            self.switchboard_denial = None
            del self.handshake_deferred  # autobahn's handshake waits on it no more: the answer is sent here
            _deny(self, status, headers, b"".join(body))
    else:
        _daphne_handle_reply(self, message)


def _deny(protocol, status: int, headers: list, body: bytes) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Length: {len(body)}", "Connection: close"]
    for name, value in headers:
        name, value = bytes(name).decode("latin1"), bytes(value).decode("latin1")
        if name.lower() not in ("content-length", "connection") and not {"\r", "\n"} & set(name + value):
            lines.append(f"{name}: {value}")
    protocol.wasNotCleanReason = f"handshake refused with HTTP {status}"
    protocol.sendData(("\r\n".join(lines) + "\r\n\r\n").encode("latin1") + body)
    protocol.dropConnection(abort=False)


class DrainingServer(Server):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._ports: list = []
        from django.conf import settings

        limit = websocket_message_limit(settings.SWITCHBOARD_MAX_FRAME_BYTES, self.websocket_max_message_size)
        self.websocket_max_message_size = self.websocket_max_frame_size = limit

    def run(self) -> None:
        gc.collect()
        gc.freeze()  # the loaded application: never garbage, never scanned again
        gc.set_threshold(*GC_THRESHOLDS)
        super().run()

    def create_application(self, protocol, scope):
        if scope.get("type") == "websocket":  # _handle_reply answers the denial extension's messages
            scope = {**scope, "extensions": {**scope.get("extensions", {}), DENIAL_EXTENSION: {}}}
        return super().create_application(protocol, scope)

    def listen_success(self, port) -> None:
        self._ports.append(port)
        # Before the reactor accepts anyone: a message over the limit is answered with a close frame, and
        # after a close frame of ours the client has CLOSE_HANDSHAKE_SECONDS to answer it (module docstring).
        self.ws_factory.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=CLOSE_HANDSHAKE_SECONDS)
        super().listen_success(port)

    def kill_all_applications(self):
        from django.conf import settings

        for port in self._ports:
            port.stopListening()
        future = asyncio.ensure_future(_drain(settings.SWITCHBOARD_DRAIN_SECONDS))
        drained = defer.Deferred.fromFuture(future)
        drained.addBoth(lambda _: super(DrainingServer, self).kill_all_applications())
        return drained


async def _drain(seconds: float) -> None:
    """The relay's drain, then the recorder's: what it still holds is written, or, if the database stays
    unavailable past SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS, logged as lost (recording/writer.py)."""
    from .live import lifecycle
    from .recording import shutdown

    await lifecycle.drain(seconds)
    await shutdown()


class SwitchboardCommandLine(CommandLineInterface):
    server_class = DrainingServer


def _plain_name(value, *args, **kwargs) -> str:
    return getattr(value, "__qualname__", None) or str(value)


def _plain_value(value, *args, **kwargs) -> str:
    return str(value)


class _FormattedWhenRead:
    """`pformat(value)`, made only if a log line is written (`str`, `format`)."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __str__(self) -> str:
        return pformat(self.value)

    __repr__ = __str__


def _timings_text(timings) -> str:
    return pformat(timings._timings)


def quiet_autobahn() -> None:
    """See the module rules: autobahn's protocol module formats its debug arguments plainly, and lazily."""
    from autobahn.twisted import websocket
    from autobahn.websocket import protocol

    protocol.hltype, protocol.hlval = _plain_name, _plain_value
    websocket.hltype, websocket.hlval = _plain_name, _plain_value  # its adapter: per frame received, too
    protocol.pformat = _FormattedWhenRead  # its one other caller, Timings.__str__, must return a str:
    protocol.Timings.__str__ = _timings_text


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from .startup import refuse_unsafe_start

    refuse_unsafe_start()  # e.g. the demo password with DEBUG off: exit before listening
    WebSocketProtocol.serverClose = _server_close
    WebSocketProtocol.handle_reply = _handle_reply
    quiet_autobahn()
    deferred_tcp_writes()
    framed_text_sends()
    SwitchboardCommandLine.entrypoint()


if __name__ == "__main__":
    main()

"""Daphne with a graceful drain: ``python -m sessions_app.serve`` takes Daphne's own arguments.

Plain ``daphne`` cancels every application instance the moment it stops,
which would cut responses mid-stream. This entry point first stops
listening, then runs ``lifecycle.drain`` (bounded by SWITCHBOARD_DRAIN_SECONDS)
and only then lets Daphne cancel what is left.

It also tunes the garbage collector for a relay: what exists once the
application is loaded is frozen out of collections, and young collections
run every 10,000 allocations instead of 700. bench/relay.py (one run each,
PostgreSQL): collector time 340-410 ms per run with the defaults, 130-160 ms
tuned; its pauses land in the middle of streams.
"""

from __future__ import annotations

import asyncio
import gc
import os

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer

# Close codes a server may send (RFC 6455 §7.4.1, IANA) that autobahn's sendClose refuses
# (it allows only 1000 and 3000-4999). The drain closes browsers with 1012 (service restart).
SERVER_CLOSE_CODES = frozenset({1001, 1011, 1012, 1013})
GC_THRESHOLDS = (10_000, 10, 10)
_daphne_server_close = WebSocketProtocol.serverClose


def _server_close(self, code=None) -> None:
    if code in SERVER_CLOSE_CODES:
        self.sendCloseFrame(code=code, isReply=False)
    else:
        _daphne_server_close(self, code)


class DrainingServer(Server):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._ports: list = []

    def run(self) -> None:
        gc.collect()
        gc.freeze()  # the loaded application: never garbage, never scanned again
        gc.set_threshold(*GC_THRESHOLDS)
        super().run()

    def listen_success(self, port) -> None:
        self._ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self):
        from django.conf import settings

        from . import lifecycle

        for port in self._ports:
            port.stopListening()
        future = asyncio.ensure_future(lifecycle.drain(settings.SWITCHBOARD_DRAIN_SECONDS))
        drained = defer.Deferred.fromFuture(future)
        drained.addBoth(lambda _: super(DrainingServer, self).kill_all_applications())
        return drained


class SwitchboardCommandLine(CommandLineInterface):
    server_class = DrainingServer


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from .startup import refuse_unsafe_start

    refuse_unsafe_start()  # e.g. the demo password with DEBUG off: exit before listening
    WebSocketProtocol.serverClose = _server_close
    SwitchboardCommandLine.entrypoint()


if __name__ == "__main__":
    main()

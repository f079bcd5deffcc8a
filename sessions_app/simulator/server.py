"""The simulator's sockets: a `websockets` server on `/v1/responses` plus one HTTP route.

Rules:

* Upgrade requests must target `/v1/responses` (any query string; 404
  otherwise) and pass the API-key check of httpapi.py (401 otherwise).
  No subprotocol is needed; frames up to 16 MiB; no compression (the SDK
  disables it too).
* `websockets` only parses GET requests, so `SimulatorConnection` looks at
  the first bytes of each TCP connection: anything but `GET ` is read as a
  plain HTTP/1.1 request with a Content-Length body, answered by
  httpapi.compact_endpoint, and closed. A connection closed before its
  first byte is a port probe (Switchboard's /healthz): no handshake, no log.
* Each accepted socket gets an engine `Session`; this module only moves
  frames between them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .engine import Session, SessionSettings, SocketClosed
from .httpapi import RESPONSES_PATH, auth_failure, compact_endpoint, json_bytes
from .store import ResponseStore

__all__ = ["SimulatorConfig", "Simulator"]

MAX_FRAME_BYTES = 16 * 2**20
MAX_HTTP_BODY = 16 * 2**20
RECORDED = 10_000  # frames and handshakes kept for tests to inspect


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    tokens_per_second: float = 40.0  # 0: no pacing at all
    connection_limit_seconds: float = 3600.0
    require_key: str | None = None
    fd: int | None = None  # a listening socket to adopt (as Daphne's --fd) instead of binding host:port


class SimulatorConnection(ServerConnection):
    """A server connection that also answers one plain HTTP request (see module rules)."""

    simulator: Simulator  # set on the per-simulator subclass

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sniffed = b""
        self._http: bytearray | None = None
        self._continued = False
        self._http_started: asyncio.Future[None] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self._http is not None:
            self._http.extend(data)
            self._maybe_answer_http()
            return
        if self.request is None and self._sniffed is not None:
            self._sniffed += data
            if len(self._sniffed) < 4:
                return
            data, self._sniffed = self._sniffed, None
            if not data.startswith(b"GET "):
                self._http = bytearray(data)
                self._http_started.set_result(None)
                self._maybe_answer_http()
                return
        super().data_received(data)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.wait(
            [self.request_rcvd, self.connection_lost_waiter, self._http_started],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._http_started.done():
            # Plain HTTP: the answer is written by data_received; wait for the close.
            await self.connection_lost_waiter
            return
        if self.connection_lost_waiter.done() and self._sniffed == b"":
            return  # connected and closed without a byte: a port probe (Switchboard's /healthz), not a failed handshake
        await super().handshake(*args, **kwargs)

    def _maybe_answer_http(self) -> None:
        assert self._http is not None
        head_end = self._http.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = bytes(self._http[:head_end]).decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            self._write_http(400, {"error": {"message": "Malformed request line.", "type": "invalid_request_error",
                                             "param": None, "code": None}})
            return
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        try:
            length = int(headers.get("Content-Length", "0") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_HTTP_BODY:
            self._write_http(413, {"error": {"message": "Missing, invalid or too large Content-Length.", "type": "invalid_request_error",
                                             "param": None, "code": None}})
            return
        body = bytes(self._http[head_end + 4:])
        if len(body) < length:
            if headers.get("Expect", "").lower() == "100-continue" and not self._continued:
                self._continued = True  # curl waits for this before sending a large body
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        sim = self.simulator
        status, payload = compact_endpoint(
            method=method, path=target, headers=headers, body=body[:length],
            store=sim.store, require_key=sim.config.require_key,
        )
        self._write_http(status, payload)

    def _write_http(self, status: int, payload: dict[str, Any]) -> None:
        body = json_bytes(payload)
        reason = HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self._http = bytearray()  # ignore anything else the client sends
        self.transport.write(head.encode() + body)
        self.transport.close()


class Simulator:
    """An in-process Responses WebSocket upstream; `async with Simulator(config) as sim:`."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.store = ResponseStore()
        self.connections_opened = 0
        #: Client frames as received (text, in order, all connections): lets a relay's
        #: tests check what was forwarded upstream, byte for byte.
        self.received_frames: deque[str | bytes] = deque(maxlen=RECORDED)
        #: Path and headers (names lower-cased) of every accepted or rejected upgrade request.
        self.handshakes: deque[tuple[str, dict[str, str]]] = deque(maxlen=RECORDED)
        self._sessions: set[ServerConnection] = set()
        self._server: Server | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> Simulator:
        connection_class = type("BoundSimulatorConnection", (SimulatorConnection,), {"simulator": self})
        where: dict[str, Any] = ({"sock": socket.socket(fileno=self.config.fd)} if self.config.fd is not None
                                 else {"host": self.config.host, "port": self.config.port})
        self._server = await serve(
            self._handle,
            **where,
            process_request=self._process_request,
            create_connection=connection_class,
            max_size=MAX_FRAME_BYTES,
            compression=None,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Run until cancelled (the command cancels on SIGINT/SIGTERM)."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "start the simulator first"
        return self._server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{RESPONSES_PATH}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        return len(self._sessions)

    def abort_connections(self) -> int:
        """Cut every open socket without a close frame (clients see 1006); returns how many."""
        sockets = list(self._sessions)
        for connection in sockets:
            connection.transport.abort()
        return len(sockets)

    # -- websockets hooks ------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append((request.path, {k.lower(): v for k, v in request.headers.raw_items()}))
        if request.path.split("?", 1)[0] != RESPONSES_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        failure = auth_failure(request.headers, self.config.require_key)
        if failure is not None:
            body = json_bytes(failure)
            headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return Response(401, "Unauthorized", headers, body)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        async def send(event: dict[str, Any]) -> None:
            try:
                await connection.send(json.dumps(event))
            except ConnectionClosed as exc:
                raise SocketClosed() from exc

        async def close(code: int, reason: str) -> None:
            await connection.close(code, reason)

        session = Session(
            store=self.store,
            settings=SessionSettings(
                tokens_per_second=self.config.tokens_per_second,
                connection_limit_seconds=self.config.connection_limit_seconds,
            ),
            send=send,
            close=close,
            abort=connection.transport.abort,
        )
        self.connections_opened += 1
        self._sessions.add(connection)
        try:
            async for frame in connection:
                self.received_frames.append(frame)
                await session.receive(frame)
        except (ConnectionClosed, SocketClosed):
            pass
        finally:
            self._sessions.discard(connection)
            await session.shutdown()

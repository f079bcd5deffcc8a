"""Relay fixtures: an in-process simulator, the default profile pointed at it, and socket helpers.

Sockets go through the real ASGI application (project.asgi: routing, origin
check, session or token auth, consumers) with Channels' WebsocketCommunicator;
the upstream is the real simulator on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pydantic
import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client
from openai.types.responses import ResponsesServerEvent

from sessions_app.recording import pg as recording_pg
from sessions_app.simulator import Simulator, SimulatorConfig
from tests.db_connections import close_input_thread_connections

SECRET_KEY = "sk-switchboard-relay-test-secret-7c1f9e"
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
ADAPTER = pydantic.TypeAdapter(ResponsesServerEvent)
db = database_sync_to_async


def validated(event: dict[str, Any]) -> dict[str, Any]:
    """Protocol events must validate against the SDK's union; switchboard.* events are ours."""
    if not event["type"].startswith("switchboard."):
        ADAPTER.validate_python(event)
    return event


class Socket:
    """A client socket on the real ASGI app; every frame it receives is kept in `frames`."""

    def __init__(self, communicator: WebsocketCommunicator, *, requests: bool = False) -> None:
        self.communicator = communicator
        self.frames: list[str] = []
        # switchboard.request echoes each accepted create to the conversation's watchers (the sender too);
        # tests about a response's own events skip it unless they ask for it.
        self.requests = requests

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.communicator.send_to(text_data=event if isinstance(event, str) else json.dumps(event))

    async def recv(self, within: float = 10.0) -> dict[str, Any]:
        while True:
            message = await self.communicator.receive_output(within)
            if message["type"] == "websocket.close":
                raise ConnectionError(f"closed with {message.get('code')}")
            self.frames.append(message["text"])
            event = validated(json.loads(message["text"]))
            if self.requests or event["type"] != "switchboard.request":
                return event

    async def until(self, done: Callable[[dict[str, Any]], bool], within: float = 10.0) -> list[dict[str, Any]]:
        """Receive until an event satisfies `done` (included)."""
        events = []
        while True:
            event = await self.recv(within)
            events.append(event)
            if done(event):
                return events

    async def turn(self, input: Any, **fields: Any) -> list[dict[str, Any]]:  # noqa: A002
        """Send a create and receive until its terminal event (or error), ignoring control events."""
        await self.send({"type": "response.create", "input": input, **fields})
        lane = fields.get("stream_id")
        return await self.until(lambda e: (e["type"] in TERMINAL or e["type"] == "error")
                                and e.get("stream_id") == lane)

    async def close(self) -> None:
        if not getattr(self, "closed", False):
            self.closed = True
            try:
                await self.communicator.disconnect()
            except asyncio.CancelledError:
                # The application was already cancelled (a receive timed out and asgiref cancelled it): the
                # socket is gone. CancelledError is a BaseException, and one escaping a fixture's teardown
                # stops pytest's other teardowns (the database flush), which would fail every later test.
                pass


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def final(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in reversed(events) if e["type"] in TERMINAL or e["type"] == "error")


@pytest_asyncio.fixture(autouse=True)
async def close_db_connections():
    """The relay's database threads keep their connections (CONN_MAX_AGE): close them, or
    PostgreSQL refuses to drop the test database at the end of the run."""
    yield
    await db(connections.close_all)()
    await asyncio.to_thread(close_input_thread_connections)
    recording_pg.close_all()  # on the loop its connections belong to


@pytest.fixture(autouse=True)
def no_idle_grace(settings):
    """Close a conversation's upstream socket as soon as its last browser left (and nothing is in
    flight), so tests read final records right after closing; tests/resilience covers the grace."""
    settings.SWITCHBOARD_UPSTREAM_IDLE_SECONDS = 0


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    """Override in a test module (or parametrize) to configure the simulator."""
    return {}


@pytest_asyncio.fixture
async def sim(simulator_config) -> AsyncIterator[Simulator]:
    config = {"host": "127.0.0.1", "port": 0, "tokens_per_second": 0, "require_key": SECRET_KEY,
              **simulator_config}
    async with Simulator(SimulatorConfig(**config)) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def profile(sim, transactional_db):
    """The default upstream profile, pointed at the simulator, with a recognisable API key."""
    from sessions_app.services import default_profile_sync

    def setup():
        profile = default_profile_sync()
        profile.websocket_url = sim.url
        profile.set_api_key(SECRET_KEY)
        profile.save()
        return profile

    return await db(setup)()


@pytest.fixture
def conversation_of(transactional_db):
    from sessions_app.services import conversation_create

    def make(owner, **fields):
        return conversation_create(owner=owner, **fields)

    return db(make)


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest_asyncio.fixture
async def open_browser():
    """open_browser(user, conversation) -> Socket, attached (history and status already received)."""
    from project.asgi import application

    sockets: list[Socket] = []

    async def open_socket(user, conversation_id, *, origin: bytes = b"http://127.0.0.1:8000",
                          attach: bool = True) -> Socket:
        headers = [(b"host", b"127.0.0.1:8000")]
        if origin:
            headers.append((b"origin", origin))
        if user is not None:
            cookie = await db(_session_cookie)(user)
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
        socket = Socket(communicator)
        sockets.append(socket)
        connected, _ = await communicator.connect(timeout=10)
        if connected and attach:
            socket.history = await socket.recv()
            socket.status = await socket.recv()
        socket.connected = connected
        return socket

    yield open_socket
    for socket in sockets:
        await socket.close()


@pytest_asyncio.fixture
async def open_gateway():
    """open_gateway(token) -> Socket on /v1/responses (token None: no Authorization header)."""
    from project.asgi import application

    sockets: list[Socket] = []

    async def open_socket(token: str | None, *, origin: bytes | None = None) -> Socket:
        headers = [(b"host", b"127.0.0.1:8000")]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        if origin:
            headers.append((b"origin", origin))
        communicator = WebsocketCommunicator(application, "/v1/responses", headers=headers)
        socket = Socket(communicator)
        sockets.append(socket)
        socket.connected, _ = await communicator.connect(timeout=10)
        return socket

    yield open_socket
    for socket in sockets:
        await socket.close()


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll a sync DB check (run off the loop) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await db(check)()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)

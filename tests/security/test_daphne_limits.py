"""Through a real Daphne (sessions_app.serve): the relay's frame limit answers before Daphne's own.

A frame over SWITCHBOARD_MAX_FRAME_BYTES (1 MiB) but under Daphne's limit (8 MiB, serve.py) reaches
the relay, which answers `frame_too_large` and keeps the socket. A message over Daphne's limit is
failed by autobahn with a close frame 1009 (message too big) and a reason, not a dropped connection.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessions_app.models import ApiToken
from sessions_app.serve import DAPHNE_MESSAGE_FLOOR, websocket_message_limit

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


async def until_terminal(ws, within: float = 20.0) -> dict:
    while True:
        event = json.loads(await ws.recv())
        if event["type"] in ("response.completed", "response.failed", "response.incomplete", "error"):
            return event


def test_daphnes_limit_is_well_above_the_relays():
    assert websocket_message_limit(MIB, 1 * MIB) == DAPHNE_MESSAGE_FLOOR == 8 * MIB
    assert websocket_message_limit(4 * MIB, 1 * MIB) == 16 * MIB
    assert websocket_message_limit(MIB, 0) == 8 * MIB  # "no limit" is not an option
    assert websocket_message_limit(MIB, 32 * MIB) == 32 * MIB


async def test_a_frame_over_the_relays_limit_is_answered_and_the_socket_stays_usable(daphne_server, token):
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{daphne_server.ws_url}/v1/responses", additional_headers=headers, max_size=None,
                       open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "response.create", "input": "x" * (2 * MIB)}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["code"] == "frame_too_large"
        assert error["status"] == 413
        await ws.send(json.dumps({"type": "response.create", "input": "still here?"}))
        assert (await until_terminal(ws))["type"] == "response.completed"


async def test_a_frame_over_daphnes_limit_closes_with_1009(daphne_server, token):
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{daphne_server.ws_url}/v1/responses", additional_headers=headers, max_size=None,
                       open_timeout=10, close_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send("x" * (DAPHNE_MESSAGE_FLOOR + 1))
            await ws.recv()
    assert closed.value.rcvd is not None, "the server dropped the connection instead of closing it"
    assert closed.value.rcvd.code == 1009 and "exceeds payload limit" in closed.value.rcvd.reason

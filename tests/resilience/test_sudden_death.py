"""kill -9 of a real Daphne process the moment its client sees a response end.

The relay holds a response's last event until the response's record is written (relay/stream.py), so a turn
a client saw complete is in the records even if the process dies a millisecond later: a new process continues
from it. Without the hold the record's final write waited in the recorder's batch (its 50 ms linger) and the
kill lost it: the record stayed `in_progress` with no output, and the next turn's context missed the reply.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from sessions_app.models import ApiToken, ResponseRecord
from tests.relay.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")


@pytest.fixture
def serve(transactional_db, simulator_process):
    """serve() -> a context manager running a Daphne process on the test database, against the simulator."""
    from django.db import connection

    from sessions_app.services import default_profile_sync
    from tests.live import daphne_process

    profile = default_profile_sync()
    profile.websocket_url = simulator_process.url
    profile.save()
    return lambda: daphne_process(connection.settings_dict)


async def turn(server, headers: dict[str, str], create: dict, *, kill: bool = False) -> dict:
    """Send `create` on the gateway and return its terminal event; with `kill`, SIGKILL the server the moment that
    event arrives (no drain, no flush: whatever is not committed by then is gone)."""
    async with connect(f"{server.ws_url}/v1/responses", additional_headers=headers) as ws:
        await ws.send(json.dumps(create))
        while (event := json.loads(await asyncio.wait_for(ws.recv(), 15)))["type"] not in TERMINAL:
            pass
        if kill:
            server.process.kill()
    if kill:
        await asyncio.to_thread(server.process.wait, 10)
    return event


def recorded(response_id: str) -> tuple[str, list[str]]:
    record = ResponseRecord.objects.get(response_id=response_id)
    return record.status, [item.text for item in record.items.filter(direction="output")]


def reply_text(event: dict) -> str:
    return "".join(part.get("text", "") for item in event["response"]["output"] if item.get("type") == "message"
                   for part in item.get("content", []))


async def test_a_turn_completed_a_moment_before_kill_9_is_recorded_and_continued_by_a_new_process(serve, user):
    _, token = await db(ApiToken.issue)(user=user, name="sudden death")
    headers = {"Authorization": f"Bearer {token}"}
    first = {"type": "response.create", "model": "gpt-5.5", "store": False, "input": "remember: orca"}
    ids = []
    for attempt in range(3):  # three kills: each one a fresh chance for the race the hold closes
        with serve() as server:
            create = {**first, "previous_response_id": ids[-1]} if ids else first
            if ids:
                create["input"] = f"and remember: whale {attempt}"
            ended = await turn(server, headers, create, kill=True)
        assert ended["type"] == "response.completed", ended
        ids.append(ended["response"]["id"])
        status, output = await db(recorded)(ids[-1])
        assert status == "completed"  # written before the client saw it end
        assert output == [reply_text(ended)]

    with serve() as server:  # a new process continues from the records (recovery replays the context)
        ended = await turn(server, headers, {"type": "response.create", "model": "gpt-5.5", "store": False,
                                             "previous_response_id": ids[-1],
                                             "input": "what did I ask you to remember?"})
    assert ended["type"] == "response.completed", ended
    assert "orca" in reply_text(ended)
    assert ended["response"]["previous_response_id"] == ids[-1]

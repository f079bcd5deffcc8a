"""Two real Daphne processes sharing Redis and PostgreSQL: live fan-out, and a holder killed mid-response."""

from __future__ import annotations

import asyncio
import json
import signal
from contextlib import ExitStack

import pytest
from django.conf import settings
from django.db import connection as db_connection
from websockets.asyncio.client import connect

from sessions_app.models import ResponseRecord, UpstreamConnection
from tests.relay.conftest import db

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL or db_connection.vendor != "postgresql",
                       reason="needs REDIS_URL and PostgreSQL (two processes share them)"),
]

HEARTBEAT = "0.3"  # lease: 3 beats


def browser_session(user):
    from django.test import Client

    from sessions_app.services import conversation_create

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, conversation_create(owner=user)


@pytest.fixture
def two_servers(transactional_db, simulator_process):
    from sessions_app.services import default_profile_sync
    from tests.live import daphne_process

    profile = default_profile_sync()
    profile.websocket_url = simulator_process.url
    profile.save()
    env = {"SWITCHBOARD_HEARTBEAT_SECONDS": HEARTBEAT, "SWITCHBOARD_UPSTREAM_IDLE_SECONDS": "30"}
    with ExitStack() as stack:
        yield [stack.enter_context(daphne_process(db_connection.settings_dict, env)) for _ in range(2)]


async def receive_until(ws, done, within=10.0) -> list[dict]:
    seen = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), within))
        seen.append(event)
        if done(event):
            return seen


def protocol(events):
    return [e for e in events if not e["type"].startswith("switchboard.")]


async def test_a_viewer_on_another_process_sees_it_live_and_survives_the_holder_being_killed(two_servers, user):
    a, b = two_servers
    session, conversation = await db(browser_session)(user)
    path = f"/ws/conversations/{conversation.pk}/"
    cookie = {"Cookie": f"sessionid={session}"}
    async with (connect(a.ws_url + path, additional_headers=cookie, origin=a.base_url) as driver,
                connect(b.ws_url + path, additional_headers=cookie, origin=b.base_url) as viewer):
        for ws in (driver, viewer):
            await receive_until(ws, lambda e: e["type"] == "switchboard.status")
        await driver.send(json.dumps({"type": "response.create", "input": "remember: orca"}))
        driven = await receive_until(driver, lambda e: e["type"] == "response.completed")
        watched = await receive_until(viewer, lambda e: e["type"] == "response.completed")
        assert protocol(watched) == protocol(driven)  # the same events, live, through Redis
        first = driven[-1]["response"]["id"]

        await driver.send(json.dumps({"type": "response.create", "input": "/long 300 /slow 30",
                                      "previous_response_id": first}))
        await receive_until(viewer, lambda e: e["type"] == "response.output_text.delta")
        watched = await receive_until(viewer, lambda e: e["type"] == "response.output_text.delta"
                                      and e["sequence_number"] > 8)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        await asyncio.sleep(float(HEARTBEAT) * 3 + 0.5)  # the lease runs out

        # The owner carries on through B: the dead holder's response is settled, the turn is replayed.
        await viewer.send(json.dumps({"type": "response.create", "input": "what did I ask you to remember?",
                                      "previous_response_id": first}))
        events = await receive_until(viewer, lambda e: e["type"] in ("response.completed", "error"))
    assert events[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert "You asked me to remember: orca." in text

    def rows():
        return (list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at")),
                list(UpstreamConnection.objects.filter(conversation=conversation).order_by("opened_at")))

    for _ in range(100):  # B's recorder writes a moment behind the stream
        records, connections = await db(rows)()
        if records[-1].status == "completed":
            break
        await asyncio.sleep(0.05)
    assert [(r.origin, r.status) for r in records] == [
        ("user", "completed"), ("user", "interrupted"), ("recovery_replay", "completed")]
    partial = await db(lambda: list(records[1].items.filter(direction="output")))()
    assert partial and len(partial[0].raw["content"][0]["text"]) > 0
    assert connections[0].close_reason == "upstream_error" and connections[0].holder

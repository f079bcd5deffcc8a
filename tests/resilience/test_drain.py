"""SIGTERM drain of a real Daphne process (python -m sessions_app.serve)."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessions_app.models import ResponseRecord, UpstreamConnection
from tests.held_database import HeldDatabase
from tests.relay.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def serve(transactional_db, simulator_process):
    """serve(drain_seconds) -> a context manager running Daphne with that drain time."""
    from django.db import connection

    from sessions_app.services import default_profile_sync
    from tests.live import daphne_process

    profile = default_profile_sync()
    profile.websocket_url = simulator_process.url
    profile.save()
    return lambda seconds: daphne_process(connection.settings_dict, {"SWITCHBOARD_DRAIN_SECONDS": str(seconds)})


def browser_session(user):
    from django.test import Client

    from sessions_app.services import conversation_create

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, conversation_create(owner=user)


async def stream_then_terminate(server, user, text: str, *, hold_records_for: float = 0.0
                                ) -> tuple[list[dict], int | None]:
    """Start a response, SIGTERM the server after a few deltas, read until the socket closes. With
    `hold_records_for`, another connection holds the database from just before the SIGTERM for that long."""
    session, conversation = await db(browser_session)(user)
    url = f"{server.ws_url}/ws/conversations/{conversation.pk}/"
    seen: list[dict] = []
    async with connect(url, additional_headers={"Cookie": f"sessionid={session}"}, origin=server.base_url) as ws:
        await ws.send(json.dumps({"type": "response.create", "input": text}))
        while sum(e["type"] == "response.output_text.delta" for e in seen) < 3:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        if hold_records_for:
            from django.db import connection

            async with HeldDatabase(connection.settings_dict, conversation_id=conversation.pk):
                server.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(hold_records_for)
        else:
            server.process.send_signal(signal.SIGTERM)
        try:
            while True:
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
        except ConnectionClosed:
            pass
        code = ws.close_code
    await asyncio.to_thread(server.process.wait, 15)
    return seen, conversation.pk, code


async def test_sigterm_lets_the_in_flight_response_finish_within_the_drain_time(serve, user):
    with serve(5) as server:
        seen, conversation_id, code = await stream_then_terminate(server, user, "/long 30 /slow 40")
    assert "response.completed" in [e["type"] for e in seen]
    assert code == 1012
    record = await db(lambda: ResponseRecord.objects.get(conversation_id=conversation_id))()
    assert record.status == "completed" and record.output_tokens >= 30
    connection = await db(lambda: UpstreamConnection.objects.get(conversation_id=conversation_id))()
    assert connection.close_reason == "server_shutdown"


async def test_the_drain_waits_for_a_last_event_held_for_its_record(serve, user):
    """The response ends upstream while its record cannot commit: its last event waits (relay/stream.py), and
    the drain waits for that event too, rather than closing the socket before it goes out."""
    with serve(8) as server:
        seen, conversation_id, code = await stream_then_terminate(server, user, "/long 30 /slow 40",
                                                                  hold_records_for=2.5)
    assert "response.completed" in [e["type"] for e in seen] and code == 1012
    record = await db(lambda: ResponseRecord.objects.get(conversation_id=conversation_id))()
    assert record.status == "completed"


async def test_sigterm_with_a_short_drain_stores_the_response_interrupted_with_its_partial_text(serve, user):
    with serve(0.3) as server:
        seen, conversation_id, code = await stream_then_terminate(server, user, "/long 300 /slow 30")
    assert "response.completed" not in [e["type"] for e in seen] and code == 1012
    streamed = "".join(e["delta"] for e in seen if e["type"] == "response.output_text.delta")
    record = await db(lambda: ResponseRecord.objects.get(conversation_id=conversation_id))()
    assert record.status == "interrupted"
    [item] = await db(lambda: list(record.items.filter(direction="output")))()
    # Everything the browser saw is kept; frames that arrived while the socket was closing are kept too.
    assert item.raw["status"] == "incomplete" and item.raw["content"][0]["text"].startswith(streamed)
    assert len(streamed) >= 3

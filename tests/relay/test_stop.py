"""Stop: a browser ends a streaming response; the record says cancelled with what had streamed, and
the next turn works with its context (relay/stopping.py)."""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.models import ResponseRecord, UpstreamConnection

from .conftest import db, final, text_of, types

pytestmark = pytest.mark.django_db(transaction=True)


async def records_of(conversation):
    return await db(lambda: list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at", "pk")))()


async def test_stop_alone_closes_the_upstream_socket_and_records_the_partial_text(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: coral"))["response"]["id"]
    await socket.send({"type": "response.create", "input": "/slow 20 /long 400", "previous_response_id": first})
    streamed = await socket.until(lambda e: e["type"] == "response.output_text.delta"
                                  and len(text_of([e])) > 0 and e["sequence_number"] >= 8)
    stopped_id = next(e["response"]["id"] for e in streamed if e["type"] == "response.created")
    await socket.send({"type": "switchboard.stop", "response_id": stopped_id})
    events = await socket.until(lambda e: e["type"] == "switchboard.stopped")
    assert events[-1] == {"type": "switchboard.stopped", "response_id": stopped_id, "stream_id": None,
                          "stopped": True, "upstream_closed": True}

    async def cancelled():
        while True:
            records = await records_of(conversation)
            if records[-1].status == "cancelled":
                return records
            await asyncio.sleep(0.05)

    records = await asyncio.wait_for(cancelled(), 10)
    stopped = records[-1]
    partial = await db(lambda: "".join(i.text for i in stopped.items.filter(direction="output")))()
    assert stopped.response_id == stopped_id and len(partial) > 0
    connection = await db(lambda: UpstreamConnection.objects.get(responses=stopped))()
    assert connection.close_reason == "stopped"

    # The next turn continues the stopped one: a new upstream socket, the context replayed from the records.
    events = await socket.turn("what did I ask you to remember?", previous_response_id=stopped_id)
    # Nothing more of the stopped response reached the client: the next thing it saw was the new turn.
    first_created = types(events).index("response.created")
    assert all(t.startswith("switchboard.") for t in types(events)[:first_created]), types(events)[:first_created]
    assert "error" not in types(events) and "coral" in text_of(events)
    assert final(events)["response"]["previous_response_id"] == stopped_id
    await socket.close()


async def test_stop_beside_another_lane_keeps_the_socket_and_records_cancelled_at_the_end(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.create", "input": "/slow 10 /long 60", "stream_id": "side"})
    await socket.send({"type": "response.create", "input": "/slow 10 /long 60"})
    created = await socket.until(lambda e: e["type"] == "response.created" and not e.get("stream_id"))
    stopped_id = created[-1]["response"]["id"]
    await socket.send({"type": "switchboard.stop"})
    events = await socket.until(lambda e: e["type"] == "response.completed" and e.get("stream_id") == "side")
    stop = next(e for e in events if e["type"] == "switchboard.stopped")
    assert stop["stopped"] is True and stop["upstream_closed"] is False
    after = events[events.index(stop):]
    assert not [e for e in after if e.get("response", {}).get("id") == stopped_id or
                (e["type"].startswith("response.output") and not e.get("stream_id"))]

    async def cancelled():
        while True:
            record = await db(lambda: ResponseRecord.objects.filter(response_id=stopped_id).first())()
            if record is not None and record.status == "cancelled":
                return record
            await asyncio.sleep(0.05)

    record = await asyncio.wait_for(cancelled(), 10)
    assert await db(lambda: record.items.filter(direction="output").count())() == 1  # its whole reply
    # Nothing to stop any more: said so, and the socket is untouched.
    await socket.send({"type": "switchboard.stop", "response_id": stopped_id})
    assert (await socket.until(lambda e: e["type"] == "switchboard.stopped"))[-1]["stopped"] is False
    assert "error" not in types(await socket.turn("still here?"))
    await socket.close()


async def test_a_viewer_cannot_stop(profile, user, staff_user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    viewer = await open_browser(staff_user, conversation.pk)
    await viewer.send({"type": "switchboard.stop"})
    event = await viewer.until(lambda e: e["type"] == "error")
    assert event[-1]["error"]["code"] == "read_only"
    await viewer.close()

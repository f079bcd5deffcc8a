"""Stop: a browser ends a streaming response; the record says cancelled with what had streamed, and
the next turn works with its context (relay/stopping.py)."""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.models import ResponseRecord, UpstreamConnection

from .conftest import db, eventually, final, text_of, types

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


async def test_a_rate_limited_browser_turn_is_retried_after_a_pause_and_is_one_turn(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: heron"))["response"]["id"]
    events = await socket.turn("what did I ask you to remember? /error rate_limit_exceeded x2",
                               previous_response_id=first)
    retrying = [e for e in events if e["type"] == "switchboard.retrying"]
    # Two pauses: the simulator says "try again in 1s", doubled per resend (the simulator also forgets the
    # parent on an error, so one resend in between is a replay).
    assert len(retrying) == 2 and all(e["retry_in"] == 2 ** (e["attempt"] - 1) for e in retrying)
    assert "error" not in types(events) and "heron" in text_of(events)
    def settled():
        records = list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at", "pk"))
        return records if records[-1].status == "completed" else None

    records = await eventually(settled)
    attempts, turn = records[1:-1], records[-1]
    assert {r.status for r in attempts} == {"failed"} and turn.status == "completed"
    chain, at = [], turn
    while at.supersedes_id is not None:  # every attempt is folded into the turn that finally answered
        at = next(r for r in attempts if r.pk == at.supersedes_id)
        chain.append(at)
    assert sorted(r.pk for r in chain) == [r.pk for r in attempts]
    await socket.close()


async def test_the_gateway_relays_a_rate_limit_as_a_direct_connection_would(profile, user, open_gateway):
    from sessions_app.models import ApiToken

    _, raw = await db(ApiToken.issue)(user=user, name="agent")
    socket = await open_gateway(raw)
    events = await socket.turn("hi /error rate_limit_exceeded x1")
    assert types(events) == ["error"] and events[-1]["error"]["code"] == "rate_limit_exceeded"
    await socket.close()

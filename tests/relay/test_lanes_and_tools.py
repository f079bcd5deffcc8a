"""Tool-call round trips, queued creates on a busy lane, interleaving lanes, steering."""

from __future__ import annotations

import json

import pytest

from sessions_app.models import Item, ResponseRecord

from .conftest import TERMINAL, db, final, text_of, types

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {"type": "function", "name": "get_weather", "description": "Get weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}, "strict": True}


def records_of(conversation):
    return db(lambda: list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at", "pk")))()


async def test_tool_call_round_trip(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = await socket.turn("What is the weather in Paris?", tools=[WEATHER])
    [call] = final(first)["response"]["output"]
    assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"city": "Paris"}
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp_c": 18}'}
    second = await socket.turn([output], previous_response_id=final(first)["response"]["id"], tools=[WEATHER])
    assert "get_weather tool returned" in text_of(second)
    await socket.close()

    first_record, second_record = await records_of(conversation)
    assert second_record.origin == "tool_output" and second_record.parent_id == first_record.pk
    items = await db(lambda: list(Item.objects.filter(call_id=call["call_id"]).order_by("response__sent_at")))()
    assert [(i.response_id, i.direction, i.item_type) for i in items] == [
        (first_record.pk, "output", "function_call"), (second_record.pk, "input", "function_call_output")]


async def test_a_second_create_on_a_busy_lane_is_queued_not_refused(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.create", "input": "first /long 20 /slow 10"})
    await socket.send({"type": "response.create", "input": "second"})
    events = await socket.until(lambda e: e["type"] == "response.completed" and "second" in json.dumps(
        e["response"]["output"]))
    protocol = [e for e in events if not e["type"].startswith("switchboard.")]
    assert not any(e["type"] == "error" for e in protocol)
    terminals = [e for e in protocol if e["type"] in TERMINAL]
    created = [e for e in protocol if e["type"] == "response.created"]
    assert len(terminals) == 2 and len(created) == 2
    # FIFO on the lane: the second response starts only after the first ended.
    assert protocol.index(created[1]) > protocol.index(terminals[0])
    await socket.close()

    records = await records_of(conversation)
    assert [r.response_id for r in records] == [t["response"]["id"] for t in terminals]
    assert [r.status for r in records] == ["completed", "completed"]
    assert all(r.stream_id == "" for r in records)


async def test_two_lanes_interleave_and_each_response_is_recorded_under_its_lane(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.create", "stream_id": "planner", "input": "plan /long 20 /slow 5"})
    await socket.send({"type": "response.create", "stream_id": "research", "input": "risks /long 20 /slow 5"})
    done: dict[str, dict] = {}
    events = []
    while len(done) < 2:
        event = await socket.recv()
        events.append(event)
        if event["type"] in TERMINAL:
            done[event["stream_id"]] = event
    deltas = [e["stream_id"] for e in events if e["type"] == "response.output_text.delta"]
    first_switch = next(i for i, lane in enumerate(deltas) if lane != deltas[0])
    assert deltas[0] in deltas[first_switch + 1:], "the lanes' deltas interleave"
    await socket.close()

    records = {r.stream_id: r for r in await records_of(conversation)}
    assert set(records) == {"planner", "research"}
    for lane, terminal in done.items():
        assert records[lane].response_id == terminal["response"]["id"]
        assert records[lane].status == "completed"
        assert records[lane].events_received == len([e for e in events if e.get("stream_id") == lane])


async def test_a_steer_is_relayed_and_its_successor_recorded(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    watcher = await open_browser(user, conversation.pk)  # another tab: it is told what was steered, and where
    watcher.requests = True
    await socket.send({"type": "response.create", "input": "count /long 200 /slow 10"})
    started = await socket.until(lambda e: e["type"] == "response.output_text.delta")
    target = next(e["response"]["id"] for e in started if e["type"] == "response.created")
    await socket.send({"type": "response.steer", "previous_response_id": target, "input": "stop and say done"})
    events = await socket.until(lambda e: e["type"] == "response.completed")
    kinds = [e["type"] for e in events]
    assert "response.steer.accepted" in kinds and "response.incomplete" in kinds
    successor = final(events)["response"]
    assert successor["previous_response_id"] == target
    seen = await watcher.until(lambda e: e["type"] == "response.completed" and e["response"]["id"] == successor["id"])
    requests = [e for e in seen if e["type"] == "switchboard.request"]
    assert [r["origin"] for r in requests] == ["user", "steer"]
    accepted = requests[1].pop("accepted_at")  # the steer's record's (below)
    assert requests[1] == {"type": "switchboard.request", "stream_id": None, "origin": "steer",
                           "previous_response_id": target, "input": [
                               {"type": "message", "role": "user",
                                "content": [{"type": "input_text", "text": "stop and say done"}]}]}
    # Before anything of the successor: a tab shows the steer's text on it from its start.
    assert seen.index(requests[1]) < next(i for i, e in enumerate(seen) if e["type"] == "response.created"
                                          and e["response"]["id"] == successor["id"])
    await socket.close()
    await watcher.close()

    steered, steer = await records_of(conversation)
    assert steered.response_id == target and steered.status == "incomplete"
    assert steered.incomplete_reason == "steered"
    assert steer.origin == "steer" and steer.response_id == successor["id"] and steer.parent_id == steered.pk
    assert steer.request_payload == {"type": "response.steer", "previous_response_id": target,
                                     "input": "stop and say done"}
    assert steer.status == "completed"
    assert accepted == steer.accepted_at.isoformat() and steer.accepted_at <= steer.sent_at


async def test_a_steer_for_an_unknown_response_fails_without_reaching_upstream(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.steer", "previous_response_id": "resp_nope", "input": "x"})
    event = await socket.recv()
    assert event["type"] == "response.steer.failed" and event["error"]["code"] == "response_not_found"
    assert event["steer"]["input"] == "x"


async def test_two_tabs_share_one_upstream_socket_and_see_each_others_turns(
    profile, user, conversation_of, open_browser
):
    # Issue #5: both tabs attach to the conversation's hub (no more taking over an idle socket).
    from sessions_app.models import UpstreamConnection

    conversation = await conversation_of(user)
    first_tab = await open_browser(user, conversation.pk)
    second_tab = await open_browser(user, conversation.pk)
    assert final(await first_tab.turn("from tab one"))["type"] == "response.completed"
    assert final(await second_tab.until(lambda e: e["type"] in TERMINAL))["type"] == "response.completed"
    events = await second_tab.turn("from tab two")
    assert final(events)["type"] == "response.completed"
    seen = await first_tab.until(lambda e: e["type"] in TERMINAL)
    assert final(seen)["response"]["id"] == final(events)["response"]["id"]
    await first_tab.close()
    await second_tab.close()
    reasons = await db(lambda: list(UpstreamConnection.objects.filter(conversation=conversation)
                                    .order_by("opened_at").values_list("close_reason", flat=True)))()
    assert reasons == ["client_left"]


async def test_a_second_tabs_turn_queues_behind_the_first_on_the_shared_socket(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    first_tab = await open_browser(user, conversation.pk)
    second_tab = await open_browser(user, conversation.pk)
    await first_tab.send({"type": "response.create", "input": "/long 30 /slow 10"})
    await first_tab.until(lambda e: e["type"] == "response.output_text.delta")
    await second_tab.send({"type": "response.create", "input": "me too"})
    for tab in (first_tab, second_tab):  # both tabs see both responses complete, in order, no error
        completed: list[dict] = []
        events = await tab.until(lambda e, done=completed: e["type"] == "response.completed"
                                 and done.append(e) is None and len(done) == 2)
        assert "error" not in types(events)
    await first_tab.close()
    await second_tab.close()
    records = await db(lambda: list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at")))()
    assert [r.status for r in records] == ["completed", "completed"]
    assert records[0].connection_id == records[1].connection_id

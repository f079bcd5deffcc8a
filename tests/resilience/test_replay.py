"""Recovery by replay: the upstream's cache died (drop, connection limit, fork), the client never notices."""

from __future__ import annotations

import asyncio

import openai
import pytest

from sessions_app.models import ApiToken, ErrorEvent, ResponseRecord
from tests.relay.conftest import db, final, text_of, types

pytestmark = pytest.mark.django_db(transaction=True)

REMEMBERED = "You asked me to remember: orca."


def records_of(conversation_id):
    return db(lambda: list(ResponseRecord.objects.filter(conversation_id=conversation_id).order_by("sent_at", "pk")))()


def errors_of(conversation_id):
    return db(lambda: list(ErrorEvent.objects.filter(conversation_id=conversation_id).order_by("created_at", "pk")))()


@pytest.mark.parametrize("simulator_config", [{"connection_limit_seconds": 1.0}])
async def test_ten_turns_across_three_connection_limits_never_show_an_error_to_the_browser(
    simulator_config, profile, user, conversation_of, open_browser, sim
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    previous = final(await socket.turn("remember: orca"))["response"]["id"]
    for n in range(8):
        await asyncio.sleep(0.4)
        event = final(await socket.turn(f"turn {n}", previous_response_id=previous))
        assert event["type"] == "response.completed", event
        previous = event["response"]["id"]
    await asyncio.sleep(0.4)
    events = await socket.turn("what did I ask you to remember?", previous_response_id=previous)
    assert REMEMBERED in text_of(events)
    await socket.close()

    assert sim.connections_opened >= 4  # three limits crossed
    assert not [f for f in socket.frames if '"type": "error"' in f or '"type":"error"' in f]
    records = await records_of(conversation.pk)
    assert [r.status for r in records if r.status != "completed"] == ["failed"] * (sim.connections_opened - 1)
    replays = [r for r in records if r.origin == "recovery_replay"]
    assert len(replays) == sim.connections_opened - 1 and all(r.previous_response_id == "" for r in replays)
    errors = await errors_of(conversation.pk)
    assert {e.code for e in errors} == {"websocket_connection_limit_reached"}


async def test_a_drop_then_the_next_turn_is_replayed_with_the_full_context(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: orca"))["response"]["id"]
    second = final(await socket.turn("and more", previous_response_id=first))["response"]["id"]
    assert final(await socket.turn("tell me a story /drop", previous_response_id=second))["type"] == "error"
    events = await socket.turn("what did I ask you to remember?", previous_response_id=second)
    assert REMEMBERED in text_of(events)
    [notice] = [e for e in events if e["type"] == "switchboard.recovered"]
    assert notice == {"type": "switchboard.recovered", "reason": "new_upstream_socket", "stream_id": None,
                      "previous_response_id": second, "replayed": True}
    await socket.close()

    records = await records_of(conversation.pk)
    replay = records[-1]
    assert [r.origin for r in records] == ["user", "user", "user", "recovery_replay"]
    assert replay.parent_id == records[1].pk and replay.previous_response_id == ""
    assert replay.status == "completed" and replay.response_id == final(events)["response"]["id"]
    # What was sent carries the rebuilt context; the record's items are only what the user added,
    # so the transcript shows the turn once and a later replay walks through it.
    sent = replay.request_payload["input"]
    assert "previous_response_id" not in replay.request_payload and len(sent) > 1
    inputs = await db(lambda: [i.text for i in replay.items.filter(direction="input")])()
    assert inputs == ["what did I ask you to remember?"]


async def test_a_fork_from_the_first_of_five_is_replayed_on_the_same_socket_and_after_a_reconnect(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    ids = [final(await socket.turn("remember: orca"))["response"]["id"]]
    for n in range(4):
        ids.append(final(await socket.turn(f"turn {n}", previous_response_id=ids[-1]))["response"]["id"])
    # Same socket: the upstream only caches the latest response, answers previous_response_not_found,
    # and the relay resends the fork as a replay without the client seeing the error.
    events = await socket.turn("what did I ask you to remember?", previous_response_id=ids[0])
    assert "error" not in types(events) and REMEMBERED in text_of(events)
    assert [e["reason"] for e in events if e["type"] == "switchboard.recovered"] == ["previous_response_not_found"]
    await socket.close()
    # A new client socket has a new upstream socket: replayed straight away.
    socket = await open_browser(user, conversation.pk)
    events = await socket.turn("what did I ask you to remember?", previous_response_id=ids[0])
    assert "error" not in types(events) and REMEMBERED in text_of(events)
    await socket.close()

    records = await records_of(conversation.pk)
    first = records[0]
    superseded, same_socket, after_reconnect = records[5:]
    assert superseded.status == "failed" and superseded.response_payload == {"superseded_by": "recovery"}
    assert (superseded.origin, superseded.parent_id) == ("fork", first.pk)
    for replay in (same_socket, after_reconnect):
        assert (replay.origin, replay.parent_id, replay.status) == ("recovery_replay", first.pk, "completed")
    # The resend names the attempt it replaces: one turn (pages and the admin fold them), not a fork.
    assert same_socket.supersedes_id == superseded.pk and after_reconnect.supersedes_id is None
    children = await db(lambda: sorted(first.children.values_list("origin", flat=True)))()
    assert children == ["fork", "recovery_replay", "recovery_replay", "user"]  # the chain branches at the first
    errors = await errors_of(conversation.pk)
    assert [(e.code, e.source, e.response_id) for e in errors] == [
        ("previous_response_not_found", "upstream", superseded.pk)]


async def test_with_store_true_the_plain_continuation_is_tried_first(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user, store=True)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: orca"))["response"]["id"]
    await socket.close()
    socket = await open_browser(user, conversation.pk)
    events = await socket.turn("what did I ask you to remember?", previous_response_id=first)
    assert REMEMBERED in text_of(events) and "switchboard.recovered" not in types(events)
    await socket.close()
    records = await records_of(conversation.pk)
    assert records[-1].origin == "user" and records[-1].previous_response_id == first


async def test_without_recovery_previous_response_not_found_reaches_the_client_and_is_recorded(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    await db(type(conversation).objects.filter(pk=conversation.pk).update)(recovery_enabled=False)
    socket = await open_browser(user, conversation.pk)
    ids = [final(await socket.turn("one"))["response"]["id"]]
    ids.append(final(await socket.turn("two", previous_response_id=ids[0]))["response"]["id"])
    error = final(await socket.turn("fork", previous_response_id=ids[0]))
    assert error["type"] == "error" and error["error"]["code"] == "previous_response_not_found"
    await socket.close()
    errors = await errors_of(conversation.pk)
    assert [(e.code, e.raw) for e in errors] == [("previous_response_not_found", error)]


async def test_the_sdk_on_the_gateway_keeps_its_chain_across_three_connection_limits(limited_daphne, user):
    _, token = await db(ApiToken.issue)(user=user, name="sdk")
    client = openai.AsyncOpenAI(api_key=token, websocket_base_url=limited_daphne.ws_url + "/v1")
    seen: list[str] = []

    async def turn(connection, text: str, previous: str | None):
        await connection.response.create(model="gpt-5.5", store=False, input=text, previous_response_id=previous)
        async for event in connection:
            seen.append(event.type)
            if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
                return event
        raise AssertionError("the gateway socket closed")

    async with client.responses.connect() as connection:
        event = await turn(connection, "remember: orca", None)
        for n in range(8):
            await asyncio.sleep(0.4)
            event = await turn(connection, f"turn {n}", event.response.id)
            assert event.type == "response.completed", event
        await asyncio.sleep(0.4)
        event = await turn(connection, "what did I ask you to remember?", event.response.id)
    assert event.type == "response.completed" and REMEMBERED in event.response.output_text
    assert "error" not in seen
    records = await db(lambda: list(ResponseRecord.objects.filter(origin="recovery_replay")))()
    assert len(records) >= 3

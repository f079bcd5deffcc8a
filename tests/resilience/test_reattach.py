"""Re-attach: the conversation's hub outlives browser sockets; attaching mid-response gets history + live tail."""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.models import ResponseRecord, UpstreamConnection
from tests.relay.conftest import TERMINAL, db, final, text_of

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "/long 40 /slow 15"


def records_of(conversation_id):
    return db(lambda: list(ResponseRecord.objects.filter(conversation_id=conversation_id).order_by("sent_at", "pk")))()


def connections_of(conversation_id):
    return db(lambda: list(UpstreamConnection.objects.filter(conversation_id=conversation_id).order_by("pk")))()


async def until_recorded(conversation_id, status="completed", within=10.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        records = await records_of(conversation_id)
        if records and records[-1].status == status or asyncio.get_running_loop().time() > deadline:
            return records
        await asyncio.sleep(0.05)


async def test_a_browser_leaving_mid_response_does_not_stop_it(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.create", "input": SLOW})
    await socket.until(lambda e: e["type"] == "response.output_text.delta")
    await socket.close()
    [record] = await until_recorded(conversation.pk)
    assert record.status == "completed" and record.output_tokens >= 40
    text = await db(lambda: record.items.get(direction="output").text)()
    assert len(text.split()) >= 40


async def test_re_attaching_mid_response_gets_history_and_the_tail_without_gap_or_duplicate(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    first_tab = await open_browser(user, conversation.pk)
    assert final(await first_tab.turn("remember: orca"))["type"] == "response.completed"
    await first_tab.send({"type": "response.create", "input": SLOW})
    await first_tab.until(lambda e: e["type"] == "response.output_text.delta")
    await first_tab.close()  # a reload: the response keeps streaming upstream

    second_tab = await open_browser(user, conversation.pk)
    history = second_tab.history["responses"]
    assert [r["status"] for r in history][0] == "completed" and history[1]["status"] in ("queued", "in_progress")
    tail = await second_tab.until(lambda e: e["type"] in TERMINAL)
    tail = [e for e in tail if not e["type"].startswith("switchboard.")]
    numbers = [e["sequence_number"] for e in tail]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[0] == 0
    assert tail[0]["type"] == "response.created" and final(tail)["type"] == "response.completed"
    await second_tab.close()
    records = await until_recorded(conversation.pk)
    output = await db(lambda: records[-1].items.get(direction="output").text)()
    assert text_of(tail) == output and records[-1].response_id == final(tail)["response"]["id"]


async def test_attaching_after_it_ended_but_before_it_was_recorded_still_gets_it_once(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    first_tab = await open_browser(user, conversation.pk)
    done = final(await first_tab.turn("hello"))
    second_tab = await open_browser(user, conversation.pk)
    ids = [r["response_id"] for r in second_tab.history["responses"]]
    assert ids == [done["response"]["id"]]  # from the records (flushed before reading), not repeated in the tail
    third = final(await second_tab.turn("again", previous_response_id=done["response"]["id"]))
    assert third["type"] == "response.completed" and "error" not in [e["type"] for e in
                                                                     await first_tab.until(lambda e: e["type"] in TERMINAL)]


async def test_the_upstream_socket_outlives_a_reload_for_the_idle_grace_then_closes_idle(
    settings, profile, user, conversation_of, open_browser
):
    settings.SWITCHBOARD_UPSTREAM_IDLE_SECONDS = 0.6
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: orca"))["response"]["id"]
    await socket.close()
    await asyncio.sleep(0.2)
    socket = await open_browser(user, conversation.pk)  # within the grace: same socket, cache still warm
    events = await socket.turn("what did I ask you to remember?", previous_response_id=first)
    assert "You asked me to remember: orca." in text_of(events)
    assert "switchboard.recovered" not in [e["type"] for e in events]
    await socket.close()
    [connection] = await connections_of(conversation.pk)
    assert connection.close_reason == ""  # still open during the grace
    await asyncio.sleep(1.0)
    [connection] = await connections_of(conversation.pk)
    assert (connection.close_reason, connection.responses_carried) == ("idle", 2)
    records = await records_of(conversation.pk)
    assert [r.origin for r in records] == ["user", "user"]


async def test_a_staff_viewer_sees_the_owners_turn_live_and_may_not_send(
    profile, user, staff_user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    owner = await open_browser(user, conversation.pk)
    viewer = await open_browser(staff_user, conversation.pk)
    viewer.requests = owner.requests = True
    assert viewer.history["conversation"]["read_only"] is True
    events = await owner.turn("hello viewers")
    seen = await viewer.until(lambda e: e["type"] in TERMINAL)
    # The viewer sees the owner's message first (switchboard.request), as the owner's own tab does.
    requests = [e for e in seen if e["type"] == "switchboard.request"]
    accepted = await db(lambda: ResponseRecord.objects.get(conversation_id=conversation.pk).accepted_at)()
    assert requests == [e for e in events if e["type"] == "switchboard.request"] == [{
        "type": "switchboard.request", "stream_id": None, "previous_response_id": None, "origin": "user",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello viewers"}]}],
        "accepted_at": accepted.isoformat()}]  # the time its turn shows, live and after a reload
    assert [e["type"] for e in seen].index("switchboard.request") < [e["type"] for e in seen].index("response.created")
    assert [e for e in seen if not e["type"].startswith("switchboard.")] == \
        [e for e in events if not e["type"].startswith("switchboard.")]
    refused = final(await viewer.turn("let me in"))
    assert refused["error"]["code"] == "read_only"
    await asyncio.sleep(0.1)
    queued = []
    while not owner.communicator.output_queue.empty():
        queued.append(await owner.recv())
    assert "error" not in [e["type"] for e in queued]  # the refusal went to the viewer only


async def test_a_browser_viewer_sees_a_gateway_driven_turn_live(profile, user, conversation_of, open_browser,
                                                                open_gateway):
    from sessions_app.models import ApiToken

    conversation = await conversation_of(user)
    viewer = await open_browser(user, conversation.pk)
    _, token = await db(ApiToken.issue)(user=user, name="sdk")
    gateway = await open_gateway(token)
    viewer.requests = gateway.requests = True
    events = await gateway.turn("hello from the SDK", model="gpt-5.5",
                                metadata={"switchboard_conversation": str(conversation.pk)})
    seen = await viewer.until(lambda e: e["type"] in TERMINAL)
    assert "switchboard.request" not in [e["type"] for e in events]  # the gateway face stays pure protocol
    request, *rest = seen
    assert (request["type"], request["input"][0]["content"][0]["text"]) == ("switchboard.request", "hello from the SDK")
    assert [e["sequence_number"] for e in rest] == [e["sequence_number"] for e in events]
    assert final(seen)["response"]["id"] == final(events)["response"]["id"]

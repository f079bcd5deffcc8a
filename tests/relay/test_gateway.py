"""The gateway socket (/v1/responses): pure protocol, one conversation per socket."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import ApiToken, Conversation, ErrorEvent, ResponseRecord, UpstreamConnection

from .conftest import ADAPTER, db, eventually, final, text_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


def conversations_of(user):
    return db(lambda: list(Conversation.objects.filter(owner=user).order_by("created_at")))()


async def test_the_first_create_makes_a_conversation_titled_from_its_input(profile, user, token, open_gateway):
    socket = await open_gateway(token)
    first = await socket.turn("Plan the release\nwith details", model="gpt-5.5", store=False)
    second = await socket.turn("and then?", model="gpt-5.5", store=False,
                               previous_response_id=final(first)["response"]["id"])
    assert final(second)["type"] == "response.completed"
    for frame in socket.frames:  # nothing but protocol events: the SDK must work unchanged
        ADAPTER.validate_json(frame)
    await socket.close()
    [conversation] = await conversations_of(user)
    assert conversation.title == "Plan the release" and conversation.created_via == "gateway"
    assert conversation.latest_response_id == final(second)["response"]["id"]
    records = await db(lambda: list(ResponseRecord.objects.filter(conversation=conversation)
                                    .order_by("sent_at")))()
    assert [r.response_id for r in records] == [final(first)["response"]["id"], final(second)["response"]["id"]]
    assert records[1].parent_id == records[0].pk
    # The gateway forwards the client's frame as sent: no defaults filled in.
    assert records[0].request_payload == {"type": "response.create", "input": "Plan the release\nwith details",
                                          "model": "gpt-5.5", "store": False}


async def test_each_gateway_socket_is_its_own_conversation(profile, user, token, open_gateway):
    for text in ("one", "two"):
        socket = await open_gateway(token)
        await socket.turn(text, model="gpt-5.5")
        await socket.close()
    assert [c.title for c in await conversations_of(user)] == ["one", "two"]


async def test_metadata_names_a_conversation_to_continue(profile, user, token, open_gateway):
    socket = await open_gateway(token)
    first = final(await socket.turn("remember: kiwi", model="gpt-5.5"))
    await socket.close()
    [conversation] = await conversations_of(user)

    socket = await open_gateway(token)
    events = await socket.turn("what did I ask you to remember?", model="gpt-5.5", store=False,
                               previous_response_id=first["response"]["id"],
                               metadata={"switchboard_conversation": str(conversation.pk), "team": "a"})
    # A new upstream socket has no cache: the relay replays the recorded context.
    assert final(events)["type"] == "response.completed"
    assert "kiwi" in text_of(events)
    assert final(events)["response"]["metadata"] == {"team": "a"}  # our key is not sent upstream
    await socket.close()
    assert len(await conversations_of(user)) == 1
    records = await db(lambda: list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at")))()
    assert records[0].response_id == first["response"]["id"] and len(records) == 2
    assert records[1].request_payload["metadata"] == {"team": "a"}
    assert records[1].origin == "recovery_replay" and records[1].parent_id == records[0].pk


async def test_metadata_naming_someone_elses_conversation_is_refused(
    profile, user, other_user, token, conversation_of, open_gateway
):
    theirs = await conversation_of(other_user)
    socket = await open_gateway(token)
    error = final(await socket.turn("hi", model="gpt-5.5", metadata={"switchboard_conversation": str(theirs.pk)}))
    assert error["error"]["code"] == "conversation_not_found" and error["status"] == 404
    ADAPTER.validate_python(error)
    assert final(await socket.turn("hi", model="gpt-5.5"))["type"] == "response.completed"
    await socket.close()
    assert await db(lambda: ResponseRecord.objects.filter(conversation=theirs).count())() == 0
    [row] = await db(lambda: list(ErrorEvent.objects.filter(code="conversation_not_found")))()
    assert row.conversation_id is None and row.source == "client"


async def test_a_gateway_drop_is_an_error_event_and_the_socket_stays_open(profile, user, token, open_gateway):
    socket = await open_gateway(token)
    error = final(await socket.turn("story /drop", model="gpt-5.5"))
    assert error["error"]["code"] == "upstream_disconnected"
    assert "remember" not in text_of(await socket.turn("again", model="gpt-5.5"))
    for frame in socket.frames:
        ADAPTER.validate_json(frame)


async def test_a_request_that_cannot_be_recorded_is_not_sent_and_the_socket_opened_beside_it_closes(
        profile, user, token, open_gateway, sim):
    socket = await open_gateway(token)
    first = final(await socket.turn("remember: kiwi", model="gpt-5.5", store=True))
    assert final(await socket.turn("story /drop", model="gpt-5.5"))["error"]["code"] == "upstream_disconnected"
    # The parent record disappears: the next request's write is refused (its foreign key), while the
    # upstream socket it needs opens beside that write.
    assert await eventually(  # once the recorder has named it
        lambda: ResponseRecord.objects.filter(response_id=first["response"]["id"]).delete()[0])
    requests_before = len(sim.handshakes)
    await socket.send({"type": "response.create", "model": "gpt-5.5", "store": True, "input": "and now?",
                       "previous_response_id": first["response"]["id"]})
    error = await socket.recv()
    assert error["type"] == "error" and error["error"]["code"] == "recording_failed"
    await socket.close()  # at once: the socket opened beside the write must not outlive the client
    assert await eventually(lambda: sim.open_connections == 0)
    assert len(sim.handshakes) == requests_before + 1
    last = await db(lambda: UpstreamConnection.objects.filter(conversation__owner=user).latest("opened_at"))()
    assert last.close_reason == UpstreamConnection.CloseReason.CLIENT_LEFT
    records = await db(lambda: list(ResponseRecord.objects.filter(conversation__owner=user)))()
    assert all(r.request_payload.get("input") != "and now?" for r in records)


async def test_a_sockets_first_turn_does_not_wait_for_djangos_database_thread(profile, user, token, open_gateway):
    """The first create makes the socket's conversation on a recorder thread, not on Django's one
    thread-sensitive thread, where every other socket's and every page's sync work queues (50 sockets
    opening at once waited 0.3-0.5 s there for their first turns)."""
    socket = await open_gateway(token)
    release = threading.Event()
    held = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)(10))
    await asyncio.sleep(0.05)  # the thread is now taken
    try:
        events = await asyncio.wait_for(socket.turn("hello", model="gpt-5.5"), 5)
        assert not held.done()
    finally:
        release.set()
        await held
    assert final(events)["type"] == "response.completed"
    [conversation] = await conversations_of(user)
    assert conversation.title == "hello"

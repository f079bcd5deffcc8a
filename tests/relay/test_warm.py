"""A gateway socket's upstream socket opened ahead of its first turn (relay/warm.py), on the real
simulator through the whole ASGI app (token middleware, consumer, relay)."""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.models import ApiToken, ResponseRecord, UpstreamConnection, UpstreamProfile, UserLimits

from .conftest import ADAPTER, SECRET_KEY, db, final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


async def until(check, within: float = 5.0) -> bool:
    """Poll a cheap in-process check (no database) until it holds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_an_admitted_gateway_socket_opens_its_upstream_socket_before_its_first_create(
        profile, user, token, open_gateway, sim):
    socket = await open_gateway(token)
    assert await until(lambda: sim.open_connections == 1)  # nothing sent yet
    assert await db(lambda: UpstreamConnection.objects.count())() == 0  # no row until a request takes it
    first = await socket.turn("hello", model="gpt-5.5")
    second = await socket.turn("again", model="gpt-5.5", previous_response_id=final(first)["response"]["id"])
    assert final(second)["type"] == "response.completed"
    for frame in socket.frames:
        ADAPTER.validate_json(frame)
    assert sim.connections_opened == 1  # the first create took the warm socket, and kept it
    await socket.close()
    [row] = await db(lambda: list(UpstreamConnection.objects.all()))()
    records = await db(lambda: list(ResponseRecord.objects.order_by("sent_at")))()
    assert [r.connection_id for r in records] == [row.pk, row.pk]
    assert row.close_reason == UpstreamConnection.CloseReason.CLIENT_LEFT


async def test_a_client_that_leaves_before_its_first_create_leaves_no_upstream_socket_and_no_row(
        profile, user, token, open_gateway, sim):
    socket = await open_gateway(token)
    assert await until(lambda: sim.open_connections == 1)
    await socket.close()
    assert await until(lambda: sim.open_connections == 0)
    assert await db(lambda: UpstreamConnection.objects.count())() == 0


async def test_an_unused_warm_socket_is_closed_after_its_time_and_the_first_create_opens_another(
        profile, user, token, open_gateway, sim, settings):
    settings.SWITCHBOARD_UPSTREAM_WARM_SECONDS = 0.2
    socket = await open_gateway(token)
    assert await until(lambda: sim.connections_opened == 1)
    assert await until(lambda: sim.open_connections == 0)  # its client stayed silent
    assert final(await socket.turn("late", model="gpt-5.5"))["type"] == "response.completed"
    assert sim.connections_opened == 2
    await socket.close()
    assert await db(lambda: UpstreamConnection.objects.count())() == 1


async def test_no_warm_socket_when_it_is_off(profile, user, token, open_gateway, sim, settings):
    settings.SWITCHBOARD_UPSTREAM_WARM_SECONDS = 0
    socket = await open_gateway(token)
    await asyncio.sleep(0.2)
    assert sim.connections_opened == 0
    assert final(await socket.turn("hi", model="gpt-5.5"))["type"] == "response.completed"
    assert sim.connections_opened == 1
    await socket.close()


async def test_the_upstream_socket_limit_is_checked_when_a_request_takes_the_warm_socket(
        profile, user, token, open_gateway, sim):
    await db(lambda: UserLimits.objects.create(user=user, max_upstream_sockets=1))()
    first, second = await open_gateway(token), await open_gateway(token)
    assert await until(lambda: sim.open_connections == 2)  # idle warm sockets: bounded by time, not counted
    assert final(await first.turn("hi", model="gpt-5.5"))["type"] == "response.completed"
    refused = final(await second.turn("hi", model="gpt-5.5"))
    assert refused["type"] == "error" and refused["error"]["code"] == "too_many_upstream_sockets"
    await second.close()
    assert await until(lambda: sim.open_connections == 1)  # the refused socket's warm one is closed
    await first.close()
    assert await db(lambda: UpstreamConnection.objects.count())() == 1


async def test_a_conversation_of_another_profile_closes_the_warm_socket_and_opens_its_own(
        profile, user, token, open_gateway, sim, conversation_of):
    def second_profile():
        other = UpstreamProfile.objects.create(name="second", websocket_url=sim.url + "?profile=second",
                                               default_model="gpt-5.5")
        other.set_api_key(SECRET_KEY)
        other.save()
        return other

    other = await db(second_profile)()
    conversation = await conversation_of(user)
    await db(lambda: type(conversation).objects.filter(pk=conversation.pk).update(upstream_profile=other))()
    socket = await open_gateway(token)
    assert await until(lambda: sim.open_connections == 1)
    events = await socket.turn("hi", model="gpt-5.5", metadata={"switchboard_conversation": str(conversation.pk)})
    assert final(events)["type"] == "response.completed"
    assert sim.connections_opened == 2 and await until(lambda: sim.open_connections == 1)
    await socket.close()
    [row] = await db(lambda: list(UpstreamConnection.objects.all()))()
    assert row.upstream_profile_id == other.pk and row.url.endswith("?profile=second")


async def test_a_warm_open_the_upstream_refuses_is_reported_by_the_request_that_needed_it(
        profile, user, token, open_gateway, sim):
    def wrong_key():
        profile.set_api_key("sk-wrong-key-000000")
        profile.save()

    await db(wrong_key)()
    socket = await open_gateway(token)
    assert await until(lambda: len(sim.handshakes) == 1)  # the warm open, refused silently
    assert socket.frames == []
    error = final(await socket.turn("hi", model="gpt-5.5"))
    assert error["type"] == "error" and error["error"]["code"] == "upstream_rejected"
    await socket.close()
    assert len(sim.handshakes) == 2  # the request's own open, recorded as failed
    [row] = await db(lambda: list(UpstreamConnection.objects.all()))()
    assert row.close_reason == UpstreamConnection.CloseReason.HANDSHAKE_FAILED and row.close_code == 401

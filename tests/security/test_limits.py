"""Per-user limits: concurrent sockets, upstream sockets, responses per hour, tokens per day (small limits)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from sessions_app.models import ApiToken, ClientSocket, UserLimits
from tests.relay.conftest import db, eventually, final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


async def refused(socket) -> dict:
    """The error event a socket got before it was closed with 4429."""
    message = await socket.communicator.receive_output(10)
    event = json.loads(message["text"])
    close = await socket.communicator.receive_output(10)
    assert close == {"type": "websocket.close", "code": 4429}
    return event


async def test_concurrent_sockets_are_limited_and_freed_on_close(profile, user, token, open_gateway, settings):
    settings.SWITCHBOARD_LIMIT_SOCKETS = 2
    first, second = await open_gateway(token), await open_gateway(token)
    # A socket is admitted after its handshake, on the database thread: wait for both, or the third may
    # overtake the second and the second be the one refused.
    assert await eventually(lambda: ClientSocket.objects.filter(user=user).count() == 2)
    third = await open_gateway(token)
    error = await refused(third)
    assert error["status"] == 429
    assert error["error"]["type"] == "rate_limit_error" and error["error"]["code"] == "too_many_sockets"
    assert "limit is 2 concurrent sockets" in error["error"]["message"]
    assert final(await first.turn("still fine", model="gpt-5.5"))["type"] == "response.completed"
    await second.close()
    assert await db(lambda: ClientSocket.objects.filter(user=user).count())() == 1
    fourth = await open_gateway(token)
    assert final(await fourth.turn("my turn", model="gpt-5.5"))["type"] == "response.completed"


async def test_a_user_without_a_socket_limit_is_admitted_uncounted(profile, user, token, open_gateway, settings):
    """The handshake read the limits (gateway_auth.py): with no socket limit there is nothing to count, so no row
    is written and the socket relays at once; a limit set later applies to the next handshake."""
    await db(lambda: UserLimits.objects.create(user=user, max_sockets=0))()
    sockets = [await open_gateway(token) for _ in range(3)]
    assert final(await sockets[0].turn("hello", model="gpt-5.5"))["type"] == "response.completed"
    assert await db(lambda: ClientSocket.objects.filter(user=user).count())() == 0
    await db(lambda: UserLimits.objects.filter(user=user).update(max_sockets=1))()
    counted = await open_gateway(token)
    assert final(await counted.turn("counted now", model="gpt-5.5"))["type"] == "response.completed"
    assert await db(lambda: ClientSocket.objects.filter(user=user).count())() == 1
    assert (await refused(await open_gateway(token)))["error"]["code"] == "too_many_sockets"


async def test_a_users_override_beats_the_default(profile, user, other_user, token, open_browser, conversation_of,
                                                  open_gateway, settings):
    settings.SWITCHBOARD_LIMIT_SOCKETS = 5
    await db(lambda: UserLimits.objects.create(user=user, max_sockets=1))()
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    assert browser.connected
    gateway = await open_gateway(token)
    assert (await refused(gateway))["error"]["code"] == "too_many_sockets"
    # Bob has the default.
    bobs = await open_gateway(await db(lambda: ApiToken.issue(user=other_user)[1])())
    assert final(await bobs.turn("hi", model="gpt-5.5"))["type"] == "response.completed"


async def test_responses_per_hour(profile, user, token, open_gateway, settings):
    settings.SWITCHBOARD_LIMIT_RESPONSES_PER_HOUR = 2
    socket = await open_gateway(token)
    previous = None
    for text in ("one", "two"):
        done = final(await socket.turn(text, model="gpt-5.5", previous_response_id=previous))
        assert done["type"] == "response.completed"
        previous = done["response"]["id"]
    error = final(await socket.turn("three", model="gpt-5.5", previous_response_id=previous, stream_id="side"))
    assert error["type"] == "error" and error["status"] == 429 and error.get("stream_id") == "side"
    assert error["error"]["code"] == "responses_per_hour_exceeded"
    assert "limit of 2 responses per hour" in error["error"]["message"] and "Try again in" in error["error"]["message"]
    # A new socket of the same user is limited too: the count comes from the records.
    again = await open_gateway(token)
    assert final(await again.turn("four", model="gpt-5.5"))["error"]["code"] == "responses_per_hour_exceeded"


async def test_tokens_per_day(profile, user, token, open_gateway, settings):
    settings.SWITCHBOARD_LIMIT_TOKENS_PER_DAY = 20
    socket = await open_gateway(token)
    done = final(await socket.turn("tell me a long story please", model="gpt-5.5"))
    assert done["type"] == "response.completed" and done["response"]["usage"]["total_tokens"] >= 20
    error = final(await socket.turn("more", model="gpt-5.5", previous_response_id=done["response"]["id"]))
    assert error["error"]["code"] == "tokens_per_day_exceeded"
    assert "limit of 20 tokens per day" in error["error"]["message"]


async def test_upstream_sockets(profile, user, token, open_browser, open_gateway, conversation_of, settings):
    settings.SWITCHBOARD_LIMIT_UPSTREAM_SOCKETS = 1
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    assert final(await browser.turn("hold a socket"))["type"] == "response.completed"
    gateway = await open_gateway(token)
    error = final(await gateway.turn("another one", model="gpt-5.5"))
    assert error["type"] == "error" and error["error"]["code"] == "too_many_upstream_sockets"
    assert "limit is 1 concurrent upstream sockets" in error["error"]["message"]
    await browser.close()  # its upstream socket closes with it (no idle grace in these tests)
    assert final(await gateway.turn("now?", model="gpt-5.5"))["type"] == "response.completed"


async def test_the_http_api_answers_429_with_retry_after(profile, user, token, open_gateway, settings,
                                                         conversation_of):
    settings.SWITCHBOARD_LIMIT_RESPONSES_PER_HOUR = 1
    socket = await open_gateway(token)
    assert final(await socket.turn("one", model="gpt-5.5"))["type"] == "response.completed"
    await socket.close()
    conversation = await conversation_of(user)
    response = await db(lambda: Client().post(f"/api/conversations/{conversation.pk}/compact",
                                              HTTP_AUTHORIZATION=f"Bearer {token}"))()
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 3500
    assert response.json()["error"]["code"] == "responses_per_hour_exceeded"

"""Who may open which socket: session owners drive, staff watch, tokens open the gateway."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from sessions_app.models import ApiToken, ErrorEvent

from .conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


async def close_code(socket) -> int | None:
    message = await socket.communicator.receive_output(5)
    assert message["type"] == "websocket.close"
    return message.get("code")


async def test_an_anonymous_browser_socket_is_closed_with_4401(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(None, conversation.pk, attach=False)
    assert await close_code(socket) == 4401


async def test_another_users_conversation_is_refused_with_4404(
    profile, user, other_user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(other_user, conversation.pk, attach=False)
    assert await close_code(socket) == 4404


async def test_an_unknown_conversation_is_refused_with_4404(profile, user, open_browser):
    socket = await open_browser(user, "00000000-0000-0000-0000-000000000000", attach=False)
    assert await close_code(socket) == 4404


async def test_a_foreign_origin_is_refused_at_the_handshake(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk, origin=b"https://evil.example", attach=False)
    assert socket.connected is False


async def test_staff_watch_read_only(profile, user, staff_user, conversation_of, open_browser):
    conversation = await conversation_of(user, title="watched")
    socket = await open_browser(staff_user, conversation.pk)
    assert socket.history["conversation"]["read_only"] is True
    await socket.send({"type": "response.create", "input": "let me in"})
    error = await socket.recv()
    assert error["error"]["code"] == "read_only" and error["status"] == 403
    await socket.close()
    [row] = await db(lambda: list(ErrorEvent.objects.filter(conversation=conversation)))()
    assert row.code == "read_only" and row.source == "client"


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


async def test_the_gateway_needs_a_valid_token(profile, token, open_gateway):
    assert (await open_gateway(None)).connected is False
    assert (await open_gateway("sb_not-a-real-token-000")).connected is False
    assert (await open_gateway(token)).connected is True


async def test_a_revoked_token_is_refused(profile, user, token, open_gateway):
    await database_sync_to_async(lambda: ApiToken.objects.get(user=user).revoke())()
    assert (await open_gateway(token)).connected is False


async def test_the_gateway_refuses_a_foreign_origin_but_not_a_missing_one(profile, token, open_gateway):
    assert (await open_gateway(token, origin=b"https://evil.example")).connected is False
    assert (await open_gateway(token, origin=b"http://127.0.0.1:8000")).connected is True
    assert (await open_gateway(token)).connected is True

"""Revocation reaches open sockets: logout, password change, deactivation, token revocation, lost staff flag."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from sessions_app.models import ApiToken
from tests.relay.conftest import db, final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_checks(settings):
    settings.SWITCHBOARD_REVOCATION_SECONDS = 0.2


async def closed_with(communicator: WebsocketCommunicator, within: float = 5.0) -> tuple[dict | None, int]:
    """Receive until the close: (the last error event before it, the close code)."""
    error = None
    while True:
        message = await communicator.receive_output(within)
        if message["type"] == "websocket.close":
            return error, message.get("code")
        event = json.loads(message["text"])
        if event["type"] == "error":
            error = event


def signed_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def browser_socket(client: Client, conversation_id) -> WebsocketCommunicator:
    from project.asgi import application

    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"),
               (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    history = json.loads((await communicator.receive_output(10))["text"])
    assert history["type"] == "switchboard.history"
    await communicator.receive_output(10)  # switchboard.status
    return communicator


async def assert_revoked(communicator: WebsocketCommunicator, why: str, code: int = 4401) -> None:
    error, close_code = await closed_with(communicator)
    assert close_code == code
    assert error is not None and error["error"]["code"] == "credentials_revoked"
    assert f"({why})" in error["error"]["message"]


async def assert_session_changed(communicator: WebsocketCommunicator, *why: str) -> None:
    """A browser socket whose session ended is told so (with one of the reasons `why`) and closed with 4408,
    which makes the page reconnect."""
    events = []
    while True:
        message = await communicator.receive_output(5)
        if message["type"] == "websocket.close":
            assert message["code"] == 4408
            break
        events.append(json.loads(message["text"]))
    assert [e["reason"] for e in events if e["type"] == "switchboard.session_changed"][0] in why


async def reconnect_refused(client: Client, conversation_id) -> None:
    from project.asgi import application

    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"),
               (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
    await communicator.connect(timeout=10)
    assert (await communicator.receive_output(5)) == {"type": "websocket.close", "code": 4401}


async def test_logout_closes_that_sessions_socket_only(profile, user, conversation_of):
    conversation = await conversation_of(user)
    leaving, staying = await db(signed_in_client)(user), await db(signed_in_client)(user)
    left = await browser_socket(leaving, conversation.pk)
    kept = await browser_socket(staying, conversation.pk)
    response = await db(lambda: leaving.post("/accounts/logout/"))()
    assert response.status_code == 302
    await assert_session_changed(left, "signed_out")
    await reconnect_refused(leaving, conversation.pk)
    assert await kept.receive_nothing(0.6)  # another browser's session is still good
    await kept.disconnect()


async def test_a_password_change_closes_the_other_sessions_sockets(profile, user, conversation_of):
    conversation = await conversation_of(user)
    changing, elsewhere = await db(signed_in_client)(user), await db(signed_in_client)(user)
    own = await browser_socket(changing, conversation.pk)
    other = await browser_socket(elsewhere, conversation.pk)
    response = await db(lambda: changing.post("/accounts/password_change/", {
        "old_password": "alice-password-1", "new_password1": "a-new-passw0rd-77", "new_password2": "a-new-passw0rd-77",
    }))()
    assert response.status_code == 302
    await assert_session_changed(other, "password_changed")
    await reconnect_refused(elsewhere, conversation.pk)
    # The browser that changed it is still signed in, under a new session key: its page reconnects.
    # (whichever the check saw first: the new password, or the session key cycled after it)
    await assert_session_changed(own, "signed_out", "password_changed")
    again = await browser_socket(changing, conversation.pk)
    assert await again.receive_nothing(0.6)
    await again.disconnect()


async def test_deactivation_closes_browser_and_gateway_sockets(profile, user, conversation_of, open_gateway):
    conversation = await conversation_of(user)
    browser = await browser_socket(await db(signed_in_client)(user), conversation.pk)
    token = await db(lambda: ApiToken.issue(user=user)[1])()
    gateway = await open_gateway(token)
    assert final(await gateway.turn("hello", model="gpt-5.5"))["type"] == "response.completed"
    await db(lambda: get_user_model().objects.filter(pk=user.pk).update(is_active=False))()
    await assert_revoked(browser, "user_inactive")
    await assert_revoked(gateway.communicator, "user_inactive")


async def test_token_revocation_closes_its_sockets(profile, user, open_gateway):
    revoked, kept = await db(lambda: (ApiToken.issue(user=user), ApiToken.issue(user=user)))()
    doomed = await open_gateway(revoked[1])
    other = await open_gateway(kept[1])
    assert final(await doomed.turn("hello", model="gpt-5.5"))["type"] == "response.completed"
    await db(revoked[0].revoke)()
    await assert_revoked(doomed.communicator, "token_revoked")
    # Nothing new starts on it, and the other token's socket keeps working.
    assert final(await other.turn("still here?", model="gpt-5.5"))["type"] == "response.completed"


async def test_a_staff_viewer_who_loses_the_flag_is_closed_with_4403(profile, user, staff_user, conversation_of):
    conversation = await conversation_of(user)
    viewer = await browser_socket(await db(signed_in_client)(staff_user), conversation.pk)
    await db(lambda: get_user_model().objects.filter(pk=staff_user.pk).update(is_staff=False))()
    await assert_revoked(viewer, "staff_revoked", code=4403)

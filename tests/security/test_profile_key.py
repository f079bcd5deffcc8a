"""An upstream profile's key goes only where it was entered for, and only superusers change profiles.

The attack: all users share the upstream's key. A staff member (or a stolen staff session) points the
default profile at a server they control and reads the key from the next handshake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from websockets.asyncio.server import serve

from sessions_app.models import UpstreamProfile
from sessions_app.services import default_profile_sync
from tests.relay.conftest import SECRET_KEY, db, final

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Capture:
    url: str
    handshakes: list[dict[str, str]] = field(default_factory=list)

    def carried(self, key: str) -> bool:
        return any(key in value for headers in self.handshakes for value in headers.values())


@asynccontextmanager
async def capture_server() -> AsyncIterator[Capture]:
    """A WebSocket server that records every handshake's headers and refuses it (401), like an upstream
    that got no key."""
    capture = Capture(url="")

    def record(connection, request):
        capture.handshakes.append({name.lower(): value for name, value in request.headers.raw_items()})
        return connection.respond(401, "no key\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=record) as server:
        capture.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/responses"
        yield capture


def change_form(profile: UpstreamProfile, **changes) -> dict[str, str]:
    """The admin change form as a browser would post it, with `changes` applied."""
    data = {
        "name": profile.name, "websocket_url": profile.websocket_url, "auth_style": profile.auth_style,
        "default_model": profile.default_model, "allowed_models": json.dumps(profile.allowed_models),
        "extra_headers": json.dumps(profile.extra_headers), "api_key": "",
    }
    for flag in ("enabled", "available_to_all", "is_default"):
        if getattr(profile, flag):
            data[flag] = "on"
    data.update(changes)
    return data


def superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("root", password="root-password-1", is_staff=True,
                                                             is_superuser=True))
    return client


def admin_change(client: Client, profile: UpstreamProfile, **changes):
    url = reverse("admin:sessions_app_upstreamprofile_change", args=[profile.pk])
    return client.post(url, change_form(profile, **changes), follow=True)


async def test_a_new_url_in_the_admin_never_receives_the_old_key(profile, user, conversation_of, open_browser):
    assert await db(lambda: UpstreamProfile.objects.get(pk=profile.pk).get_api_key())() == SECRET_KEY
    async with capture_server() as capture:
        client = await db(superuser_client)()
        page = await db(admin_change)(client, profile, websocket_url=capture.url)
        assert page.status_code == 200 and page.redirect_chain, page.content.decode()[:2000]
        assert "API key" in page.content.decode() and "was removed because its WebSocket URL changed" in \
            page.content.decode()

        conversation = await conversation_of(user)
        socket = await open_browser(user, conversation.pk)
        error = final(await socket.turn("hello"))
        await socket.close()

    assert error["type"] == "error" and "401" in error["error"]["message"]
    assert capture.handshakes, "the relay never reached the new URL"
    assert not capture.carried(SECRET_KEY)
    assert all("authorization" not in headers and "api-key" not in headers for headers in capture.handshakes)

    stored = await db(UpstreamProfile.objects.get)(pk=profile.pk)
    assert (stored.websocket_url, stored.api_key_encrypted, stored.api_key_last4) == (capture.url, "", "")
    entry = await db(lambda: LogEntry.objects.select_related("user").get(
        object_id=str(profile.pk), action_flag=CHANGE))()
    message = entry.get_change_message()
    assert "WebSocket URL" in message and "API key (removed: WebSocket URL changed)" in message
    assert entry.user.username == "root"


async def test_a_key_entered_with_the_new_url_goes_there(profile, user, conversation_of, open_browser):
    async with capture_server() as capture:
        client = await db(superuser_client)()
        await db(admin_change)(client, profile, websocket_url=capture.url, api_key="sk-new-destination-key-42")
        conversation = await conversation_of(user)
        socket = await open_browser(user, conversation.pk)
        final(await socket.turn("hello"))
        await socket.close()
    assert capture.carried("Bearer sk-new-destination-key-42")
    assert not capture.carried(SECRET_KEY)


def test_auth_style_and_extra_headers_are_bound_to_the_key_too():
    profile = UpstreamProfile(name="p", websocket_url="wss://one.example/v1/responses")
    profile.set_api_key("sk-bound-key-0001")
    profile.save()
    for change in ({"auth_style": "azure_api_key"}, {"extra_headers": {"X-Target": "elsewhere"}}):
        profile = UpstreamProfile.objects.get(pk=profile.pk)
        for name, value in change.items():
            setattr(profile, name, value)
        profile.save()
        assert not UpstreamProfile.objects.get(pk=profile.pk).has_api_key
        profile.set_api_key("sk-bound-key-0001")
        profile.save()
    profile.default_model = "gpt-other"  # not bound: the key stays
    profile.save()
    assert UpstreamProfile.objects.get(pk=profile.pk).get_api_key() == "sk-bound-key-0001"


def test_update_on_a_queryset_clears_the_key_too():
    profile = UpstreamProfile(name="p", websocket_url="wss://one.example/v1/responses")
    profile.set_api_key("sk-bound-key-0002")
    profile.save()
    UpstreamProfile.objects.filter(pk=profile.pk).update(websocket_url="wss://two.example/v1/responses")
    assert not UpstreamProfile.objects.get(pk=profile.pk).has_api_key


def test_bootstrap_sets_the_environment_key_again_when_it_moves_the_url(settings):
    settings.OPENAI_API_KEY = "sk-env-key-000000001234"
    settings.OPENAI_WEBSOCKET_URL = "wss://api.openai.com/v1/responses"
    default_profile_sync()
    settings.OPENAI_WEBSOCKET_URL = "wss://eu.api.openai.com/v1/responses"
    profile = default_profile_sync()
    assert UpstreamProfile.objects.get(pk=profile.pk).get_api_key() == "sk-env-key-000000001234"


def test_the_admin_warns_before_the_key_goes():
    profile = default_profile_sync()
    page = superuser_client().get(reverse("admin:sessions_app_upstreamprofile_change", args=[profile.pk]))
    assert page.content.decode().count("removes the stored API key, unless you enter the key again") == 3


def test_staff_who_are_not_superusers_may_only_look():
    profile = default_profile_sync()
    client = Client()
    client.force_login(get_user_model().objects.create_user("helper", password="helper-password-1", is_staff=True))
    change = reverse("admin:sessions_app_upstreamprofile_change", args=[profile.pk])
    view = client.get(change)
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert client.post(change, change_form(profile, websocket_url="ws://evil.example/")).status_code == 403
    assert client.get(reverse("admin:sessions_app_upstreamprofile_add")).status_code == 403
    assert client.get(reverse("admin:sessions_app_upstreamprofile_delete", args=[profile.pk])).status_code == 403
    assert UpstreamProfile.objects.get(pk=profile.pk).websocket_url == profile.websocket_url


def test_staff_set_a_users_limits_in_the_admin(user):
    client = superuser_client()
    response = client.post(reverse("admin:sessions_app_userlimits_add"), {
        "user": str(user.pk), "max_sockets": "3", "max_upstream_sockets": "", "responses_per_hour": "0",
        "tokens_per_day": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    limits = user.switchboard_limits
    assert (limits.max_sockets, limits.max_upstream_sockets, limits.responses_per_hour) == (3, None, 0)
    found = client.get(reverse("admin:sessions_app_userlimits_changelist") + "?q=alice").content.decode()
    assert "Limits of alice" in found
    user_page = client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert "switchboard_limits-0-max_sockets" in user_page

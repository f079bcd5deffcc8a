"""Test connection on an upstream profile: a real socket to the simulator, its 401, and a refused port."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from django.test import AsyncClient

from sessions_app.models import UpstreamProfile
from sessions_app.profile_check import profile_check_connection

from .conftest import SECRET_KEY, db

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    """A port nothing listens on (bound, then released: connecting to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def staff_client(staff_user) -> AsyncClient:
    client = AsyncClient()
    await db(client.force_login)(staff_user)
    return client


def messages_of(response) -> str:
    return response.content.decode()


async def test_the_change_page_button_reports_a_working_key(profile, staff_user, caplog):
    caplog.set_level(logging.DEBUG)
    client = await staff_client(staff_user)
    change = f"/admin/sessions_app/upstreamprofile/{profile.pk}/change/"
    page = (await client.get(change)).content.decode()
    assert "Test connection" in page and f"/admin/sessions_app/upstreamprofile/{profile.pk}/test-connection/" in page
    response = await client.post(f"/admin/sessions_app/upstreamprofile/{profile.pk}/test-connection/", follow=True)
    html = messages_of(response)
    assert response.status_code == 200
    assert "Connected in" in html and "accepted the stored key" in html
    assert SECRET_KEY not in html
    assert SECRET_KEY not in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_wrong_key_is_reported_as_401(profile, staff_user):
    def wrong_key():
        profile.set_api_key("sk-not-the-simulators-key-0000")
        profile.save()

    await db(wrong_key)()
    client = await staff_client(staff_user)
    response = await client.post("/admin/sessions_app/upstreamprofile/", {
        "action": "test_connection", "_selected_action": [profile.pk]}, follow=True)
    html = messages_of(response)
    assert "Failed: the upstream refused the API key (HTTP 401 Unauthorized)" in html
    assert "sk-not-the-simulators-key" not in html


async def test_a_refused_port_is_reported_in_words(profile):
    def refused():
        profile.websocket_url = f"ws://127.0.0.1:{free_port()}/v1/responses"
        profile.save()
        return UpstreamProfile.objects.get(pk=profile.pk)

    moved = await db(refused)()
    result = await db(profile_check_connection)(profile=moved)
    assert not result.ok
    assert result.message == "Failed: the connection was refused: nothing listens at that host and port."


async def test_only_staff_may_test_and_only_with_a_post(profile, user, staff_user):
    url = f"/admin/sessions_app/upstreamprofile/{profile.pk}/test-connection/"
    anonymous = await AsyncClient().post(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    plain = AsyncClient()
    await db(plain.force_login)(user)
    refused = await plain.post(url)
    assert refused.status_code == 302 and refused["Location"].startswith("/admin/login/")
    staff = await staff_client(staff_user)
    assert (await staff.get(url)).status_code == 405
    assert (await staff.post("/admin/sessions_app/upstreamprofile/nope/test-connection/")).status_code == 404
    checked = AsyncClient(enforce_csrf_checks=True)
    await db(checked.force_login)(staff_user)
    assert (await checked.post(url)).status_code == 403  # no CSRF token


async def test_tls_to_a_plain_server_and_a_silent_server_are_reported_in_words(profile):
    def pointed_at(url):
        profile.websocket_url = url
        profile.save()
        return UpstreamProfile.objects.get(pk=profile.pk)

    async def plain_http(reader, writer):  # answers a TLS hello in plain text, as a non-TLS server does
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        tls = await db(pointed_at)(f"wss://127.0.0.1:{port}/v1/responses")
        result = await db(profile_check_connection)(profile=tls)
    assert not result.ok and "TLS handshake failed" in result.message, result.message

    with socket.socket() as silent:  # accepts TCP connections (backlog) and never answers the upgrade
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        mute = await db(pointed_at)(f"ws://127.0.0.1:{silent.getsockname()[1]}/v1/responses")
        result = await db(profile_check_connection)(profile=mute, timeout=0.5)
    assert not result.ok and result.message == "Failed: no answer within 0.5 s (timeout)."

"""The upstream API key reaches the upstream's handshake and nowhere else."""

from __future__ import annotations

import logging

import pytest
from django.apps import apps
from django.test import AsyncClient

from sessions_app.models import ApiToken

from .conftest import SECRET_KEY, db, final

pytestmark = pytest.mark.django_db(transaction=True)


def every_stored_value() -> str:
    dump = []
    for model in apps.get_models():
        dump.extend(repr(row) for row in model.objects.values())
    return "\n".join(dump)


async def test_the_api_key_never_appears_in_rows_client_events_or_logs(
    profile, user, conversation_of, open_browser, open_gateway, caplog
):
    caplog.set_level(logging.DEBUG)  # websockets logs handshake headers at DEBUG
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    first = final(await browser.turn("hello"))
    assert first["type"] == "response.completed"  # the simulator accepted our key, so it was sent
    await browser.turn("tool time /tool lookup {\"q\": 1}", previous_response_id=first["response"]["id"])
    await browser.turn("/error server_error")
    await browser.turn("/drop")
    await browser.send("{bad json")
    await browser.recv()
    await browser.close()
    client = AsyncClient()
    await db(client.force_login)(user)
    assert (await client.post(f"/api/conversations/{conversation.pk}/compact")).status_code == 200

    _, token = await db(ApiToken.issue)(user=user)
    gateway = await open_gateway(token)
    await gateway.turn("via the gateway", model="gpt-5.5")
    await gateway.close()

    assert any("Authorization" in r.getMessage() for r in caplog.records), "handshake headers were logged"
    assert SECRET_KEY not in "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET_KEY not in "\n".join(browser.frames + gateway.frames)
    stored = await db(every_stored_value)()
    assert "resp_" in stored  # the dump does hold the conversation
    assert SECRET_KEY not in stored
    assert token not in stored

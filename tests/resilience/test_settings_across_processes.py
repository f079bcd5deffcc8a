"""Settings saved in a tab on one Daphne process reach the next turn of a tab on another (live/remote.py)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.db import connection as db_connection
from websockets.asyncio.client import connect

from sessions_app.models import Conversation, ResponseRecord
from tests.relay.conftest import db
from tests.resilience.test_scale_out import browser_session, receive_until, two_servers  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL or db_connection.vendor != "postgresql",
                       reason="needs REDIS_URL and PostgreSQL (two processes share them)"),
]


async def test_a_tab_on_another_process_sends_its_next_turn_with_the_saved_settings(two_servers, user):  # noqa: F811
    a, b = two_servers
    session, conversation = await db(browser_session)(user)
    path = f"/ws/conversations/{conversation.pk}/"
    cookie = {"Cookie": f"sessionid={session}"}
    async with (connect(a.ws_url + path, additional_headers=cookie, origin=a.base_url) as saver,
                connect(b.ws_url + path, additional_headers=cookie, origin=b.base_url) as other):
        for ws in (saver, other):
            await receive_until(ws, lambda e: e["type"] == "switchboard.status")
        await other.send(json.dumps({"type": "response.create", "input": "hello"}))
        first = (await receive_until(other, lambda e: e["type"] == "response.completed"))[-1]["response"]["id"]

        await db(Conversation.objects.filter(pk=conversation.pk).update)(instructions="Answer in French.",
                                                                         max_output_tokens=400)
        await saver.send(json.dumps({"type": "switchboard.settings_changed"}))
        seen = await receive_until(other, lambda e: e["type"] == "switchboard.settings")  # through Redis
        assert seen[-1]["settings"]["instructions"] == "Answer in French."
        await other.send(json.dumps({"type": "response.create", "input": "and now?", "previous_response_id": first}))
        await receive_until(other, lambda e: e["type"] == "response.completed")

    def payloads():
        return list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at")
                    .values_list("request_payload", flat=True))

    before, after = await db(payloads)()
    assert "instructions" not in before
    assert after["instructions"] == "Answer in French." and after["max_output_tokens"] == 400

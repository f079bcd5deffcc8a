"""End to end through a real Daphne process and a real simulator process, with the official SDK."""

from __future__ import annotations

import asyncio
import json

import openai
import pydantic
import pytest
from openai.types.responses import ResponsesServerEvent
from websockets.asyncio.client import connect

from sessions_app.models import ApiToken, Conversation, Item, ResponseRecord, UpstreamConnection

from .conftest import db, eventually

pytestmark = pytest.mark.django_db(transaction=True)

ADAPTER = pydantic.TypeAdapter(ResponsesServerEvent)
TERMINAL = {"response.completed", "response.failed", "response.incomplete", "error"}
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}, "strict": True}


async def until_terminal(connection) -> list:
    events = []
    async for event in connection:
        ADAPTER.validate_python(event.to_dict())  # every event the SDK receives is a valid server event
        events.append(event)
        if event.type in TERMINAL:
            return events
    raise AssertionError("the socket closed before a terminal event")


async def test_the_official_sdk_chats_and_calls_tools_through_daphne(daphne_server, user):
    _, token = await db(ApiToken.issue)(user=user, name="sdk")
    client = openai.AsyncOpenAI(api_key=token, websocket_base_url=daphne_server.ws_url + "/v1")
    async with client.responses.connect() as connection:
        await connection.response.create(model="gpt-5.5", store=False, input="Hello from the SDK")
        first = (await until_terminal(connection))[-1]
        assert first.type == "response.completed" and "Hello!" in first.response.output_text

        await connection.response.create(model="gpt-5.5", store=False, previous_response_id=first.response.id,
                                         input="What is the weather in Paris?", tools=[WEATHER])
        second = (await until_terminal(connection))[-1]
        [call] = second.response.output
        assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}

        await connection.response.create(
            model="gpt-5.5", store=False, previous_response_id=second.response.id, tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'}],
        )
        third = (await until_terminal(connection))[-1]
        assert "get_weather tool returned" in third.response.output_text

    def chain():
        conversation = Conversation.objects.filter(owner=user).first()
        if conversation is None or conversation.latest_response_id != third.response.id:
            return None
        records = list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at"))
        if [r.status for r in records] != ["completed"] * 3:
            return None
        connections = list(UpstreamConnection.objects.filter(conversation=conversation))
        if [c.close_reason for c in connections] != ["client_left"]:
            return None
        return conversation, records, connections

    found = await eventually(chain, within=15)
    assert found, "the conversation was recorded"
    conversation, records, [upstream] = found
    assert conversation.created_via == "gateway" and conversation.title == "Hello from the SDK"
    assert [r.response_id for r in records] == [first.response.id, second.response.id, third.response.id]
    assert [r.origin for r in records] == ["user", "user", "tool_output"]
    assert records[0].parent_id is None
    assert all(r.accepted_at is not None and r.accepted_at <= r.sent_at for r in records)  # accepted, then sent
    assert [r.parent_id for r in records[1:]] == [records[0].pk, records[1].pk]
    assert [r.previous_response_id for r in records[1:]] == [first.response.id, second.response.id]
    assert upstream.responses_carried == 3
    calls = await db(lambda: list(Item.objects.filter(call_id=call.call_id).values_list("direction", flat=True)))()
    assert sorted(calls) == ["input", "output"]


async def test_the_browser_socket_through_daphne(daphne_server, user):
    from django.test import Client

    from sessions_app.services import conversation_create

    def login_and_create():
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value, conversation_create(owner=user)

    session, conversation = await db(login_and_create)()
    url = f"{daphne_server.ws_url}/ws/conversations/{conversation.pk}/"
    headers = {"Cookie": f"sessionid={session}"}
    async with connect(url, additional_headers=headers, origin=daphne_server.base_url) as ws:
        history = json.loads(await ws.recv())
        assert history["type"] == "switchboard.history" and history["responses"] == []
        await ws.send(json.dumps({"type": "response.create", "input": "hi over daphne"}))
        seen = []
        while not seen or seen[-1]["type"] != "response.completed":
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        text = "".join(e["delta"] for e in seen if e["type"] == "response.output_text.delta")
        assert 'You said: "hi over daphne"' in text
        assert {"type": "switchboard.status", "status": "streaming", "upstream": "connected",
                "latest_response_id": None} in seen

    async with connect(url, origin=daphne_server.base_url) as ws:  # no session: closed with 4401
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 4401

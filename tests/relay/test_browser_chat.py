"""The browser socket: attach, chat turns, continuation chain rows."""

from __future__ import annotations

import pytest

from sessions_app.models import Conversation, Item, ResponseRecord, UpstreamConnection

from .conftest import db, final, text_of, types

pytestmark = pytest.mark.django_db(transaction=True)


async def test_attach_sends_history_then_status(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user, title="First chat")
    socket = await open_browser(user, conversation.pk)
    assert socket.history == {
        "type": "switchboard.history",
        "conversation": {"id": str(conversation.pk), "title": "First chat", "model": "gpt-5.5", "status": "idle",
                         "read_only": False, "settings": socket.history["conversation"]["settings"]},
        "responses": [],
        "compactions": [],
    }
    assert socket.history["conversation"]["settings"]["model"] == "gpt-5.5"
    assert socket.status == {"type": "switchboard.status", "status": "idle", "upstream": "disconnected",
                             "latest_response_id": None}


async def test_chat_turns_are_relayed_and_recorded_as_a_chain(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = await socket.turn("hello there")
    assert "response.created" in types(first)
    assert final(first)["type"] == "response.completed"
    assert text_of(first).startswith("Hello!")
    first_id = final(first)["response"]["id"]
    second = await socket.turn("remember: blue", previous_response_id=first_id)
    second_id = final(second)["response"]["id"]
    assert final(second)["response"]["previous_response_id"] == first_id
    third = await socket.turn("what did I ask you to remember?", previous_response_id=second_id)
    assert "blue" in text_of(third)
    await socket.close()

    def rows():
        records = list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at"))
        return records, Conversation.objects.get(pk=conversation.pk), list(UpstreamConnection.objects.all())

    records, conv, connections = await db(rows)()
    assert [r.status for r in records] == ["completed"] * 3
    assert records[0].parent_id is None and records[0].previous_response_id == ""
    for child, parent in zip(records[1:], records[:-1], strict=True):
        assert child.previous_response_id == parent.response_id
        assert child.parent_id == parent.pk
    assert conv.title == "hello there"
    assert conv.latest_response_id == records[-1].response_id
    assert conv.status == "idle"
    assert len(connections) == 1 and connections[0].close_reason == "client_left"
    assert connections[0].responses_carried == 3
    first_record = records[0]
    assert first_record.request_payload["model"] == "gpt-5.5"  # filled from the conversation
    assert first_record.request_payload["store"] is False
    assert first_record.total_tokens and first_record.first_event_at and first_record.first_text_at
    assert first_record.completed_at >= first_record.first_text_at >= first_record.first_event_at
    assert first_record.events_received == len([e for e in first if not e["type"].startswith("switchboard.")])
    assert {"type": "switchboard.status", "status": "streaming", "upstream": "connected",
            "latest_response_id": None} in first

    def items():
        return list(Item.objects.filter(response=first_record).order_by("direction", "position"))

    stored = await db(items)()
    assert [(i.direction, i.item_type, i.text) for i in stored if i.direction == "input"] == [
        ("input", "message", "hello there")]
    assert stored[-1].direction == "output" and stored[-1].text == text_of(first)


async def test_history_on_reattach_holds_the_recorded_turns(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    events = await socket.turn("hi")
    await socket.close()
    again = await open_browser(user, conversation.pk)
    [turn] = again.history["responses"]
    assert turn["response_id"] == final(events)["response"]["id"]
    assert turn["status"] == "completed" and turn["origin"] == "user"
    assert turn["input_items"][0]["content"][0]["text"] == "hi"
    assert turn["output_items"] == final(events)["response"]["output"]
    assert turn["usage"]["total_tokens"] == final(events)["response"]["usage"]["total_tokens"]
    assert again.status["latest_response_id"] == turn["response_id"]

"""Bad client input gets a clear `error` event, is recorded, and the socket stays open."""

from __future__ import annotations

import json

import pytest

from sessions_app.models import ErrorEvent, ResponseRecord

from .conftest import db, final

pytestmark = pytest.mark.django_db(transaction=True)


async def errors_of(conversation):
    return await db(lambda: list(ErrorEvent.objects.filter(conversation=conversation).order_by("created_at", "pk")))()


@pytest.mark.parametrize(("frame", "code", "param"), [
    ("{not json", "invalid_json", None),
    ("[1, 2]", "invalid_json", None),
    (json.dumps({"type": "session.update"}), "unknown_event_type", "type"),
    (json.dumps({"input": "hi"}), "missing_required_parameter", "type"),
    (json.dumps({"type": "response.create", "input": "hi", "stream": True}), "unsupported_parameter", "stream"),
    (json.dumps({"type": "response.create", "input": "hi", "background": True}), "unsupported_parameter",
     "background"),
    (json.dumps({"type": "response.create", "input": "hi", "stream_id": ""}), "invalid_stream_id", "stream_id"),
])
async def test_bad_frames_are_answered_and_the_socket_stays_open(
    frame, code, param, profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send(frame)
    error = await socket.recv()
    assert error["type"] == "error" and error["status"] == 400
    assert error["error"]["code"] == code and error["error"].get("param") == param
    assert final(await socket.turn("still here?"))["type"] == "response.completed"
    await socket.close()
    [row] = await errors_of(conversation)
    assert (row.source, row.code, row.response_id) == ("client", code, None)
    assert row.raw == error
    # Nothing invalid was recorded as a request.
    assert await db(lambda: ResponseRecord.objects.filter(conversation=conversation).count())() == 1


async def test_an_oversize_frame_is_refused(profile, user, conversation_of, open_browser, settings):
    settings.SWITCHBOARD_MAX_FRAME_BYTES = 2048
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.create", "input": "é" * 1100})  # 2200+ bytes, 1100 chars
    error = await socket.recv()
    assert error["error"]["code"] == "frame_too_large" and error["status"] == 413
    assert final(await socket.turn("small"))["type"] == "response.completed"


async def test_a_model_the_profile_does_not_allow_is_refused(profile, user, conversation_of, open_browser):
    def restrict():
        profile.allowed_models = ["gpt-5.5"]
        profile.save()

    await db(restrict)()
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    error = final(await socket.turn("hi", model="gpt-4o", stream_id="x"))
    assert error["error"]["code"] == "model_not_allowed" and error["error"]["param"] == "model"
    assert error["stream_id"] == "x"
    assert final(await socket.turn("hi", model="gpt-5.5"))["type"] == "response.completed"


async def test_the_browser_create_is_completed_from_the_conversation(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)

    def configure():
        conversation.instructions = "Be brief."
        conversation.tools = [{"type": "function", "name": "noop", "parameters": {"type": "object",
                                                                                 "properties": {}}}]
        conversation.store = True
        conversation.save()

    await db(configure)()
    socket = await open_browser(user, conversation.pk)
    response = final(await socket.turn("hello"))["response"]
    assert response["instructions"] == "Be brief." and response["tools"][0]["name"] == "noop"
    await socket.close()
    record = await db(lambda: ResponseRecord.objects.get(conversation=conversation))()
    assert record.request_payload == {"type": "response.create", "input": "hello", "model": "gpt-5.5",
                                      "store": True, "instructions": "Be brief.", "tools": conversation.tools}

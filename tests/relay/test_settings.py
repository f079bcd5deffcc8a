"""Conversation settings on the sockets: the browser face fills them into creates, the gateway does not, and
`switchboard.settings_changed` makes a live hub's next turn use what the owner just saved (live/hub.py)."""

from __future__ import annotations

import pytest

from sessions_app.models import ApiToken, ResponseRecord, UpstreamConnection, UpstreamProfile

from .conftest import db, final

pytestmark = pytest.mark.django_db(transaction=True)

CHANGED = {"type": "switchboard.settings_changed"}


def payloads(conversation) -> list[dict]:
    return list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at", "pk")
                .values_list("request_payload", flat=True))


async def configure(conversation, **settings) -> None:
    def save():
        for name, value in settings.items():
            setattr(conversation, name, value)
        conversation.save()

    await db(save)()


async def test_the_browser_create_carries_the_conversation_settings(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user, reasoning_effort="high", max_output_tokens=600,
                                         compact_threshold=4000)
    socket = await open_browser(user, conversation.pk)
    response = final(await socket.turn("hello"))["response"]
    assert response["reasoning"] == {"effort": "high"} and response["max_output_tokens"] == 600
    # What the client sends itself wins over the conversation's settings.
    await socket.turn("again", previous_response_id=response["id"], max_output_tokens=100,
                      reasoning={"effort": "low"}, context_management=[{"type": "compaction"}])
    await socket.close()
    first, second = await db(payloads)(conversation)
    assert first["reasoning"] == {"effort": "high"} and first["max_output_tokens"] == 600
    assert first["context_management"] == [{"type": "compaction", "compact_threshold": 4000}]
    assert second["reasoning"] == {"effort": "low"} and second["max_output_tokens"] == 100
    assert second["context_management"] == [{"type": "compaction"}]


async def test_the_gateway_sends_exactly_what_the_client_sent(profile, user, conversation_of, open_gateway):
    conversation = await conversation_of(user, reasoning_effort="high", max_output_tokens=600,
                                         compact_threshold=4000, instructions="Be brief.", store=True)
    _, token = await db(ApiToken.issue)(user=user)
    socket = await open_gateway(token)
    await socket.turn("hello", model="gpt-5.5", metadata={"switchboard_conversation": str(conversation.pk)})
    await socket.close()
    [payload] = await db(payloads)(conversation)
    assert payload == {"type": "response.create", "input": "hello", "model": "gpt-5.5"}


async def test_saved_settings_reach_the_next_turn_and_every_tab(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user, title="Desk")
    tab, other_tab = await open_browser(user, conversation.pk), await open_browser(user, conversation.pk)
    first = final(await tab.turn("hello"))["response"]
    await other_tab.until(lambda e: e["type"] == "response.completed")
    await configure(conversation, instructions="Answer in French.", max_output_tokens=500, reasoning_effort="low",
                    compact_threshold=3000, title="")
    await tab.send(CHANGED)
    event = await tab.until(lambda e: e["type"] == "switchboard.settings")
    assert (await other_tab.until(lambda e: e["type"] == "switchboard.settings")) [-1] == event[-1]
    settings = event[-1]["settings"]
    assert settings["instructions"] == "Answer in French." and settings["max_output_tokens"] == 500
    assert settings["compact_threshold"] == 3000 and settings["upstream_profile"] == profile.pk
    await tab.turn("and now?", previous_response_id=first["id"])
    await tab.close()
    await other_tab.close()
    before, after = await db(payloads)(conversation)
    assert "instructions" not in before and "max_output_tokens" not in before
    assert after["instructions"] == "Answer in French." and after["max_output_tokens"] == 500
    assert after["reasoning"] == {"effort": "low"}
    assert after["context_management"] == [{"type": "compaction", "compact_threshold": 3000}]


async def test_a_viewer_cannot_send_the_control_event(profile, user, staff_user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    viewer = await open_browser(staff_user, conversation.pk)
    await viewer.send(CHANGED)
    error = await viewer.recv()
    assert error["type"] == "error" and error["error"]["code"] == "read_only"


async def test_another_profile_closes_the_idle_upstream_socket_and_the_next_turn_uses_the_new_one(
    profile, sim, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: cedar"))["response"]

    def second_profile():
        other = UpstreamProfile.objects.create(name="second", websocket_url=sim.url, default_model="gpt-5.5-mini")
        other.set_api_key(profile.get_api_key())
        other.save()
        return other

    other = await db(second_profile)()
    await configure(conversation, upstream_profile=other, model="gpt-5.5-mini")
    await socket.send(CHANGED)
    events = await socket.until(lambda e: e["type"] == "switchboard.upstream_closed")
    assert events[-1]["reason"] == "idle"
    answer = await socket.turn("what did I ask you to remember?", previous_response_id=first["id"])
    assert final(answer)["response"]["model"] == "gpt-5.5-mini"
    await socket.close()
    connections = await db(lambda: list(UpstreamConnection.objects.order_by("opened_at")
                                        .values_list("upstream_profile", flat=True)))()
    assert connections == [profile.pk, other.pk]


async def test_frames_that_only_look_like_control_events_reach_the_relay(profile, user, conversation_of,
                                                                        open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send('{"type": "switchboard.unknown"}')
    error = await socket.recv()
    assert error["type"] == "error" and error["error"]["code"] == "unknown_event_type"

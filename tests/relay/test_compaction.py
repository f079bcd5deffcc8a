"""Server-side compaction items and standalone compaction through the HTTP endpoint."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from sessions_app.models import ApiToken, CompactionEvent, Item, ResponseRecord

from .conftest import db, final, text_of

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_server_side_compaction_item_is_recorded(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: teal"))
    events = await socket.turn("go on /compact", previous_response_id=first["response"]["id"],
                               context_management=[{"type": "compaction", "compact_threshold": 1000}])
    assert "response.compaction.compacting" in [e["type"] for e in events]
    await socket.close()
    record = await db(lambda: ResponseRecord.objects.get(response_id=final(events)["response"]["id"]))()
    assert record.produced_compaction is True
    [compaction] = await db(lambda: list(CompactionEvent.objects.filter(conversation=conversation)))()
    assert compaction.kind == "server_side" and compaction.response_id == record.pk
    # It replaced the first turn's message and reply, and the new message: three items.
    assert compaction.items_replaced == 3 and compaction.input_tokens_before == record.input_tokens
    assert compaction.compacted_output == final(events)["response"]["output"]
    assert await db(lambda: Item.objects.filter(response=record, item_type="compaction").count())() == 1


async def test_standalone_compaction_starts_the_next_turn_from_the_compacted_window(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: amber"))
    second = final(await socket.turn("remember: violet", previous_response_id=first["response"]["id"]))
    await socket.close()

    client = AsyncClient()
    await db(client.force_login)(user)
    response = await client.post(f"/api/conversations/{conversation.pk}/compact")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["base_response_id"] == second["response"]["id"] and body["items_replaced"] == 4
    assert [item["type"] for item in body["output"]] == ["compaction"]

    socket = await open_browser(user, conversation.pk)
    events = await socket.turn("what did I ask you to remember?", previous_response_id=second["response"]["id"])
    answer = final(events)["response"]
    assert "amber" in text_of(events) and "violet" in text_of(events)
    assert answer["previous_response_id"] is None  # a new chain, from the compacted window
    await socket.close()
    record = await db(lambda: ResponseRecord.objects.get(response_id=answer["id"]))()
    base = await db(lambda: ResponseRecord.objects.get(response_id=second["response"]["id"]))()
    assert record.previous_response_id == "" and record.parent_id == base.pk  # sent without, still linked
    assert record.request_payload["input"][0] == body["output"][0]
    assert "previous_response_id" not in record.request_payload
    [compaction] = await db(lambda: list(CompactionEvent.objects.filter(conversation=conversation)))()
    assert compaction.kind == "standalone" and compaction.items_replaced == 4


async def test_compaction_accepts_a_token_and_needs_csrf_with_a_session(profile, user, conversation_of,
                                                                        open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.turn("hello")
    await socket.close()
    url = f"/api/conversations/{conversation.pk}/compact"

    strict = AsyncClient(enforce_csrf_checks=True)
    await db(strict.force_login)(user)
    assert (await strict.post(url)).status_code == 403

    _, raw = await db(ApiToken.issue)(user=user)
    assert (await AsyncClient().post(url, headers={"Authorization": f"Bearer {raw}"})).status_code == 200
    assert (await AsyncClient().post(url, headers={"Authorization": "Bearer sb_wrong"})).status_code == 401
    assert (await AsyncClient().post(url)).status_code == 401


async def test_compacting_someone_elses_conversation_is_not_found(profile, user, other_user, conversation_of):
    conversation = await conversation_of(user)
    client = AsyncClient()
    await db(client.force_login)(other_user)
    assert (await client.post(f"/api/conversations/{conversation.pk}/compact")).status_code == 404


async def test_a_turn_sent_beside_its_write_while_a_compaction_is_pending_is_resent_from_the_window(
    profile, user, conversation_of, open_browser
):
    """The socket stays open across the compaction: the continuation goes upstream beside its write
    (relay/overlap.py), the write finds the compaction pending, so the socket is closed unseen and the turn is
    resent from the compacted window on a new one."""
    from sessions_app.models import UpstreamConnection

    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: amber"))
    second = final(await socket.turn("remember: violet", previous_response_id=first["response"]["id"]))

    client = AsyncClient()
    await db(client.force_login)(user)
    response = await client.post(f"/api/conversations/{conversation.pk}/compact")
    assert response.status_code == 200, response.content

    events = await socket.turn("what did I ask you to remember?", previous_response_id=second["response"]["id"])
    protocol = [e for e in events if not e["type"].startswith("switchboard.")]
    assert [e["type"] for e in protocol].count("response.created") == 1  # the first send's events never shown
    assert "error" not in [e["type"] for e in events]
    assert "switchboard.recovered" not in [e["type"] for e in events]  # from the window: no replay, as a reload shows
    answer = final(events)["response"]
    assert "amber" in text_of(events) and "violet" in text_of(events)
    await socket.close()
    record = await db(lambda: ResponseRecord.objects.get(response_id=answer["id"]))()
    assert record.request_payload["input"][0] == response.json()["output"][0]  # sent from the window
    reasons = await db(lambda: list(UpstreamConnection.objects.filter(conversation=conversation)
                                    .order_by("pk").values_list("close_reason", flat=True)))()
    assert reasons[0] == "resent" and len(reasons) == 2

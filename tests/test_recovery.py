"""Context rebuilt from records (the basis of recovery by replay)."""

from __future__ import annotations

import pytest

from sessions_app.models import CompactionEvent, Item, ResponseRecord
from sessions_app.recovery import context_after, replay_item
from sessions_app.services import conversation_create

pytestmark = pytest.mark.django_db


def user(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text, id_="msg_1"):
    return {"id": id_, "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def record(conversation, response_id, inputs, outputs, parent=None, sent_previous=True, **fields):
    rec = ResponseRecord.objects.create(
        conversation=conversation, response_id=response_id, parent=parent,
        previous_response_id=parent.response_id if parent and sent_previous else "", status="completed", **fields,
    )
    for direction, items in (("input", inputs), ("output", outputs)):
        for position, raw in enumerate(items):
            Item.objects.create(response=rec, direction=direction, position=position, item_type=raw["type"], raw=raw)
    return rec


@pytest.fixture
def conversation(user):
    return conversation_create(owner=user)


def test_replayed_items_lose_server_ids_and_status():
    assert replay_item(assistant("hi")) == {"type": "message", "role": "assistant",
                                           "content": [{"type": "output_text", "text": "hi", "annotations": []}]}
    assert replay_item({"id": "rs_1", "type": "reasoning", "summary": []}) is None
    kept = replay_item({"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "gAAA"})
    assert kept == {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"}


def test_context_is_every_input_and_output_along_the_chain(conversation):
    r1 = record(conversation, "resp_1", [user("one")], [assistant("A1")])
    r2 = record(conversation, "resp_2", [user("two")], [assistant("A2", "msg_2")], parent=r1)
    r3 = record(conversation, "resp_3", [user("three")], [assistant("A3", "msg_3")], parent=r2)
    texts = [item["content"][0]["text"] for item in context_after(r3)]
    assert texts == ["one", "A1", "two", "A2", "three", "A3"]


def test_a_fork_replays_only_its_own_branch(conversation):
    r1 = record(conversation, "resp_1", [user("one")], [assistant("A1")])
    record(conversation, "resp_2", [user("two")], [assistant("A2")], parent=r1)
    fork = record(conversation, "resp_f", [user("other")], [assistant("AF")], parent=r1)
    texts = [item["content"][0]["text"] for item in context_after(fork)]
    assert texts == ["one", "A1", "other", "AF"]


def test_a_replay_node_keeps_only_new_input_and_the_walk_goes_through_it(conversation):
    r1 = record(conversation, "resp_1", [user("one")], [assistant("A1")])
    replay = record(conversation, "resp_r", [user("two")], [assistant("A2")],
                    parent=r1, sent_previous=False, origin="recovery_replay")
    r3 = record(conversation, "resp_3", [user("three")], [assistant("A3")], parent=replay)
    texts = [item["content"][0]["text"] for item in context_after(r3)]
    assert texts == ["one", "A1", "two", "A2", "three", "A3"]


def test_a_chain_started_from_a_standalone_window_replays_from_that_window(conversation):
    r1 = record(conversation, "resp_1", [user("one")], [assistant("A1")])
    window = [{"type": "compaction", "id": "cmp_9", "encrypted_content": "gAAAAB-x"}]
    CompactionEvent.objects.create(conversation=conversation, response=r1, kind="standalone",
                                   compacted_output=window, items_replaced=2)
    started = record(conversation, "resp_2", [user("two")], [assistant("A2")], parent=r1, sent_previous=False)
    context = context_after(started)
    assert context[0] == window[0]
    assert [item["content"][0]["text"] for item in context[1:]] == ["two", "A2"]


def test_server_side_compaction_replaces_what_came_before(conversation):
    r1 = record(conversation, "resp_1", [user("one")], [assistant("A1")])
    compacted = {"id": "cmp_1", "type": "compaction", "encrypted_content": "gAAAAB-opaque"}
    r2 = record(conversation, "resp_2", [user("two")], [compacted, assistant("A2")], parent=r1)
    r3 = record(conversation, "resp_3", [user("three")], [assistant("A3")], parent=r2)
    context = context_after(r3)
    assert context[0] == compacted
    assert [item["content"][0]["text"] for item in context[1:]] == ["A2", "three", "A3"]


def test_a_standalone_compaction_becomes_the_new_base(conversation):
    r1 = record(conversation, "resp_1", [user("one")], [assistant("A1")])
    window = [user("one"), {"type": "compaction", "id": "cmp_9", "encrypted_content": "gAAAAB-x"}]
    CompactionEvent.objects.create(conversation=conversation, response=r1, kind="standalone",
                                   compacted_output=window, items_replaced=2)
    assert context_after(r1) == [user("one"), {"type": "compaction", "id": "cmp_9", "encrypted_content": "gAAAAB-x"}]

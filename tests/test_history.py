"""`switchboard.history`: what a browser needs to draw the conversation as a tree of turns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.models import CompactionEvent, Item, ResponseRecord
from sessions_app.relay import history_event
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db


def test_each_response_names_its_parent_the_attempt_it_superseded_and_its_timings(user):
    default_profile_sync()
    conversation = conversation_create(owner=user, title="history")
    sent = timezone.now() - timedelta(seconds=5)
    root = ResponseRecord.objects.create(
        conversation=conversation, response_id="resp_1", status="completed", sent_at=sent,
        first_text_at=sent + timedelta(milliseconds=250), completed_at=sent + timedelta(seconds=1),
        incomplete_reason="", model="gpt-5.5",
    )
    Item.objects.create(response=root, direction="input", position=0, item_type="message", text="hi",
                        raw={"type": "message", "role": "user", "content": "hi"})
    failed = ResponseRecord.objects.create(conversation=conversation, parent=root, status="failed",
                                           previous_response_id="resp_1", accepted_at=sent + timedelta(seconds=2))
    replay = ResponseRecord.objects.create(
        conversation=conversation, response_id="resp_2", parent=root, supersedes=failed, status="incomplete",
        incomplete_reason="max_output_tokens", origin="recovery_replay",
    )
    CompactionEvent.objects.create(conversation=conversation, response=replay, kind="server_side",
                                   input_tokens_before=900, tokens_after=120, items_replaced=7)

    history = history_event(user=user, conversation_id=conversation.pk)

    first, attempt, turn = history["responses"]
    assert (first["record"], first["parent"], first["supersedes"]) == (root.pk, None, None)
    assert first["ttft_ms"] == 250 and first["sent_at"] == sent.isoformat() and first["model"] == "gpt-5.5"
    # The time a turn shows: when the relay accepted it; a record written before accepted_at gives its sent_at.
    assert first["accepted_at"] == first["sent_at"]
    assert attempt["accepted_at"] == (sent + timedelta(seconds=2)).isoformat() != attempt["sent_at"]
    assert (attempt["record"], attempt["parent"]) == (failed.pk, root.pk)
    assert (turn["parent"], turn["supersedes"], turn["incomplete_reason"]) == (root.pk, failed.pk, "max_output_tokens")
    assert turn["ttft_ms"] is None and turn["completed_at"] is None
    assert history["compactions"] == [{
        "kind": "server_side", "record": replay.pk, "created_at": history["compactions"][0]["created_at"],
        "input_tokens_before": 900, "tokens_after": 120, "items_replaced": 7,
    }]

"""The continuation chain as staff see it: a tree where forks branch."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sessions_app.models import Item, ResponseRecord
from sessions_app.selectors import conversation_chain
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user):
    default_profile_sync()
    return conversation_create(owner=user, title="chain")


def add(conversation, response_id, parent=None, text="", **fields):
    fields.setdefault("status", "completed")
    record = ResponseRecord.objects.create(
        conversation=conversation, response_id=response_id, parent=parent,
        previous_response_id=parent.response_id if parent else "", **fields,
    )
    Item.objects.create(response=record, direction="output", position=0, item_type="message", text=text,
                        raw={"type": "message"})
    return record


def test_a_linear_chain_stays_flat(conversation):
    r = None
    for n in range(1500):  # deeper than Python's recursion limit
        r = add(conversation, f"resp_{n}", parent=r)
    rows = conversation_chain(conversation=conversation)
    assert [row.record.response_id for row in rows][:3] == ["resp_0", "resp_1", "resp_2"]
    assert len(rows) == 1500 and {row.depth for row in rows} == {0}


def test_forks_indent_their_branches_in_order(conversation):
    r1 = add(conversation, "resp_1")
    r2 = add(conversation, "resp_2", parent=r1)
    add(conversation, "resp_3", parent=r2)
    fork = add(conversation, "resp_f", parent=r1, origin="fork")
    add(conversation, "resp_f2", parent=fork)
    rows = conversation_chain(conversation=conversation)
    assert [(row.record.response_id, row.depth) for row in rows] == [
        ("resp_1", 0), ("resp_2", 1), ("resp_3", 1), ("resp_f", 1), ("resp_f2", 1)]
    assert rows[0].forks_here and rows[1].starts_branch and rows[3].starts_branch
    assert not rows[2].starts_branch


def test_a_resent_attempt_folds_into_its_turn_and_is_no_fork(conversation, client, staff_user):
    r1 = add(conversation, "resp_1")
    failed = add(conversation, None, parent=r1, status="failed", response_payload={"superseded_by": "recovery"})
    failed_again = add(conversation, None, parent=r1, status="failed", supersedes=failed)
    replay = add(conversation, "resp_2", parent=r1, origin="recovery_replay", supersedes=failed_again)
    add(conversation, "resp_3", parent=replay)
    rows = conversation_chain(conversation=conversation)
    assert [(row.record.response_id, row.depth, row.attempts) for row in rows] == [
        ("resp_1", 0, 1), ("resp_2", 0, 3), ("resp_3", 0, 1)]
    assert not any(row.forks_here or row.starts_branch for row in rows)
    client.force_login(staff_user)
    page = client.get(reverse("admin:sessions_app_conversation_chain", args=[conversation.pk])).content.decode()
    assert page.count(">recovered, 3 attempts<") == 1 and "forks here" not in page


def test_staff_chain_page_draws_the_tree_and_escapes_model_output(client, staff_user, conversation):
    r1 = add(conversation, "resp_1", text="<script>alert(1)</script>")
    add(conversation, "resp_2", parent=r1, origin="recovery_replay")
    client.force_login(staff_user)
    page = client.get(reverse("admin:sessions_app_conversation_chain", args=[conversation.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "resp_1" in html and "Recovery replay" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_non_staff_cannot_open_the_chain_page(client, user, conversation):
    client.force_login(user)
    response = client.get(reverse("admin:sessions_app_conversation_chain", args=[conversation.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_usage_page_sums_tokens_per_day_and_model(client, staff_user, conversation):
    from sessions_app.selectors import usage_by_day

    add(conversation, "resp_a", model="gpt-5.5", input_tokens=10, output_tokens=5, total_tokens=15)
    add(conversation, "resp_b", model="gpt-5.5", input_tokens=20, cached_input_tokens=8, output_tokens=5,
        total_tokens=25)
    add(conversation, "resp_c", model="o4-mini", input_tokens=1, output_tokens=1, reasoning_tokens=1, total_tokens=2)
    rows = {row.model: row for row in usage_by_day(days=1)}
    assert rows["gpt-5.5"].responses == 2 and rows["gpt-5.5"].total_tokens == 40
    assert rows["gpt-5.5"].cached_input_tokens == 8 and rows["o4-mini"].reasoning_tokens == 1
    client.force_login(staff_user)
    page = client.get(reverse("admin:sessions_app_responserecord_usage") + "?days=abc")
    assert page.status_code == 200 and "o4-mini" in page.content.decode()

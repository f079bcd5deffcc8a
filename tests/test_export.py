"""A conversation exported as JSON rebuilds into the same chain: links, items, errors, compactions, sockets."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.test import Client
from django.urls import reverse

from sessions_app.models import ApiToken, Item, ResponseRecord
from sessions_app.selectors import conversation_chain
from tests.admin_world import PROFILE_KEY, build_world

pytestmark = pytest.mark.django_db


def export_url(conversation) -> str:
    return reverse("conversation_export", args=[conversation.pk])


def test_the_chain_round_trips_through_the_export(client, user):
    world = build_world(user)
    conversation = world.conversation
    client.force_login(user)
    response = client.get(export_url(conversation))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    document = json.loads(response.content)
    assert document["object"] == "switchboard.conversation_export"
    assert document["conversation"]["id"] == str(conversation.pk)

    # Rebuild the records' links from the document alone, then compare with the database.
    by_id = {r["id"]: r for r in document["responses"]}
    records = {r.pk: r for r in conversation.responses.all()}
    assert set(by_id) == set(records)
    for pk, record in records.items():
        exported = by_id[pk]
        parent = by_id.get(exported["parent"])
        superseded = by_id.get(exported["supersedes"])
        assert (parent["response_id"] if parent else None) == (record.parent.response_id if record.parent else None)
        assert (superseded["id"] if superseded else None) == record.supersedes_id
        assert exported["connection"] == record.connection_id
        assert (exported["status"], exported["origin"], exported["usage"]["total_tokens"]) == (
            record.status, record.origin, record.total_tokens)
        items = Item.objects.filter(response=record).order_by("direction", "position")
        assert [(i["direction"], i["position"], i["type"], i["call_id"], i["text"], i["raw"])
                for i in exported["items"]] == [
            (i.direction, i.position, i.item_type, i.call_id, i.text, i.raw) for i in items]
    children = {}
    for exported in document["responses"]:
        children.setdefault(exported["parent"], []).append(exported["id"])
    hello = world.records["hello"].pk
    assert sorted(children[hello]) == sorted(r.pk for r in records.values() if r.parent_id == hello)

    # The chain section is the admin's tree: the resent attempt folded into the replay.
    assert [(row["response"], row["attempts"]) for row in document["chain"]] == [
        (row.record.pk, row.attempts) for row in conversation_chain(conversation=conversation)]
    assert world.records["attempt"].pk not in {row["response"] for row in document["chain"]}

    assert [(e["code"], e["response"]) for e in document["errors"]] == [
        ("previous_response_not_found", world.records["attempt"].pk)]
    assert [(c["kind"], c["response"], c["tokens_after"]) for c in document["compactions"]] == [
        ("server_side", world.records["answer"].pk, 500)]
    assert [(s["close_reason"], s["responses_carried"]) for s in document["connections"]] == [
        ("upstream_error", 3), ("", 0)]


def test_no_key_or_token_hash_is_exported(client, user):
    world = build_world(user)
    token, raw = ApiToken.issue(user=user)
    conversation = world.conversation
    conversation.api_token = token
    conversation.save()
    record = world.records["hello"]  # a key that slipped into a stored request is cut out of the export
    record.request_payload = {"note": f"Authorization: Bearer {PROFILE_KEY}"}
    record.save()
    client.force_login(user)
    text = client.get(export_url(conversation)).content.decode()
    assert PROFILE_KEY not in text and "[redacted]" in text
    assert token.token_hash not in text and raw not in text
    assert json.loads(text)["conversation"]["api_token_prefix"] == token.prefix
    assert conversation.upstream_profile.api_key_encrypted not in text


def test_the_export_answers_a_token_its_owner_and_staff_only(user, other_user, staff_user):
    world = build_world(user)
    url = export_url(world.conversation)
    _, raw = ApiToken.issue(user=user)
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    assert Client().get(url).status_code == 401
    assert Client().get(url, HTTP_AUTHORIZATION="Bearer sb_wrongwrongwrong").status_code == 401
    _, bobs = ApiToken.issue(user=other_user)
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {bobs}").status_code == 404
    staff = Client(enforce_csrf_checks=True)  # a GET needs no CSRF token
    staff.force_login(staff_user)
    assert staff.get(url).status_code == 200
    assert staff.post(url).status_code == 405


def test_the_admin_action_exports_one_as_json_and_several_as_a_zip(client, staff_user, user):
    world = build_world(user)
    second = build_world(user, tag="2").conversation
    client.force_login(staff_user)
    for page in ("change", "chain"):  # both pages link to the export
        html = client.get(reverse(f"admin:sessions_app_conversation_{page}", args=[world.conversation.pk]))
        assert f'href="{export_url(world.conversation)}"' in html.content.decode()
    changelist = reverse("admin:sessions_app_conversation_changelist")
    one = client.post(changelist, {"action": "export_json", "_selected_action": [world.conversation.pk]})
    assert one.status_code == 200 and "attachment" in one["Content-Disposition"]
    assert json.loads(one.content)["conversation"]["id"] == str(world.conversation.pk)
    assert PROFILE_KEY.encode() not in one.content
    both = client.post(changelist, {"action": "export_json",
                                    "_selected_action": [world.conversation.pk, second.pk]})
    names = zipfile.ZipFile(io.BytesIO(both.content)).namelist()
    assert sorted(names) == sorted(f"conversation-{pk}.json" for pk in (world.conversation.pk, second.pk))
    assert ResponseRecord.objects.filter(conversation=second).count() == 6

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError

from sessions_app.models import ApiToken, Conversation, Item, ResponseRecord, UpstreamProfile
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db


def test_api_key_is_encrypted_at_rest_and_round_trips():
    profile = UpstreamProfile(name="openai", websocket_url="wss://api.openai.com/v1/responses")
    profile.set_api_key("sk-live-abcdef123456wxyz")
    profile.save()
    stored = UpstreamProfile.objects.values("api_key_encrypted", "api_key_last4").get(pk=profile.pk)
    assert "sk-live" not in stored["api_key_encrypted"]
    assert stored["api_key_last4"] == "wxyz"
    assert UpstreamProfile.objects.get(pk=profile.pk).get_api_key() == "sk-live-abcdef123456wxyz"


def test_default_profile_points_at_the_simulator_without_a_key(settings):
    profile = default_profile_sync()
    assert profile.websocket_url == settings.SIMULATOR_URL
    assert not profile.has_api_key
    assert profile.is_default


def test_default_profile_follows_the_environment_key(settings):
    settings.OPENAI_API_KEY = "sk-env-0000000000009999"
    settings.OPENAI_WEBSOCKET_URL = "wss://api.openai.com/v1/responses"
    profile = default_profile_sync()
    assert profile.websocket_url == "wss://api.openai.com/v1/responses"
    assert profile.get_api_key() == "sk-env-0000000000009999"
    assert UpstreamProfile.objects.count() == 1  # updated in place, not duplicated
    settings.OPENAI_API_KEY = ""
    assert not default_profile_sync().has_api_key


def test_conversation_takes_the_default_profile_and_model(user):
    profile = default_profile_sync()
    conversation = conversation_create(owner=user, title="hello")
    assert conversation.upstream_profile == profile
    assert conversation.model == profile.default_model
    assert conversation.status == Conversation.Status.IDLE


def test_a_new_conversation_reads_back_exactly_as_created(user):
    """conversation_create writes with one prepared INSERT (models/statements.py), not save()."""
    profile = default_profile_sync()
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
    made = conversation_create(owner=user, title="t" * 250, profile=profile, instructions="Be brief.", tools=tools,
                               reasoning_effort="low", max_output_tokens=300, created_via="gateway")
    assert made._state.adding is False and made.created_at is not None
    loaded = Conversation.objects.get(pk=made.pk)
    assert {f.attname: getattr(loaded, f.attname) for f in Conversation._meta.concrete_fields} == {
        f.attname: getattr(made, f.attname) for f in Conversation._meta.concrete_fields}
    assert loaded.title == "t" * 200 and loaded.tools == tools and loaded.upstream_profile_id == profile.pk


def test_response_chain_links_and_unique_response_id(user):
    conversation = conversation_create(owner=user)
    root = ResponseRecord.objects.create(conversation=conversation, response_id="resp_1")
    child = ResponseRecord.objects.create(
        conversation=conversation, response_id="resp_2", previous_response_id="resp_1", parent=root
    )
    assert list(root.children.all()) == [child]
    with pytest.raises(IntegrityError):
        ResponseRecord.objects.create(conversation=conversation, response_id="resp_1")


def test_items_keep_their_order_and_position_is_unique(user):
    record = ResponseRecord.objects.create(conversation=conversation_create(owner=user), response_id="resp_x")
    Item.objects.create(response=record, direction="input", position=0, item_type="message", raw={})
    with pytest.raises(IntegrityError):
        Item.objects.create(response=record, direction="input", position=0, item_type="message", raw={})


def test_api_token_is_stored_hashed_and_shown_once(user):
    token, raw = ApiToken.issue(user=user, name="agent")
    assert raw.startswith("sb_")
    assert raw not in token.token_hash and token.prefix == raw[:10]
    assert ApiToken.authenticate(raw) == user
    token.refresh_from_db()
    assert token.last_used_at is not None
    token.revoke()
    assert ApiToken.authenticate(raw) is None
    assert ApiToken.authenticate("sb_not-a-token") is None


def test_api_token_use_is_recorded_to_the_minute(user):
    token, raw = ApiToken.issue(user=user, name="fleet")
    ApiToken.authenticate(raw)
    token.refresh_from_db()
    first = token.last_used_at
    ApiToken.authenticate(raw)  # a second socket within the minute: no write
    token.refresh_from_db()
    assert token.last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    ApiToken.authenticate(raw)
    token.refresh_from_db()
    assert token.last_used_at > first
    token.revoke()
    assert ApiToken.authenticate(raw) is None
    assert ApiToken.authenticate("sb_not-a-token") is None


@pytest.mark.django_db(transaction=True)
def test_naming_a_response_does_not_lock_out_the_insert_of_its_child_on_postgresql(user):
    """The recorder names a response (UPDATE response_id) in a batch while the next turn's request,
    whose foreign key points at it, is inserted: on PostgreSQL the two must not wait for each other."""
    import psycopg
    from django.db import connection

    from sessions_app.recording.ops import insert_statement

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL row locks")
    parent = ResponseRecord.objects.create(conversation=conversation_create(owner=user))
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory")
    sql, values = insert_statement([ResponseRecord(conversation_id=parent.conversation_id, parent_id=parent.pk)])
    with psycopg.connect(**params) as batch, psycopg.connect(**params, autocommit=True) as relay:
        batch.execute("UPDATE sessions_app_responserecord SET response_id = %s WHERE id = %s", ["resp_x", parent.pk])
        relay.execute("SET lock_timeout = '500ms'")
        relay.execute(sql, values)  # with a full unique index on response_id: LockNotAvailable
        batch.commit()
    assert ResponseRecord.objects.get(parent=parent).parent.response_id == "resp_x"


def test_a_record_without_a_response_id_reads_as_pending_only_while_in_flight(user):
    from sessions_app.models import Conversation, ResponseRecord

    conversation = Conversation.objects.create(owner=user, title="t")
    pending = ResponseRecord.objects.create(conversation=conversation, status="in_progress")
    refused = ResponseRecord.objects.create(conversation=conversation, status="failed")
    named = ResponseRecord.objects.create(conversation=conversation, status="completed", response_id="resp_x")
    assert (str(pending), str(refused), str(named)) == (
        f"(pending #{pending.pk})", f"attempt #{refused.pk} (never created)", "resp_x")

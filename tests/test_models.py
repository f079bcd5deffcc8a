from __future__ import annotations

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

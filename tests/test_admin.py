from __future__ import annotations

import pytest
from django.urls import reverse

from sessions_app.models import ApiToken, UpstreamProfile
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db

MODELS = ["upstreamprofile", "conversation", "upstreamconnection", "responserecord", "item", "errorevent",
          "compactionevent", "apitoken"]


@pytest.mark.parametrize("model", MODELS)
def test_admin_lists_every_model(client, staff_user, model):
    client.force_login(staff_user)
    assert client.get(reverse(f"admin:sessions_app_{model}_changelist")).status_code == 200


def test_admin_never_renders_an_api_key(client, staff_user):
    profile = default_profile_sync()
    profile.set_api_key("sk-super-secret-value-9876")
    profile.save()
    client.force_login(staff_user)
    for url in (reverse("admin:sessions_app_upstreamprofile_changelist"),
                reverse("admin:sessions_app_upstreamprofile_change", args=[profile.pk])):
        page = client.get(url).content.decode()
        assert "sk-super-secret" not in page
        assert profile.api_key_encrypted not in page
    assert "9876" in client.get(reverse("admin:sessions_app_upstreamprofile_changelist")).content.decode()


def test_admin_sets_a_key_write_only(client, staff_user):
    client.force_login(staff_user)
    response = client.post(reverse("admin:sessions_app_upstreamprofile_add"), {
        "name": "azure", "websocket_url": "wss://example.openai.azure.com/openai/v1/responses",
        "auth_style": "azure_api_key", "api_key": "azure-key-abcd", "default_model": "gpt-5.5",
        "allowed_models": "[]", "extra_headers": "{}", "enabled": "on", "available_to_all": "on",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    profile = UpstreamProfile.objects.get(name="azure")
    assert profile.get_api_key() == "azure-key-abcd"
    assert profile.api_key_last4 == "abcd"


def test_admin_conversation_and_token_pages_render(client, staff_user, user):
    default_profile_sync()
    conversation = conversation_create(owner=user, title="t")
    ApiToken.issue(user=user)
    client.force_login(staff_user)
    assert client.get(reverse("admin:sessions_app_conversation_change", args=[conversation.pk])).status_code == 200
    assert client.get(reverse("admin:sessions_app_apitoken_changelist") + "?q=alice").status_code == 200


@pytest.mark.parametrize("model", ["upstreamconnection", "responserecord", "item", "errorevent", "compactionevent"])
def test_records_are_read_only_in_admin(client, staff_user, model):
    client.force_login(staff_user)
    assert client.get(reverse(f"admin:sessions_app_{model}_add")).status_code == 403


def test_a_conversations_owner_status_and_origin_are_read_only_in_admin(client, staff_user, user, other_user):
    default_profile_sync()
    token, _ = ApiToken.issue(user=user)
    conversation = conversation_create(owner=user, title="before", created_via="gateway", api_token_pk=token.pk)
    url = reverse("admin:sessions_app_conversation_change", args=[conversation.pk])
    client.force_login(staff_user)

    page = client.get(url).content.decode()
    for name in ("owner", "status", "created_via", "api_token"):
        assert f'name="{name}"' not in page, name
    assert "Gateway (API token)" in page  # shown, not editable

    # A forged POST naming them changes only what is editable.
    form = {
        "title": "after", "upstream_profile": conversation.upstream_profile_id, "model": conversation.model,
        "instructions": "", "tools": "[]", "recovery_enabled": "on", "reasoning_effort": "",
        "max_output_tokens": "", "compact_threshold": "", "archived_at_0": "", "archived_at_1": "",
        "owner": other_user.pk, "status": "failed", "created_via": "browser", "api_token": "",
        "responses-TOTAL_FORMS": "0", "responses-INITIAL_FORMS": "0",
        "responses-MIN_NUM_FORMS": "0", "responses-MAX_NUM_FORMS": "0",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    conversation.refresh_from_db()
    assert conversation.title == "after"
    assert (conversation.owner_id, conversation.status, conversation.created_via, conversation.api_token_id) == (
        user.pk, "idle", "gateway", token.pk)


def test_staff_still_choose_the_owner_when_adding_a_conversation(client, staff_user):
    client.force_login(staff_user)
    page = client.get(reverse("admin:sessions_app_conversation_add")).content.decode()
    assert 'name="owner"' in page
    assert 'name="status"' not in page and 'name="created_via"' not in page

"""The conversation settings form (sessions_app/forms.py) and the two views that save it: a refused field
gets its own message, and nothing is saved."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from sessions_app.forms import ConversationSettingsForm
from sessions_app.models import Conversation, UpstreamProfile
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
          "strict": True}]


@pytest.fixture
def profile():
    return default_profile_sync()


@pytest.fixture
def restricted(db):
    """A profile that offers two models, for anyone."""
    return UpstreamProfile.objects.create(name="restricted", websocket_url="ws://127.0.0.1:9/v1/responses",
                                          default_model="gpt-5.5", allowed_models=["gpt-5.5", "gpt-5.5-mini"])


@pytest.fixture
def private(db, other_user):
    """A profile only bob may use."""
    private = UpstreamProfile.objects.create(name="bobs", websocket_url="ws://127.0.0.1:9/v1/responses",
                                             available_to_all=False)
    private.allowed_users.add(other_user)
    return private


def valid(profile, **changes) -> dict[str, object]:
    data = {"title": "Weather desk", "upstream_profile": str(profile.pk), "model": "gpt-5.5",
            "reasoning_effort": "low", "max_output_tokens": "800", "instructions": "Be brief.",
            "tools": json.dumps(TOOLS), "store": "on", "recovery_enabled": "on", "compact_threshold": "5000"}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


BAD = [
    pytest.param("tools", "[{not json", "Not valid JSON: ", id="tools-not-json"),
    pytest.param("tools", '{"type": "function"}', "Tools must be a JSON list", id="tools-not-a-list"),
    pytest.param("tools", '[{"type": "function", "parameters": {"type": "object"}}]', 'Tool 1: "name" is missing.',
                 id="tools-missing-name"),
    pytest.param("tools", json.dumps(TOOLS + TOOLS), 'Tool 2 ("get_weather"): the name is already used by tool 1.',
                 id="tools-duplicate-names"),
    pytest.param("tools", json.dumps([{**TOOLS[0], "parameters": ["city"]}]),
                 'Tool 1 ("get_weather"): "parameters" must be a JSON schema object', id="tools-bad-parameters"),
    pytest.param("max_output_tokens", "-5", "At least 16", id="negative-max-output-tokens"),
    pytest.param("max_output_tokens", "12", "At least 16", id="too-few-output-tokens"),
    pytest.param("max_output_tokens", "many", "A whole number of tokens", id="max-output-tokens-not-a-number"),
    pytest.param("compact_threshold", "0", "A positive number of tokens", id="zero-threshold"),
    pytest.param("reasoning_effort", "extreme", "Choose one of the listed efforts.", id="unknown-effort"),
    pytest.param("model", "gpt 5", "no spaces", id="model-with-a-space"),
    pytest.param("title", "x" * 201, "at most 200 characters", id="title-too-long"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD)
def test_a_bad_value_gets_an_error_on_its_field_and_nothing_is_created(client, user, profile, field, value,
                                                                      message):
    client.force_login(user)
    response = client.post(reverse("conversation_new"), valid(profile, **{field: value}))
    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field]
    assert any(message in error for error in form.errors[field]), form.errors[field]
    assert message.split('"')[0] in response.content.decode().replace("&quot;", '"')
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(("field", "value", "message"), BAD)
def test_a_bad_value_in_the_drawer_is_answered_in_json_and_nothing_is_saved(client, user, profile, field, value,
                                                                          message):
    conversation = conversation_create(owner=user, title="before", profile=profile)
    client.force_login(user)
    response = client.post(reverse("conversation_settings", args=[conversation.pk]), valid(profile, **{field: value}),
                           headers={"Accept": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False and list(body["errors"]) == [field]
    assert any(message in error for error in body["errors"][field])
    conversation.refresh_from_db()
    assert (conversation.title, conversation.instructions, conversation.tools, conversation.store) == (
        "before", "", [], False)


def test_a_model_the_profile_does_not_offer_is_refused(client, user, restricted):
    client.force_login(user)
    response = client.post(reverse("conversation_new"), valid(restricted, model="gpt-4o"))
    assert response.status_code == 400
    assert response.context["form"].errors["model"] == [
        'The profile "restricted" does not offer "gpt-4o". Choose one of: gpt-5.5, gpt-5.5-mini.']
    assert not Conversation.objects.exists()


def test_a_profile_the_user_may_not_use_is_refused(client, user, profile, private):
    client.force_login(user)
    response = client.post(reverse("conversation_new"), valid(private))
    assert response.status_code == 400
    assert response.context["form"].errors["upstream_profile"] == [
        "That profile is not available to you: choose one from the list."]
    assert b'value="%d"' % private.pk not in response.content  # not even offered
    assert not Conversation.objects.exists()


def test_a_valid_form_creates_the_conversation_with_every_setting(client, user, profile):
    client.force_login(user)
    response = client.post(reverse("conversation_new"), valid(profile))
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("conversation_detail",
                                                                           args=[conversation.pk])
    assert (conversation.owner, conversation.title, conversation.upstream_profile, conversation.model) == (
        user, "Weather desk", profile, "gpt-5.5")
    assert (conversation.reasoning_effort, conversation.max_output_tokens, conversation.instructions) == (
        "low", 800, "Be brief.")
    assert (conversation.tools, conversation.store, conversation.recovery_enabled,
            conversation.compact_threshold) == (TOOLS, True, True, 5000)


def test_empty_fields_mean_the_defaults(user, profile, restricted):
    form = ConversationSettingsForm({"upstream_profile": str(restricted.pk)}, user=user)
    assert form.is_valid(), form.errors
    settings = form.settings()
    assert settings["model"] == "gpt-5.5" and settings["tools"] == [] and settings["max_output_tokens"] is None
    assert settings["compact_threshold"] is None and settings["reasoning_effort"] == ""
    form = ConversationSettingsForm({}, user=user)  # no profile named: the default one
    assert form.is_valid(), form.errors
    assert form.settings()["upstream_profile"] == profile


def test_a_model_list_is_offered_for_a_profile_with_allowed_models(user, profile, restricted):
    form = ConversationSettingsForm(user=user, instance=conversation_create(owner=user, profile=restricted))
    assert 'option value="gpt-5.5-mini"' in str(form["model"])
    assert form.profile_models()[str(restricted.pk)]["allowed_models"] == ["gpt-5.5", "gpt-5.5-mini"]
    form = ConversationSettingsForm(user=user)  # the default profile allows any model: a text field
    assert 'type="text"' in str(form["model"]) and 'value="gpt-5.5"' in str(form["model"])


def test_the_owner_changes_the_settings_and_gets_them_back_in_json(client, user, profile):
    conversation = conversation_create(owner=user, title="before", profile=profile)
    client.force_login(user)
    response = client.post(reverse("conversation_settings", args=[conversation.pk]), valid(profile),
                           headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["errors"] == {}
    assert body["settings"] == {
        "title": "Weather desk", "upstream_profile": profile.pk, "upstream_profile_name": profile.name,
        "model": "gpt-5.5", "reasoning_effort": "low", "max_output_tokens": 800, "instructions": "Be brief.",
        "tools": TOOLS, "store": True, "recovery_enabled": True, "compact_threshold": 5000}
    conversation.refresh_from_db()
    assert conversation.title == "Weather desk" and conversation.tools == TOOLS


def test_without_scripts_the_settings_page_saves_and_returns_to_the_conversation(client, user, profile):
    conversation = conversation_create(owner=user, title="before", profile=profile)
    client.force_login(user)
    page = client.get(reverse("conversation_settings", args=[conversation.pk]))
    assert page.status_code == 200 and b'name="tools"' in page.content
    response = client.post(reverse("conversation_settings", args=[conversation.pk]), valid(profile))
    assert response.status_code == 302 and response["Location"] == reverse("conversation_detail",
                                                                           args=[conversation.pk])
    refused = client.post(reverse("conversation_settings", args=[conversation.pk]),
                          valid(profile, title="after", tools="[1]"))
    assert refused.status_code == 400 and b"Tool 1: must be an object" in refused.content
    conversation.refresh_from_db()
    assert conversation.title == "Weather desk"


def test_nobody_else_sees_or_changes_the_settings(client, user, other_user, staff_user, profile):
    conversation = conversation_create(owner=user, title="alice's", profile=profile)
    url = reverse("conversation_settings", args=[conversation.pk])
    for someone in (other_user, staff_user):  # staff may read the conversation, not change it
        client.force_login(someone)
        assert client.get(url).status_code == 404
        assert client.post(url, valid(profile, title="taken"), headers={"Accept": "application/json"}
                           ).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "alice's"


def test_the_new_conversation_page_and_the_dashboard_offer_the_form(client, user, profile):
    client.force_login(user)
    page = client.get(reverse("conversation_new"))
    assert page.status_code == 200 and b'data-settings-form="page"' in page.content
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert 'id="new-conversation-dialog"' in dashboard and 'data-settings-form="dialog"' in dashboard
    assert f'href="{reverse("conversation_new")}"' in dashboard  # the link for browsers without scripts
    assert "{#" not in dashboard and "{% comment" not in dashboard
    form = ConversationSettingsForm(user=user)  # a new conversation starts from the model's defaults
    assert 'checked' in str(form["recovery_enabled"]) and 'checked' not in str(form["store"])

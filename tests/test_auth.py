from __future__ import annotations

import pytest
from django.urls import reverse

from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["dashboard", "token_list", "password_change"])
def test_anonymous_users_are_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_page_is_public_and_signs_in(client, user):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200


def test_logout_is_a_post(client, user):
    client.force_login(user)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_signup_is_off_by_default(client, settings):
    assert client.get("/accounts/signup/").status_code == 404
    settings.SWITCHBOARD_SIGNUP_ENABLED = True
    assert client.get("/accounts/signup/").status_code == 200


def test_non_staff_are_kept_out_of_admin(client, user):
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_users_cannot_read_each_others_conversations(client, user, other_user):
    default_profile_sync()
    mine = conversation_create(owner=user, title="alice's secret plan")
    client.force_login(other_user)
    assert client.get(reverse("conversation_detail", args=[mine.pk])).status_code == 404
    assert "alice's secret plan" not in client.get(reverse("dashboard")).content.decode()


def test_staff_may_view_any_conversation_read_only(client, user, staff_user):
    default_profile_sync()
    mine = conversation_create(owner=user, title="watched")
    client.force_login(staff_user)
    response = client.get(reverse("conversation_detail", args=[mine.pk]))
    assert response.status_code == 200
    assert response.context["read_only"] is True


def test_new_conversation_uses_the_default_profile(client, user):
    default_profile_sync()
    client.force_login(user)
    response = client.post(reverse("conversation_new"), {"title": "first"})
    assert response.status_code == 302
    assert user.conversations.get().title == "first"


def test_token_page_shows_a_new_token_once_and_revokes(client, user):
    client.force_login(user)
    created = client.post(reverse("token_list"), {"name": "agent"})
    assert created.status_code == 302 and created["Location"] == reverse("token_list")  # POST/redirect/GET
    response = client.get(reverse("token_list"))
    raw = response.context["new_token"]
    assert raw.startswith("sb_") and raw in response.content.decode()
    assert 'websocket_base_url="ws://testserver/v1"' in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    again = client.get(reverse("token_list"))  # a reload: shown no more, and no second token
    assert raw not in again.content.decode() and user.api_tokens.count() == 1
    token = user.api_tokens.get()
    confirm = client.get(reverse("token_revoke", args=[token.pk]))  # revoking asks first
    assert confirm.status_code == 200 and b"Revoke token" in confirm.content
    token.refresh_from_db()
    assert token.is_active
    client.post(reverse("token_revoke", args=[token.pk]))
    token.refresh_from_db()
    assert not token.is_active


def test_the_sdk_snippet_names_the_model_a_gateway_create_gets(client, user):
    from sessions_app.models import UpstreamProfile

    UpstreamProfile.objects.create(name="team", websocket_url="ws://127.0.0.1:9/v1/responses", auth_style="none",
                                   default_model="o4-mini", is_default=True)
    client.force_login(user)
    client.post(reverse("token_list"), {"name": "agent"})
    page = client.get(reverse("token_list")).content.decode()
    assert 'connection.response.create(model="o4-mini", input="hello", store=False)' in page


def test_users_cannot_revoke_each_others_tokens(client, user, other_user):
    from sessions_app.models import ApiToken

    token, _ = ApiToken.issue(user=user)
    client.force_login(other_user)
    assert client.post(reverse("token_revoke", args=[token.pk])).status_code == 404
    assert client.get(reverse("token_revoke", args=[token.pk])).status_code == 404

"""Password guessing on the sign-in page stops after a few tries (django-axes, sessions_app/login_throttle.py).

5 failures per (username, address) or 20 per address lock out for 15 minutes; the locked-out page is a 429.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

RIGHT = "alice-password-1"  # tests/conftest.py's `user`


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Dozens of sign-ins per test: a cheap hasher (autouse: set before the users are made)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(client: Client, username: str, password: str, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_out(response) -> None:
    page = response.content.decode()
    assert response.status_code == 429, page[:500]
    assert "Too many sign-in attempts" in page and "Try again in 15 minutes" in page
    assert "<script" not in page and "<style" not in page and "style=" not in page  # the CSP allows neither


def test_five_wrong_passwords_lock_the_account_until_the_cool_off_ends(user):
    client = Client()
    assert [sign_in(client, "alice", "wrong").status_code for _ in range(4)] == [200] * 4  # the form, with an error
    assert_locked_out(sign_in(client, "alice", "wrong"))
    assert_locked_out(sign_in(client, "alice", RIGHT))  # the right password too
    assert not signed_in(client)

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))  # the cool-off passes
    assert sign_in(client, "alice", RIGHT).status_code == 302
    assert signed_in(client)
    assert not AccessAttempt.objects.filter(username="alice").exists()  # reset on success


def test_the_admin_sign_in_is_throttled_too(staff_user):
    client = Client()
    url = reverse("admin:login")
    for _ in range(5):
        response = client.post(url, {"username": "staff", "password": "wrong"})
    assert response.status_code == 429
    assert client.post(url, {"username": "staff", "password": "staff-password-1"}).status_code == 429


def test_twenty_failures_from_one_address_lock_every_username(user):
    client = Client()
    for n in range(19):
        assert sign_in(client, f"someone{n}", "wrong").status_code == 200
    assert_locked_out(sign_in(client, "someone19", "wrong"))
    assert_locked_out(sign_in(client, "alice", RIGHT))
    assert Client(REMOTE_ADDR="198.51.100.20").post(
        reverse("login"), {"username": "alice", "password": RIGHT}).status_code == 302  # another address


def test_a_success_clears_only_its_own_failures(user, other_user):
    client = Client()
    for _ in range(4):
        sign_in(client, "bob", "wrong")
    assert sign_in(client, "alice", RIGHT).status_code == 302  # an attacker's own valid account
    assert_locked_out(sign_in(Client(), "bob", "wrong"))  # bob's four failures still count


def test_forwarded_for_counts_only_behind_a_trusted_proxy(user, settings):
    settings.SWITCHBOARD_TRUSTED_PROXIES = 0
    client = Client()
    for n in range(5):
        response = sign_in(client, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert response.status_code == 429  # a header the client writes changes nothing

    settings.SWITCHBOARD_TRUSTED_PROXIES = 1
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    for _ in range(5):
        response = sign_in(proxy, "alice", "wrong", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.50")
    assert response.status_code == 429
    assert sign_in(proxy, "alice", RIGHT, HTTP_X_FORWARDED_FOR="203.0.113.50, 203.0.113.51").status_code == 302

"""Signing in through the real login form, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import create_user, sign_in

pytestmark = pytest.mark.browser


def test_a_user_signs_in_through_the_form_and_lands_on_the_dashboard(page: Page, daphne_server) -> None:
    create_user("alice", "alice-password-1")

    page.goto("/")  # not signed in: sent to the login page
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    sign_in(page, "alice", "alice-password-1")

    expect(page).to_have_url(f"{daphne_server.base_url}/")
    expect(page.get_by_role("button", name="Sign out (alice)")).to_be_visible()


def test_a_wrong_password_shows_an_error_and_signs_nobody_in(page: Page) -> None:
    create_user("alice", "alice-password-1")

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_text("Please enter a correct username and password")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))

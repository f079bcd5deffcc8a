"""The API tokens page, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import create_user, sign_in

pytestmark = pytest.mark.browser


def test_a_new_api_token_is_shown_once_and_then_only_by_its_prefix(page: Page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")

    page.get_by_role("link", name="API tokens").click()
    page.get_by_placeholder("Token name").fill("my agent")
    page.get_by_role("button", name="Create token").click()

    secret = page.locator("#new-token code.secret")
    expect(secret).to_have_text(re.compile(r"^sb_[\w-]{40,}$"))
    token = secret.inner_text()
    row = page.locator("table.list tbody tr", has_text="my agent")
    expect(row).to_contain_text(f"{token[:10]}…")
    expect(row.get_by_role("button", name="Revoke")).to_be_visible()

    page.goto("/tokens/")  # the token is never shown again
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.locator("table.list tbody tr", has_text="my agent")).to_contain_text(f"{token[:10]}…")
    assert token not in page.content()

"""The API tokens page, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import create_user, orm, sign_in

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
    expect(row.get_by_role("link", name="Revoke")).to_be_visible()

    page.goto("/tokens/")  # the token is never shown again
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.locator("table.list tbody tr", has_text="my agent")).to_contain_text(f"{token[:10]}…")
    assert token not in page.content()


def create_token(page: Page, username: str, name: str = "") -> None:
    """A new user, signed in, creates a token on the tokens page."""
    create_user(username, f"{username}-password-1")
    sign_in(page, username, f"{username}-password-1")
    page.goto("/tokens/")
    page.get_by_placeholder("Token name").fill(name)
    page.get_by_role("button", name="Create token").click()


def test_a_reload_after_creating_a_token_makes_no_second_one(page: Page) -> None:
    create_token(page, "carol", "ci agent")
    expect(page.locator("#new-token")).to_be_visible()
    # The snippet is ready to paste: this server's own socket URL and the new secret.
    secret = page.locator("#new-token-secret").inner_text()
    snippet = page.locator("#new-token-snippet").inner_text()
    assert f'api_key="{secret}"' in snippet
    assert 'websocket_base_url="ws://127.0.0.1:' in snippet and '/v1"' in snippet
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.locator("table.list tbody tr", has_text="ci agent")).to_have_count(1)
    from sessions_app.models import ApiToken
    assert orm(lambda: ApiToken.objects.filter(user__username="carol").count()) == 1


def test_copy_puts_the_secret_on_the_clipboard(new_page) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    create_token(page, "dave")
    secret = page.locator("#new-token-secret").inner_text()
    page.locator("#new-token").get_by_role("button", name="Copy").first.click()
    expect(page.locator("#new-token").get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret


def test_revoking_asks_first(page: Page) -> None:
    create_token(page, "erin", "to revoke")
    row = page.locator("table.list tbody tr", has_text="to revoke")
    row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name=re.compile("Revoke token"))).to_be_visible()
    page.get_by_role("link", name="Cancel").click()
    expect(row).to_contain_text("never")  # still active: nothing happened
    row.get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke token").click()
    expect(page.locator(".flash.success")).to_contain_text("revoked")
    expect(row).to_contain_text("revoked")


def test_the_page_shows_when_a_token_was_last_used(page: Page, daphne_server) -> None:
    """The official SDK opens the gateway socket with the new token; the page then shows the minute of that use."""
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    create_token(page, "frank", "sdk script")
    secret = page.locator("#new-token-secret").inner_text()
    last_used = page.locator("table.list tbody tr", has_text="sdk script").locator("td").nth(3)
    expect(last_used).to_have_text("never")

    def chat() -> str:  # off the test thread, which Playwright's event loop holds
        client = OpenAI(api_key=secret, websocket_base_url=daphne_server.ws_url + "/v1")
        with client.responses.connect() as connection:
            connection.response.create(model="gpt-5.5", input="hello", store=False)
            for event in connection:
                if event.type in ("response.completed", "response.failed", "error"):
                    return event.type
        return "closed"

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(chat).result(timeout=30) == "response.completed"
    page.reload()
    expect(last_used).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$"))

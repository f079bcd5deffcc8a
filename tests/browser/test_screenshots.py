"""Screenshots of each user page at 1280 and 420 px: `make screenshots` writes them to docs/screenshots/.

Without SWITCHBOARD_SCREENSHOTS=1 the test still renders every page at both widths, filled with
realistic content, and checks that none scrolls sideways; it only writes no file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import (
    NARROW,
    WIDE,
    assert_fits,
    fill_conversation,
    new_conversation,
    resize,
    seed_conversations,
)
from tests.browser.support import composer_ready, create_user, send, sign_in

pytestmark = pytest.mark.browser

# SWITCHBOARD_SCREENSHOTS_DIR writes them elsewhere (to look at a change without touching docs/).
OUT = Path(os.environ.get("SWITCHBOARD_SCREENSHOTS_DIR") or Path(__file__).resolve().parents[2] / "docs" / "screenshots")
WRITE = os.environ.get("SWITCHBOARD_SCREENSHOTS") == "1"
MAX_HEIGHT = 1400  # a long page is cut here: the top of it shows the design, the files stay small


def shoot(page: Page, name: str, *, whole: bool = True, at_end: bool = False) -> None:
    """The page at both widths (the page is not reloaded: what it shows once, e.g. a new token, stays).

    `whole`: the page from its top (at most MAX_HEIGHT); else the window, scrolled to the top or `at_end`.
    """
    for width in (WIDE, NARROW):
        resize(page, width)
        page.evaluate("(end) => window.scrollTo(0, end ? document.scrollingElement.scrollHeight : 0)", at_end)
        assert_fits(page, name, width)
        if not WRITE:
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}-{width}.png"
        if whole:
            height = min(page.evaluate("document.scrollingElement.scrollHeight"), MAX_HEIGHT)
            page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height},
                            animations="disabled", caret="initial")
        else:  # the window as a reader sees it, the composer kept at its bottom
            page.screenshot(path=str(path), animations="disabled")


def test_every_page_at_both_widths(new_page) -> None:
    create_user("alice", "alice-password-1")
    seed_conversations("alice")
    visitor = new_page()
    visitor.goto("/accounts/login/")
    expect(visitor.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(visitor, "login")

    page = new_page()
    resize(page, WIDE)
    sign_in(page, "alice", "alice-password-1")
    path = new_conversation("alice", "Launch day plan")
    page.goto(path)
    fill_conversation(page)
    page.goto(path)  # as a reader arriving finds it: rendered from the records
    composer_ready(page)
    resize(page, WIDE)
    shoot(page, "conversation", whole=False)  # its top: the heading, the first turns
    shoot(page, "conversation-end", whole=False, at_end=True)  # its end: the long id wrapped, the error

    # Two parallel function calls, each with its own answer form.
    send(page, '/tool get_weather {"city": "Lisbon"} /tool get_time {"zone": "WET"}')
    expect(page.locator(".tool-answer")).to_have_count(2)
    shoot(page, "conversation-tools", whole=False, at_end=True)
    for index, text in enumerate(("sunny, 24 °C", "14:05")):
        page.locator(".tool-answer textarea").nth(index).fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#transcript")).to_contain_text("The get_time tool returned 14:05.")
    composer_ready(page)

    # A branch: a message edited; the chain panel draws both branches.
    page.locator("#transcript > article.turn", has_text="Which id was it?").get_by_role("button", name="Edit").click()
    page.get_by_label("Message").fill("Which **launch week** task comes first?")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#transcript .switcher .position").first).to_have_text("2 / 2")
    composer_ready(page)
    page.get_by_role("button", name="Chain").click()
    expect(page.locator("#chain-list .mark.fork")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "conversation-chain", whole=False)
    page.get_by_role("complementary", name="Chain").get_by_role("button", name="Close").click()
    page.locator("[data-opens='settings-drawer']").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    shoot(page, "conversation-settings", whole=False)
    page.keyboard.press("Escape")

    page.goto("/")
    shoot(page, "dashboard")
    page.get_by_role("button", name="New conversation").click()
    expect(page.get_by_role("dialog", name="New conversation")).to_be_visible()
    shoot(page, "new-conversation", whole=False)
    page.keyboard.press("Escape")

    page.goto("/tokens/")
    page.get_by_placeholder("Token name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    shoot(page, "tokens")

    page.goto("/accounts/password_change/")
    shoot(page, "password-change")

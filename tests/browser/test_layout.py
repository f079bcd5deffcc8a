"""Narrow windows, the keyboard and screen readers: every user page fits 420 px, the composer's buttons
stay on screen while a response streams, a skip link and a "/" shortcut, visible focus, the heading
follows the server's title, and finished messages are announced once."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import (
    LONG_WORD,
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

FILLER_RUN = re.compile(r"(\b(the|lane|will|keep|each|byte|flow|fast|and|then|send|more) ){8}")  # /long's words


@pytest.fixture
def daphne_env() -> dict[str, str]:
    return {"SWITCHBOARD_SIGNUP_ENABLED": "true"}  # the sign-up page is one of the pages


def in_viewport(page: Page, selector: str) -> dict:
    box = page.locator(selector).bounding_box()
    window = page.viewport_size
    inside = bool(box) and box["width"] > 0 and box["x"] >= 0 and box["y"] >= 0 \
        and box["x"] + box["width"] <= window["width"] and box["y"] + box["height"] <= window["height"]
    return {"inside": inside, "box": box, "window": window}


def open_menu(page: Page) -> None:
    page.locator(".nav-menu > summary").click()
    expect(page.locator(".nav-menu nav")).to_be_visible()


def test_every_user_page_fits_a_420px_window(page: Page, new_page) -> None:
    create_user("alice", "alice-password-1")
    seed_conversations("alice")
    visitor = new_page()
    resize(visitor, NARROW)
    visitor.goto("/accounts/login/")
    assert_fits(visitor, "login")
    visitor.goto("/accounts/signup/")
    expect(visitor.get_by_role("heading", name="Create an account")).to_be_visible()
    visitor.get_by_label("Username").fill("bob")
    visitor.get_by_label("Password", exact=True).fill("short")
    visitor.get_by_role("button", name="Create account").click()
    expect(visitor.locator(".errorlist").first).to_be_visible()  # the errors beside their fields
    assert_fits(visitor, "signup with errors")

    resize(page, NARROW)
    sign_in(page, "alice", "alice-password-1")
    assert_fits(page, "dashboard")
    expect(page.get_by_role("link", name="API tokens")).to_be_hidden()  # the nav collapsed into the Menu
    open_menu(page)
    assert_fits(page, "dashboard with the menu open")
    for name in ("Conversations", "API tokens", "Password"):
        assert in_viewport(page, f".nav-menu nav a:text-is('{name}')")["inside"], name
    assert in_viewport(page, ".nav-menu nav button")["inside"]

    path = new_conversation("alice")
    page.goto(path)
    fill_conversation(page)
    assert_fits(page, "conversation, live")
    page.reload()  # the same turns rendered from the records (the long id and the long word wrap there too)
    expect(page.locator("#transcript")).to_contain_text(LONG_WORD[:40])
    composer_ready(page)
    assert_fits(page, "conversation, reloaded")
    plain = new_page(java_script_enabled=False)  # the server-rendered turns alone (turn.html) fit too
    sign_in(plain, "alice", "alice-password-1")
    resize(plain, NARROW)
    plain.goto(path)
    expect(plain.locator("#transcript .item.function_call .call-name")).to_have_text("get_weather")
    expect(plain.locator("#transcript .item.error")).to_contain_text("invalid_value")
    assert_fits(plain, "conversation without scripts")

    page.goto("/tokens/")
    page.get_by_placeholder("Token name").fill("a phone")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    assert_fits(page, "tokens with a new token")
    page.get_by_role("link", name="Revoke").first.click()
    expect(page.get_by_role("heading", name=re.compile("Revoke token"))).to_be_visible()
    assert_fits(page, "token revoke")

    page.goto("/accounts/password_change/")
    assert_fits(page, "password change")
    page.get_by_label("Old password").fill("not-the-password")
    page.get_by_label("New password", exact=True).fill("alice-password-2")
    page.get_by_label("New password confirmation").fill("alice-password-2")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    assert_fits(page, "password change with errors")
    page.get_by_label("Old password").fill("alice-password-1")
    page.get_by_label("New password", exact=True).fill("alice-password-2")
    page.get_by_label("New password confirmation").fill("alice-password-2")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    assert_fits(page, "password change done")

    open_menu(page)
    page.get_by_role("button", name="Sign out (alice)").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    assert_fits(page, "after signing out")


def test_the_composer_buttons_stay_on_screen_while_a_response_streams_at_420px(page: Page) -> None:
    create_user("alice", "alice-password-1")
    resize(page, NARROW)
    sign_in(page, "alice", "alice-password-1")
    page.goto(new_conversation("alice", "Streaming on a phone"))
    fill_conversation(page)  # enough turns that the page scrolls

    send(page, "/long 400 /slow 25")
    expect(page.locator("#steer-button")).to_be_visible()  # shown only while the response streams
    expect(page.locator("#transcript")).to_contain_text(FILLER_RUN)  # deltas are arriving
    expect(page.locator("#composer-hint")).to_contain_text("Responding")
    for where in ("following the stream", "scrolled back to the top"):
        for button in ("#steer-button", "#stop-button"):
            found = in_viewport(page, button)
            assert found["inside"], f"{button} off screen ({where}): {found}"
        assert_fits(page, f"conversation while streaming, {where}")
        page.evaluate("window.scrollTo(0, 0)")
    expect(page.locator("#steer-button")).to_be_visible()  # the response was still streaming throughout
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=30_000)  # it ends


def test_skip_link_slash_shortcut_and_visible_focus(page: Page) -> None:
    create_user("alice", "alice-password-1")
    resize(page, WIDE)
    sign_in(page, "alice", "alice-password-1")
    page.goto(new_conversation("alice", "Keyboard"))
    composer_ready(page)

    page.keyboard.press("Tab")  # the first stop on every page: the skip link, visible once focused
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert in_viewport(page, ".skip-link")["inside"]
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    page.keyboard.press("Tab")  # onwards from the content, not from the top bar again
    assert page.evaluate("() => document.querySelector('main').contains(document.activeElement)")

    page.locator("h1").click()  # focus nowhere in particular
    page.keyboard.press("/")
    expect(page.get_by_label("Message")).to_be_focused()
    expect(page.get_by_label("Message")).to_have_value("")  # the "/" moved focus; it typed nothing
    expect(page.locator("#composer-keys")).to_contain_text("/")  # the composer says so
    page.keyboard.type("a/b")  # inside a field "/" is just a character
    expect(page.get_by_label("Message")).to_have_value("a/b")

    # Every kind of control shows where the focus is when reached by keyboard.
    page.goto("/tokens/")
    seen = set()
    for _ in range(12):
        page.keyboard.press("Tab")
        style = page.evaluate("""() => { const el = document.activeElement, s = getComputedStyle(el);
          return {tag: el.tagName.toLowerCase(), outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }""")
        if style["tag"] == "body":
            continue
        assert style["outline"] != "none" and style["width"] >= 2, style
        seen.add(style["tag"])
    assert {"a", "input", "button"} <= seen, seen
    page.get_by_label("Token name").click()
    page.keyboard.type("my/agent")  # "/" in a field of another page types too
    expect(page.get_by_label("Token name")).to_have_value("my/agent")


def test_the_heading_follows_the_title_the_server_gives(page: Page, new_page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    path = new_conversation("alice")  # no title yet
    page.goto(path)
    composer_ready(page)
    other = new_page()
    sign_in(other, "alice", "alice-password-1")
    other.goto(path)
    composer_ready(other)
    expect(page.locator("h1")).to_have_text(re.compile(r"^Conversation [0-9a-f]{8}$"))

    send(page, "Plan the launch\nwith a second line")
    for tab in (page, other):  # every tab of the conversation follows
        expect(tab.locator("h1#conversation-title")).to_have_text("Plan the launch")
        expect(tab).to_have_title("Plan the launch · Switchboard")
    composer_ready(page)
    send(page, "A second message does not rename it")
    expect(page.locator("#transcript")).to_contain_text("does not rename it\". [context items")
    expect(page.locator("h1#conversation-title")).to_have_text("Plan the launch")


def test_a_finished_message_is_announced_once_not_per_delta(page: Page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    page.goto(new_conversation("alice", "Announcements"))
    composer_ready(page)
    region = page.locator("#announcer")
    expect(region).to_have_attribute("aria-live", "polite")
    page.evaluate("""() => {
      window.announced = [];
      const region = document.getElementById('announcer');
      new MutationObserver(() => { if (region.textContent) window.announced.push(region.textContent); })
        .observe(region, {childList: true, characterData: true, subtree: true});
    }""")

    send(page, "/long 60 /slow 5")  # sixty deltas
    expect(region).to_have_text(re.compile(r"^Assistant replied: lane will keep each"))
    composer_ready(page)
    send(page, "/error server_error")
    expect(region).to_have_text(re.compile(r"^Response failed: "))
    composer_ready(page)
    announced = page.evaluate("window.announced")
    assert len(announced) == 2, announced
    assert announced[0].startswith("Assistant replied: lane will keep") and announced[1].startswith("Response failed")

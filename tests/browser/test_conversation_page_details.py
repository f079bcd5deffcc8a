"""Turn details and the chain drawer on a phone-width window (issue 13, items 2 and 9): a timestamp with the full
time on hover, the response id behind a Details toggle and copyable, and a chain drawer whose nodes show status,
tokens and time to first token live, and whose click shows that branch and gets out of the way."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import NARROW, assert_fits, resize
from tests.browser.support import create_user, send, sign_in
from tests.browser.test_chat import start_conversation, turn

pytestmark = pytest.mark.browser


def test_turn_details_and_the_chain_drawer_at_420px(new_page) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    create_user("ada", "ada-password-1")
    sign_in(page, "ada", "ada-password-1")
    resize(page, NARROW)
    start_conversation(page, "Details")
    send(page, "remember: wren")
    send(page, "remember: finch")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))

    # A timestamp, with the full date and time on hover; the id only behind Details, and copyable.
    first = turn(page, 0)
    response_id = first.get_attribute("data-response-id")
    stamp = first.locator("time.sent-at")
    expect(stamp).to_have_text(re.compile(r"\d"))
    assert stamp.get_attribute("datetime") and len(stamp.get_attribute("title") or "") > len(stamp.inner_text())
    expect(first.get_by_text(response_id)).to_be_hidden()
    first.locator("summary", has_text="Details").click()
    expect(first.locator(".turn-details")).to_contain_text(response_id)
    expect(first.locator(".turn-details")).to_contain_text(re.compile(r"First token\s*\d+ ms"))
    first.get_by_role("button", name="Copy id").click()
    assert page.evaluate("navigator.clipboard.readText()") == response_id

    # Fork from the second message, then find the first branch again through the drawer.
    turn(page, 1).get_by_role("button", name="Edit").click()
    page.get_by_label("Message").fill("remember: robin")
    page.get_by_label("Message").press("Enter")
    expect(turn(page, 1).locator(".switcher .position")).to_have_text("2 / 2")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    page.get_by_role("button", name="Chain").click()
    drawer = page.get_by_role("complementary", name="Chain")
    expect(drawer).to_be_visible()
    assert_fits(page, "the chain drawer")
    nodes = drawer.locator("button[data-key]")
    expect(nodes).to_have_count(3)
    for index in range(3):  # live turns too: status, tokens and time to first token
        expect(nodes.nth(index)).to_contain_text(re.compile(r"Completed · \d+ tok · \d+ ms"))
    expect(drawer.locator(".mark.fork")).to_have_count(1)
    drawer.get_by_role("button", name=re.compile("^remember: finch")).click()
    expect(drawer).to_be_hidden()  # a drawer gets out of the way once a node is picked
    expect(turn(page, 1).locator(".switcher .position")).to_have_text("1 / 2")
    expect(page.locator("#transcript")).to_contain_text("remember: finch")
    expect(page.locator("#transcript")).not_to_contain_text("remember: robin")
    expect(page.get_by_role("button", name="Chain")).to_be_focused()

"""Watching a conversation driven elsewhere: a second tab of the owner, a staff viewer, the owner's browser while the
official SDK drives the conversation through the gateway. The relay shows each create to every browser socket of
the conversation (`switchboard.request`, docs/protocol.md §1), so the user's message appears live, before its reply,
as it does after a reload; the tab that sent it shows it once.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import new_conversation
from tests.browser.support import composer_ready, create_user, orm, same_transcript, send, sign_in
from tests.browser.test_chat import turn

pytestmark = pytest.mark.browser

WAITING = re.compile(r"\b(sending|queued|in_progress)\b")
SLOW = "/slow 150 "  # ~150 ms a token: the reply is still streaming while the watchers are looked at


def opened(new_page, username: str, password: str, path: str) -> Page:
    page = new_page()
    sign_in(page, username, password)
    page.goto(path)
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open")
    return page


def inputs(page: Page):
    return page.locator("#transcript .item.input.message")


def test_a_second_tab_and_a_staff_viewer_show_the_message_live_as_after_a_reload(new_page) -> None:
    create_user("alice", "alice-password-1")
    create_user("sam", "sam-password-1", is_staff=True)
    path = new_conversation("alice", "Two tabs")
    first = opened(new_page, "alice", "alice-password-1", path)
    second = opened(new_page, "alice", "alice-password-1", path)
    staff = opened(new_page, "sam", "sam-password-1", path)
    composer_ready(first)
    composer_ready(second)

    send(first, f"{SLOW}remember: blue whale")
    # The other tab shows the message while the reply streams, busy as the sender is: Stop offered, no Send.
    expect(turn(second, 0).locator(".item.input.message")).to_contain_text("remember: blue whale")
    expect(turn(second, 0)).to_have_class(WAITING)
    expect(second.locator("#stop-button")).to_be_visible()
    expect(second.locator("#send-button")).to_be_hidden()
    expect(second.locator("#composer-hint")).to_contain_text("sent elsewhere")
    # The viewer too, read-only: no Stop, no Edit.
    expect(turn(staff, 0).locator(".item.input.message")).to_contain_text("remember: blue whale")
    expect(turn(staff, 0)).to_have_class(WAITING)
    expect(staff.locator("#stop-button")).to_be_hidden()
    expect(staff.locator("#transcript button.edit")).to_have_count(0)
    expect(staff.locator("#composer-hint")).to_contain_text("Read-only")
    for page in (first, second, staff):
        expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"), timeout=30_000)
        expect(turn(page, 0).locator(".item.output.message")).to_contain_text("Okay, I will remember: blue whale.")
    composer_ready(second)

    # The second tab answers; the first watches in turn, and each shows every message once.
    send(second, f"{SLOW}what did I ask you to remember?")
    expect(turn(first, 1).locator(".item.input.message")).to_contain_text("what did I ask you to remember?")
    expect(turn(first, 1)).to_have_class(WAITING)
    expect(first.locator("#stop-button")).to_be_visible()
    for page in (first, second, staff):
        expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"), timeout=30_000)
        expect(turn(page, 1).locator(".item.output.message")).to_contain_text("You asked me to remember: blue whale.")
        expect(page.locator("#transcript > article.turn")).to_have_count(2)
        expect(inputs(page)).to_have_count(2)
    composer_ready(first)
    composer_ready(second)
    assert turn(first, 1).get_attribute("data-response-id") == turn(second, 1).get_attribute("data-response-id")

    # Live is what the records say: each page's text is the same after a reload, and the owner's tabs agree.
    texts = {name: page.locator("#transcript").inner_text()
             for name, page in (("first", first), ("second", second), ("staff", staff))}
    assert texts["first"] == texts["second"]
    for name, page in (("first", first), ("second", second), ("staff", staff)):
        page.reload()
        # Drawn from switchboard.history (a turn the script drew has a key; the server-rendered ones have none).
        expect(page.locator("#transcript > article.turn[data-key]")).to_have_count(2)
        same_transcript(page, texts[name])


def test_an_edit_in_one_tab_shows_as_the_same_branch_in_the_other(new_page) -> None:
    create_user("alice", "alice-password-1")
    path = new_conversation("alice", "Forks")
    first = opened(new_page, "alice", "alice-password-1", path)
    second = opened(new_page, "alice", "alice-password-1", path)
    composer_ready(first)
    send(first, "remember: orca")
    expect(turn(second, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    composer_ready(first)
    send(first, "remember: narwhal")
    expect(turn(second, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    composer_ready(first)

    # Edit the second message in the first tab: the other tab follows to the new branch, with its badge and switcher.
    turn(first, 1).locator("button.edit").click()
    box = first.get_by_label("Message")
    box.fill("remember: beluga")
    box.press("Enter")
    expect(turn(second, 1).locator(".item.input.message")).to_contain_text("remember: beluga")
    expect(turn(second, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(second, 1).locator(".switcher .position")).to_have_text("2 / 2")
    # (The relay replays an edit of an older turn from the records: both tabs read it as the edit it is.)
    badge = turn(first, 1).locator(".badge.origin").inner_text()
    expect(turn(second, 1).locator(".badge.origin")).to_have_text(badge)
    composer_ready(first)
    composer_ready(second)
    text = second.locator("#transcript").inner_text()
    assert first.locator("#transcript").inner_text() == text
    second.reload()
    composer_ready(second)
    same_transcript(second, text)


def test_the_owners_browser_shows_a_gateway_turn_of_the_sdk_live(page: Page, daphne_server) -> None:
    from openai import OpenAI

    from sessions_app.models import ApiToken

    alice = create_user("alice", "alice-password-1")
    _, secret = orm(ApiToken.issue, user=alice, name="agent")
    path = new_conversation("alice", "Driven by the SDK")
    conversation = path.strip("/").split("/")[-1]
    sign_in(page, "alice", "alice-password-1")
    page.goto(path)
    composer_ready(page)

    def agent() -> list[str]:  # off the test thread, which Playwright's event loop holds
        client = OpenAI(api_key=secret, websocket_base_url=daphne_server.ws_url + "/v1")
        ids = []
        previous = None
        with client.responses.connect() as connection:
            for text in (f"{SLOW}remember: gannet", f"{SLOW}what did I ask you to remember?"):
                extra = {"previous_response_id": previous} if previous else {}
                connection.response.create(model="gpt-5.5", input=text, store=False,
                                           metadata={"switchboard_conversation": conversation}, **extra)
                for event in connection:
                    if event.type in ("response.completed", "response.failed", "error"):
                        assert event.type == "response.completed", event
                        previous = event.response.id
                        ids.append(previous)
                        break
        return ids

    with ThreadPoolExecutor(max_workers=1) as pool:
        done = pool.submit(agent)
        # The SDK's message shows while its reply streams; the owner's composer waits for it.
        expect(turn(page, 0).locator(".item.input.message")).to_contain_text("remember: gannet")
        expect(turn(page, 0)).to_have_class(WAITING)
        expect(page.locator("#stop-button")).to_be_visible()
        expect(turn(page, 1).locator(".item.input.message")).to_contain_text("what did I ask you to remember?",
                                                                              timeout=30_000)
        ids = done.result(timeout=60)
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text("You asked me to remember: gannet.")
    assert [turn(page, n).get_attribute("data-response-id") for n in (0, 1)] == ids
    expect(inputs(page)).to_have_count(2)
    composer_ready(page)
    text = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, text)

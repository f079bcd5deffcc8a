"""Editing an earlier user message forks the conversation from before it."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import composer_ready, create_user, orm, same_transcript, send, sign_in
from tests.browser.test_chat import record_sent_frames, start_conversation, turn

pytestmark = pytest.mark.browser


def test_editing_an_earlier_message_forks_from_its_parent(page: Page) -> None:
    create_user("fern", "fern-password-1")
    frames = record_sent_frames(page)
    sign_in(page, "fern", "fern-password-1")
    start_conversation(page, "Forks")

    send(page, "remember: alpha")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    send(page, "remember: beta")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    first_id = turn(page, 0).get_attribute("data-response-id")

    turn(page, 1).get_by_role("button", name="Edit").click()
    box = page.get_by_label("Message")
    expect(box).to_have_value("remember: beta")
    expect(page.locator("#composer-hint")).to_contain_text("forks the conversation")
    box.fill("remember: gamma")
    box.press("Enter")
    # The page shows the new branch: the abandoned one is out of view, and the edited message says 2 / 2.
    edited = turn(page, 1)
    expect(edited).to_have_class(re.compile(r"\bcompleted\b"))
    expect(edited.locator(".item.input.message")).to_contain_text("remember: gamma")
    expect(edited.locator(".switcher .position")).to_have_text("2 / 2")
    expect(page.locator("#transcript")).not_to_contain_text("remember: beta")
    expect(page.locator("#transcript > article.turn")).to_have_count(2)

    send(page, "what did I ask you to remember?")
    answer = turn(page, 2)
    expect(answer).to_have_class(re.compile(r"\bcompleted\b"))
    expect(answer.locator(".item.output.message")).to_contain_text("You asked me to remember: alpha; gamma.")
    expect(answer.locator(".item.output.message")).to_contain_text("[context items: 5]")

    # ‹ goes back to the first branch, with its own tail; › comes back, and a reload opens on the latest.
    edited.get_by_role("button", name="Previous version").click()
    expect(turn(page, 1).locator(".switcher .position")).to_have_text("1 / 2")
    expect(page.locator("#transcript")).to_contain_text("remember: beta")
    expect(page.locator("#transcript")).not_to_contain_text("remember: gamma")
    expect(page.locator("#transcript > article.turn")).to_have_count(2)
    turn(page, 1).get_by_role("button", name="Next version").click()
    expect(page.locator("#transcript > article.turn")).to_have_count(3)
    before = page.locator("#transcript").inner_text()
    page.reload()
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("alpha; gamma")
    same_transcript(page, before)

    creates = [f for f in frames if f.get("type") == "response.create"]
    assert creates[2]["previous_response_id"] == first_id  # the edit continued the first response

    from sessions_app.models import ResponseRecord

    def chain():
        # Responses the upstream created (a continuation the upstream refused and the relay then
        # replayed is recorded too, as a failed request without a response id).
        records = ResponseRecord.objects.exclude(response_id=None).order_by("sent_at")
        return list(records.values_list("response_id", "parent__response_id", "origin"))

    deadline = time.monotonic() + 10  # the writer batches what streamed back, a moment behind the page
    while len(rows := orm(chain)) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rows[2][1] == first_id and rows[1][1] == first_id  # two children of the first: a fork
    assert rows[2][2] in ("fork", "recovery_replay")  # the lane's cache held beta: the branch is replayed
    assert rows[3][1] == rows[2][0]  # the conversation goes on along the edited branch

    # A link to a response opens on its branch.
    beta_id = rows[1][0]
    page.goto(f"{page.url.split('?')[0]}?response={beta_id}")
    expect(turn(page, 1).locator(".switcher .position")).to_have_text("1 / 2")
    expect(page.locator("#transcript")).to_contain_text("remember: beta")


def test_an_edited_first_message_reads_the_same_after_a_reload(page: Page) -> None:
    """The page labels a turn as the records will: an edit of a first message continues nothing, so the
    records keep no fork (and the page showed "Edited" until a reload dropped it)."""
    create_user("fern", "fern-password-1")
    sign_in(page, "fern", "fern-password-1")
    start_conversation(page, "Edited roots")
    send(page, "remember: one")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))

    turn(page, 0).get_by_role("button", name="Edit").click()
    page.get_by_label("Message").fill("remember: uno")
    page.get_by_label("Message").press("Enter")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 0).locator(".switcher .position")).to_have_text("2 / 2")
    send(page, "what did I ask you to remember?")
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text("You asked me to remember: uno.")
    # The text streams before the turn ends (its last event waits for its record): compare once it has ended.
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))

    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, before)

"""The conversation page as issue 13 asks: Markdown, Stop, Continue, compaction in view, the chain panel, and a
transcript that a reload never changes. Real Chromium, real Daphne relay, real simulator upstream."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import composer_ready, create_user, orm, same_transcript, send, sign_in
from tests.browser.test_chat import HOSTILE, assert_no_injected_markup, start_conversation, turn

pytestmark = pytest.mark.browser


def reply(page: Page, index: int):
    return turn(page, index).locator(".item.output.message")


def reload_keeps_the_transcript(page: Page) -> None:
    expect(page.locator("#transcript button", has_text="Copied")).to_have_count(0)  # passing feedback gone
    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, before)


def test_markdown_renders_while_code_copies_and_hostile_text_stays_text(new_page) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    create_user("ada", "ada-password-1")
    sign_in(page, "ada", "ada-password-1")
    start_conversation(page, "Markdown")

    send(page, "Plan: **bold move**\n\n- first\n- second\n\n```python\nprint('hi')\n```\n\n[x](javascript:alert(1))")
    answer = reply(page, 0)
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(answer.locator("strong")).to_have_text("bold move")
    expect(answer.locator("ul > li")).to_have_count(2)
    expect(answer.locator("pre > code")).to_have_text("print('hi')")
    assert answer.locator("a[href^='javascript']").count() == 0  # unsafe link schemes are refused
    # The user's own text stays plain text.
    expect(turn(page, 0).locator(".item.input.message strong")).to_have_count(0)
    expect(turn(page, 0).locator(".item.input.message")).to_contain_text("**bold move**")

    answer.get_by_role("button", name="Copy code").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')\n"
    turn(page, 0).get_by_role("button", name="Copy", exact=True).click()
    assert "bold move" in page.evaluate("navigator.clipboard.readText()")

    # Model text, tool arguments and error messages with markup in them all render as text.
    arguments = json.dumps({"x": HOSTILE})
    send(page, f"{HOSTILE} /tool lookup {arguments}")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 1).locator(".call-arguments")).to_contain_text("<script>alert(2)</script>")
    page.get_by_label("Output of lookup", exact=False).fill(HOSTILE)
    page.get_by_role("button", name="Send").click()
    expect(reply(page, 2)).to_contain_text("<b id=")
    send(page, f"/error {HOSTILE}")
    assert_no_injected_markup(page)
    reload_keeps_the_transcript(page)
    assert_no_injected_markup(page)


def test_stop_ends_the_stream_at_once_and_the_next_turn_keeps_the_context(page: Page) -> None:
    from sessions_app.models import ResponseRecord

    create_user("ada", "ada-password-1")
    sign_in(page, "ada", "ada-password-1")
    start_conversation(page, "Stopping")
    send(page, "remember: kestrel")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))

    send(page, "/slow 30 /long 400")
    expect(reply(page, 1)).not_to_have_text("")  # deltas are arriving
    page.get_by_label("Message").press("Escape")  # Esc stops, like the Stop button
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcancelled\b"), timeout=1000)
    shown = reply(page, 1).inner_text()
    time.sleep(0.5)
    assert reply(page, 1).inner_text() == shown  # nothing more streams in
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    response_id = turn(page, 1).get_attribute("data-response-id")

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = orm(lambda: ResponseRecord.objects.get(response_id=response_id))
        if record.status == "cancelled":
            break
        time.sleep(0.1)
    assert record.status == "cancelled"
    partial = orm(lambda: "".join(record.items.filter(direction="output").values_list("text", flat=True)))
    assert partial and len(partial) < 400 * 5

    send(page, "what did I ask you to remember?")  # continues the stopped turn, on a new upstream socket
    expect(turn(page, 2)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(reply(page, 2)).to_contain_text("You asked me to remember: kestrel.")
    reload_keeps_the_transcript(page)


def test_continue_after_the_length_limit_and_the_reload_keeps_every_note(page: Page) -> None:
    create_user("ada", "ada-password-1")
    sign_in(page, "ada", "ada-password-1")
    start_conversation(page, "Notes")

    send(page, "remember: plover")
    send(page, "tell me everything /incomplete")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bincomplete\b"))
    expect(turn(page, 1)).to_contain_text("Stopped early: the reply reached its length limit")
    turn(page, 1).get_by_role("button", name="Continue").click()
    expect(turn(page, 2)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 2).locator(".item.input.message")).to_contain_text("Continue exactly where you stopped.")

    # A dropped upstream: the next turn is replayed from the records, one turn with a note.
    send(page, "/slow 20 /long 30 /drop")
    expect(turn(page, 3)).to_have_class(re.compile(r"\bfailed\b"))
    send(page, "what did I ask you to remember?")
    expect(reply(page, 4)).to_contain_text("You asked me to remember: plover.")
    expect(turn(page, 4)).to_contain_text("Recovered: the upstream had lost the context")

    # A steer, and a compaction with its figures.
    send(page, "/slow 40 /long 60")
    expect(reply(page, 5)).not_to_have_text("")
    page.get_by_label("Message").fill("remember: steered")
    page.get_by_label("Message").press("Enter")  # Enter steers while it streams
    expect(turn(page, 6)).to_have_class(re.compile(r"\bcompleted\b"))
    send(page, "remember: tern /compact")
    divider = turn(page, 7).locator(".item.output.compaction")
    expect(divider).to_contain_text(re.compile(r"Context compacted · \d+ items replaced · \d+ tokens before"))
    send(page, "what did I ask you to remember?")
    expect(reply(page, 8)).to_contain_text("plover; steered; tern")
    expect(divider).to_contain_text(re.compile(r"\d+ → \d+ tokens"))
    expect(page.locator("#context-meter")).to_contain_text(re.compile(r"Context: \d+ tokens"))
    reload_keeps_the_transcript(page)


def test_compact_now_draws_a_divider_and_the_chain_panel_finds_a_branch(page: Page) -> None:
    create_user("ada", "ada-password-1")
    sign_in(page, "ada", "ada-password-1")
    start_conversation(page, "Chain")
    send(page, "remember: wren")
    send(page, "remember: finch")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))

    page.get_by_role("button", name="Compact now").click()
    divider = page.locator(".standalone-compaction")
    expect(divider).to_contain_text(re.compile(r"Compacted on request · 4 items replaced · \d+ → \d+ tokens"))
    send(page, "what did I ask you to remember?")
    expect(reply(page, 2)).to_contain_text("wren; finch")
    reload_keeps_the_transcript(page)

    # Fork from the first message, then find the first branch again through the chain panel.
    turn(page, 1).get_by_role("button", name="Edit").click()
    page.get_by_label("Message").fill("remember: robin")
    page.get_by_label("Message").press("Enter")
    expect(reply(page, 1)).to_contain_text("Okay, I will remember: robin.")
    page.get_by_role("button", name="Chain").click()
    panel = page.get_by_role("complementary", name="Chain")
    expect(panel.locator(".mark.fork")).to_have_count(1)
    expect(panel.locator(".mark.compaction")).to_have_count(1)
    panel.get_by_role("button", name=re.compile("^what did I ask")).click()
    expect(page.locator("#transcript")).to_contain_text("remember: finch")
    expect(page.locator("#transcript")).not_to_contain_text("remember: robin")
    expect(turn(page, 1).locator(".switcher .position")).to_have_text("1 / 2")

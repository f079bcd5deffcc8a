"""Conversation settings in a real Chromium: the New conversation dialog, the settings drawer, and what each
makes the relay send upstream (the simulator), read back from the records."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import RESULTS, composer_ready, create_user, orm, send, sign_in
from tests.browser.test_chat import turn

pytestmark = pytest.mark.browser

PASSWORD = "alice-password-1"


def payloads(title: str) -> list[dict]:
    from sessions_app.models import ResponseRecord

    return list(ResponseRecord.objects.filter(conversation__title=title).order_by("sent_at", "pk")
                .values_list("request_payload", flat=True))


def conversation_with(owner, title: str, **settings) -> str:
    from sessions_app import services

    return str(orm(services.conversation_create, owner=owner, title=title, **settings).pk)


def conversation_row(pk: str):
    from sessions_app.models import Conversation

    return orm(Conversation.objects.get, pk=pk)


def fits(page: Page, width: int) -> None:
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width


def completed(page: Page, index: int) -> None:
    expect(turn(page, index)).to_have_class(re.compile(r"\bcompleted\b"))


def test_a_conversation_made_in_the_dialog_sends_its_settings_upstream(page: Page) -> None:
    create_user("alice", PASSWORD)
    sign_in(page, "alice", PASSWORD)
    opener = page.get_by_role("button", name="New conversation")
    opener.click()
    dialog = page.get_by_role("dialog", name="New conversation")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Title")).to_be_focused()  # focus moved in
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()  # and came back

    opener.press("Enter")
    dialog.get_by_label("Title").fill("Weather desk")
    expect(dialog.get_by_label("Model", exact=True)).to_have_value("gpt-5.5")  # the profile's default, prefilled
    dialog.get_by_label("Reasoning effort").select_option("low")
    dialog.get_by_label("Max output tokens").fill("800")
    dialog.get_by_label("Instructions").fill("Answer in one sentence.")
    dialog.get_by_role("button", name="Weather lookup").click()
    dialog.get_by_label("Store responses upstream (store)").check()
    dialog.get_by_label("Compaction threshold (tokens)").fill("5000")
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "settings-dialog-1280.png"))
    page.set_viewport_size({"width": 420, "height": 900})
    fits(page, 420)
    page.screenshot(path=str(RESULTS / "settings-dialog-420.png"))
    page.set_viewport_size({"width": 1100, "height": 900})
    dialog.get_by_role("button", name="Create conversation").click()

    expect(page.get_by_role("heading", name="Weather desk")).to_be_visible()
    composer_ready(page)
    send(page, "hello")
    completed(page, 0)
    [sent] = orm(payloads, "Weather desk")
    tools = sent["tools"]
    assert [tool["name"] for tool in tools] == ["get_weather"] and tools[0]["parameters"]["type"] == "object"
    assert sent["model"] == "gpt-5.5" and sent["store"] is True and sent["instructions"] == "Answer in one sentence."
    assert sent["reasoning"] == {"effort": "low"} and sent["max_output_tokens"] == 800
    assert sent["context_management"] == [{"type": "compaction", "compact_threshold": 5000}]


def test_a_low_compaction_threshold_compacts_after_a_few_turns(page: Page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "Compacting", compact_threshold=40)
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/conversations/{pk}/")
    composer_ready(page)
    for index, text in enumerate(["remember: teal", "remember: amber", "what did I ask you to remember?"]):
        send(page, text)
        completed(page, index)
    expect(turn(page, 0).locator(".item.compaction")).to_have_count(0)
    expect(turn(page, 1).locator(".item.compaction")).to_have_count(0)
    marker = turn(page, 2).locator(".item.output.compaction")
    expect(marker).to_contain_text("Context compacted")  # the simulator compacted past 40 tokens
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("teal")  # nothing forgotten
    sent = orm(payloads, "Compacting")
    assert [p["context_management"] for p in sent] == [[{"type": "compaction", "compact_threshold": 40}]] * 3
    page.reload()  # the recorded history shows it too
    composer_ready(page)
    expect(turn(page, 2).locator(".item.output.compaction")).to_contain_text("Context compacted")


def test_a_change_in_the_drawer_applies_to_the_next_turn_and_reaches_other_tabs(page: Page, new_page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "Drawer")
    sign_in(page, "alice", PASSWORD)
    other = new_page()
    sign_in(other, "alice", PASSWORD)
    other.goto(f"/conversations/{pk}/")
    composer_ready(other)
    page.goto(f"/conversations/{pk}/")
    composer_ready(page)
    send(page, "hello")
    completed(page, 0)

    opener = page.get_by_role("button", name="Settings")
    opener.focus()
    page.keyboard.press("Enter")
    drawer = page.get_by_role("dialog", name="Conversation settings")
    expect(drawer.get_by_label("Title")).to_be_focused()
    drawer.get_by_label("Instructions").fill("Answer in French.")
    drawer.get_by_label("Max output tokens").fill("300")
    drawer.get_by_label("Max output tokens").press("Enter")  # submits, as Save does
    expect(drawer.get_by_role("status")).to_have_text("Saved. Your next message uses these settings.")
    # The other tab's drawer (closed) shows what this one saved: the socket's switchboard.settings.
    expect(other.locator("#settings-drawer #id_instructions")).to_have_value("Answer in French.")
    page.screenshot(path=str(RESULTS / "settings-drawer-1280.png"))
    page.set_viewport_size({"width": 420, "height": 900})
    fits(page, 420)
    page.screenshot(path=str(RESULTS / "settings-drawer-420.png"))
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(opener).to_be_focused()
    opener.click()  # an edit left unsaved is dropped by Cancel: the drawer shows what was saved
    drawer.get_by_label("Instructions").fill("Not saved")
    drawer.get_by_role("button", name="Cancel").click()
    expect(drawer).to_be_hidden()
    expect(page.locator("#settings-drawer #id_instructions")).to_have_value("Answer in French.")

    send(page, "and now?")
    completed(page, 1)
    before, after = orm(payloads, "Drawer")
    assert "instructions" not in before and "max_output_tokens" not in before
    assert after["instructions"] == "Answer in French." and after["max_output_tokens"] == 300
    row = conversation_row(pk)
    assert (row.instructions, row.max_output_tokens) == ("Answer in French.", 300)


def test_bad_tools_in_the_drawer_are_refused_next_to_the_field_and_nothing_is_saved(page: Page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "Refusals", instructions="Keep me.")
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/conversations/{pk}/")
    page.get_by_role("button", name="Settings").click()
    drawer = page.get_by_role("dialog", name="Conversation settings")
    tools = drawer.get_by_label("Function tools (JSON)")
    errors = drawer.locator("#id_tools_error")
    drawer.get_by_label("Instructions").fill("Changed.")

    # Caught in the browser, with the server's words: the tool and the field.
    weather = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    tools.fill(json.dumps([weather, weather]))
    drawer.get_by_role("button", name="Save settings").click()
    expect(errors).to_have_text('Tool 2 ("lookup"): the name is already used by tool 1.')
    expect(tools).to_have_attribute("aria-invalid", "true")
    expect(tools).to_be_focused()
    tools.fill("[{")
    expect(errors).to_contain_text("Not valid JSON")

    # What only the server can tell (a NUL the database could not store) comes back next to the field too.
    tools.fill('[{"type": "function", "name": "nul", "description": "a\\u0000", "parameters": {"type": "object"}}]')
    expect(errors).to_be_hidden()
    drawer.get_by_role("button", name="Save settings").click()
    expect(errors).to_contain_text("U+0000")
    expect(drawer.get_by_role("status")).to_have_text("Not saved: fix the fields marked below.")
    page.set_viewport_size({"width": 420, "height": 900})
    page.screenshot(path=str(RESULTS / "settings-drawer-errors-420.png"))
    row = conversation_row(pk)
    assert (row.instructions, row.tools) == ("Keep me.", [])


def test_a_title_emptied_in_the_drawer_leaves_the_heading_as_an_untitled_conversation_reads(page: Page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "Named for now")
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/conversations/{pk}/")
    page.get_by_role("button", name="Settings").click()
    drawer = page.get_by_role("dialog", name="Conversation settings")
    drawer.get_by_label("Title").fill("")
    drawer.get_by_role("button", name="Save settings").click()
    expect(drawer.get_by_role("status")).to_have_text("Saved. Your next message uses these settings.")
    untitled = f"Conversation {pk[:8]}"  # what the server calls it, here and after a reload
    expect(page.locator("h1#conversation-title")).to_have_text(untitled)
    expect(page).to_have_title(f"{untitled} · Switchboard")
    page.reload()
    expect(page.locator("h1#conversation-title")).to_have_text(untitled)

"""Three fixes on the conversation page: no steering offered when the conversation compacts automatically (and a
refused steer gives its text back), an edit the relay replayed reads as an edit (not "Recovered"), and the context
meter after a compaction. Real Chromium, real Daphne relay, real simulator upstream."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.support import RESULTS, composer_ready, create_user, orm, same_transcript, send, sign_in
from tests.browser.test_chat import record_sent_frames, start_conversation, turn
from tests.browser.test_settings import conversation_with

pytestmark = pytest.mark.browser

PASSWORD = "alice-password-1"


def completed(page: Page, index: int, *, timeout: float | None = None) -> None:
    expect(turn(page, index)).to_have_class(re.compile(r"\bcompleted\b"), timeout=timeout)


def shots(page: Page, name: str, *, top: bool = False) -> None:
    """The state on screen at 1280 and 420 px wide (test-results/), then back to the tests' width; `top`: the
    page scrolled to its top (the context meter), else where it is (the end of the transcript)."""
    for width in (1280, 420):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        if top:
            page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(RESULTS / f"hfix-{name}-{width}.png"))
    page.set_viewport_size({"width": 1100, "height": 900})


def test_a_conversation_that_compacts_automatically_offers_no_steering_and_enter_waits(page: Page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "No steering", compact_threshold=100_000)  # every create: context_management
    frames = record_sent_frames(page)
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/conversations/{pk}/")
    composer_ready(page)

    send(page, "/slow 60 /long 80")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bin_progress\b"))
    expect(turn(page, 0).locator(".item.output.message")).not_to_have_text("")
    hint = page.locator("#composer-hint")
    expect(hint).to_contain_text("Automatic compaction is on (Settings), so replies cannot be steered")
    expect(page.get_by_role("button", name="Steer")).to_be_hidden()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(page.locator("#steer-keys")).to_be_hidden()  # the keys line: "Enter sends", no "(steers while it replies)"

    # Enter keeps the text and holds it: it is sent as the next message once the reply ends, never as a steer.
    box = page.get_by_label("Message")
    box.fill("remember: heron")
    box.press("Enter")
    expect(box).to_have_value("remember: heron")
    expect(hint).to_contain_text("Your message is sent when the reply ends")
    shots(page, "no-steer")
    completed(page, 0, timeout=30_000)  # the reply streams for 4.8 s (80 × 60 ms), more on a busy machine
    expect(turn(page, 1).locator(".item.input.message")).to_contain_text("remember: heron")
    completed(page, 1)
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text("Okay, I will remember: heron.")
    expect(box).to_have_value("")
    assert not [frame for frame in frames if frame.get("type") == "response.steer"]
    creates = [frame for frame in frames if frame.get("type") == "response.create"]
    assert creates[1]["previous_response_id"] == turn(page, 0).get_attribute("data-response-id")

    # Turned off in the drawer: steering is offered again.
    page.get_by_role("button", name="Settings").click()
    drawer = page.get_by_role("dialog", name="Conversation settings")
    drawer.get_by_label("Compaction threshold", exact=False).fill("")
    drawer.get_by_role("button", name="Save").click()
    expect(drawer.get_by_role("status")).to_have_text("Saved. Your next message uses these settings.")
    page.keyboard.press("Escape")
    send(page, "/slow 60 /long 80")
    expect(turn(page, 2).locator(".item.output.message")).not_to_have_text("")
    expect(page.get_by_role("button", name="Steer")).to_be_visible()
    expect(hint).to_contain_text("Enter steers the reply")
    expect(page.locator("#steer-keys")).to_be_visible()


def hide_the_threshold(route: WebSocketRoute) -> None:
    """Relays the page's socket, with the conversation's compaction threshold taken out of what the page is
    told: a page that does not know it (a stale tab) offers steering, and the upstream refuses the steer."""
    server = route.connect_to_server()

    def to_page(message: str | bytes) -> None:
        event = json.loads(message)
        settings = (event.get("conversation") or {}).get("settings") or event.get("settings")
        if isinstance(settings, dict):
            settings["compact_threshold"] = None
        route.send(json.dumps(event))

    server.on_message(to_page)
    route.on_message(server.send)


def test_a_steer_the_upstream_refuses_puts_its_text_back_and_says_why(page: Page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "Refused steer", compact_threshold=100_000)
    page.route_web_socket(re.compile(r"/ws/conversations/"), hide_the_threshold)
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/conversations/{pk}/")
    composer_ready(page)

    send(page, "/slow 60 /long 80")
    expect(turn(page, 0).locator(".item.output.message")).not_to_have_text("")
    steer = page.get_by_role("button", name="Steer")
    expect(steer).to_be_enabled()  # the page believes there is no threshold
    box = page.get_by_label("Message")
    box.fill("remember: plover")
    steer.click()
    hint = page.locator("#composer-hint")
    expect(hint).to_contain_text("Steer not applied: This reply cannot be steered (automatic compaction is on).")
    expect(hint).to_contain_text("Your text is back in the box.")
    expect(box).to_have_value("remember: plover")
    expect(turn(page, 0).locator(".note[data-kind='steer']")).to_have_count(0)
    # Every frame of the reply passes through this test's WebSocket route (the Python driver): on a busy
    # machine its 80 deltas take longer than expect's 5 s (CI, 2026-12-03).
    completed(page, 0, timeout=30_000)
    expect(page.locator("#transcript > article.turn")).to_have_count(1)  # the refused steer started nothing
    expect(box).to_have_value("remember: plover")
    expect(hint).to_contain_text("Your text is back in the box.")


def test_an_edit_the_relay_replays_reads_as_an_edit_live_and_after_a_reload(page: Page) -> None:
    create_user("alice", PASSWORD)
    sign_in(page, "alice", PASSWORD)
    start_conversation(page, "Edits")
    send(page, "remember: alpha")
    completed(page, 0)
    send(page, "remember: beta")
    completed(page, 1)
    send(page, "remember: gamma")
    completed(page, 2)

    # Edit the second message: a branch from the first response, which the upstream no longer keeps
    # (previous_response_not_found); the relay sends it again with the context from the records.
    turn(page, 1).get_by_role("button", name="Edit").click()
    box = page.get_by_label("Message")
    box.fill("remember: delta")
    box.press("Enter")
    edited = turn(page, 1)
    completed(page, 1)
    expect(edited.locator(".item.input.message")).to_contain_text("remember: delta")
    expect(edited.locator(".item.output.message")).to_contain_text("Okay, I will remember: delta.")

    def reads_as_an_edit() -> None:
        edited = turn(page, 1)
        expect(edited.locator(".switcher .position")).to_have_text("2 / 2")
        expect(edited.locator(".badge.origin")).to_have_text("Edited")
        expect(edited.locator(".note[data-kind='recovered']")).to_have_text(
            "Replayed: the upstream keeps only its latest response, so this branch’s context was sent from the records.")
        expect(page.locator("#transcript")).not_to_contain_text("Recovered")
        page.get_by_role("button", name="Chain").click()
        panel = page.locator("#chain-panel")
        expect(panel.locator(".mark.edited")).to_have_count(1)
        expect(panel.locator(".mark.recovered")).to_have_count(0)
        expect(panel.locator(".mark.fork")).to_have_count(1)
        page.screenshot(path=str(RESULTS / "hfix-edited-chain-1100.png"))
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()

    reads_as_an_edit()
    from sessions_app.models import ResponseRecord

    record = orm(lambda: ResponseRecord.objects.filter(conversation__title="Edits").exclude(response_id=None)
                 .order_by("-sent_at").values("origin", "supersedes__origin", "supersedes__status").first())
    # What the records say: a replay superseding the fork the upstream refused; the page reads it as the edit it is.
    assert record == {"origin": "recovery_replay", "supersedes__origin": "fork", "supersedes__status": "failed"}
    shots(page, "edited")
    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, before)
    reads_as_an_edit()

    # The branch goes on from the edit; an ordinary next turn has no badge.
    send(page, "what did I ask you to remember?")
    completed(page, 2)
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("You asked me to remember: alpha; delta.")
    expect(turn(page, 2).locator(".badge.origin")).to_be_hidden()


def test_the_context_meter_says_when_the_latest_turn_compacted(page: Page) -> None:
    alice = create_user("alice", PASSWORD)
    pk = conversation_with(alice, "Meter", compact_threshold=50)
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/conversations/{pk}/")
    composer_ready(page)
    meter = page.locator("#context-meter")
    label = meter.locator(".context-label")
    send(page, "remember: teal")
    completed(page, 0)
    expect(label).to_have_text(re.compile(r"^Context: \d+ tokens of 50$"))
    send(page, "remember: amber")
    completed(page, 1)
    send(page, "what did I ask you to remember?")
    completed(page, 2)
    expect(turn(page, 2).locator(".item.output.compaction")).to_contain_text("Context compacted")
    # The turn that compacted sent more than the threshold: the meter says it compacted, with no full gauge.
    expect(label).to_have_text(re.compile(r"^Context: compacted at \d+ tokens · threshold 50$"))
    expect(meter.locator("meter")).to_be_hidden()
    assert "next turn starts from the summary" in meter.get_attribute("title")
    text = label.inner_text()
    shots(page, "meter", top=True)
    page.reload()
    composer_ready(page)
    expect(label).to_have_text(text)

    # The next turn starts from the summary: smaller, and the meter reads it plainly again.
    before = int(re.search(r"at (\d+) tokens", text).group(1))
    send(page, "remember: rose")
    completed(page, 3)
    expect(label).not_to_contain_text("compacted")
    after = int(re.search(r"^Context: (\d+) tokens of 50$", label.inner_text()).group(1))
    assert after < before
    expect(meter.locator("meter")).to_be_visible()
    expect(turn(page, 2).locator(".item.output.compaction")).to_contain_text(f"{before} → {after} tokens")

    # Compact now: the size after is known at once, so the meter reads it (and the gauge shows it).
    page.get_by_role("button", name="Compact now").click()
    expect(page.locator("#composer-hint")).to_contain_text("Compacted:")
    expect(label).to_have_text(re.compile(r"^Context: \d+ tokens of 50 · compacted from \d+$"))
    expect(meter.locator("meter")).to_be_visible()

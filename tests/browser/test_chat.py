"""Chatting on a conversation page: real Chromium, real Daphne relay, real simulator upstream."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.support import RESULTS, composer_ready, create_user, orm, same_transcript, send, sign_in

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror=alert(1)> <script>alert(2)</script> <b id="injected">bold</b>'


def start_conversation(page: Page, title: str) -> None:
    """From the dashboard: the New conversation dialog with a title and every other setting as offered."""
    page.get_by_role("button", name="New conversation").click()
    page.get_by_role("dialog", name="New conversation").get_by_label("Title").fill(title)
    page.get_by_role("button", name="Create conversation").click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    composer_ready(page)


def record_sent_frames(page: Page) -> list[dict]:
    """Every JSON frame the page sends on its WebSockets, in order."""
    frames: list[dict] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(json.loads(payload))))
    return frames


def turn(page: Page, index: int) -> Locator:
    return page.locator("#transcript > article.turn").nth(index)


def assert_no_injected_markup(page: Page) -> None:
    assert page.locator("#transcript img, #transcript script, #injected").count() == 0


def test_a_conversation_remembers_across_turns_and_survives_a_reload(page: Page, new_page) -> None:
    create_user("alice", "alice-password-1")
    frames = record_sent_frames(page)
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Whales")

    send(page, "remember: blue whale")
    first = turn(page, 0)
    expect(first).to_have_class(re.compile(r"\bcompleted\b"))
    expect(first.locator(".item.input.message")).to_contain_text("remember: blue whale")
    expect(first.locator(".item.output.message")).to_contain_text("Okay, I will remember: blue whale.")
    expect(first.locator(".usage")).to_contain_text(re.compile(r"\d+ in .* \d+ out · \d+ total"))
    first_id = first.get_attribute("data-response-id")
    assert first_id and first_id.startswith("resp_")
    expect(page.get_by_label("Message")).to_have_value("")

    send(page, "what did I ask you to remember?")
    second = turn(page, 1)
    expect(second).to_have_class(re.compile(r"\bcompleted\b"))
    expect(second.locator(".item.output.message")).to_contain_text("You asked me to remember: blue whale.")

    creates = [frame for frame in frames if frame.get("type") == "response.create"]
    assert len(creates) == 2
    assert "previous_response_id" not in creates[0]
    assert creates[1]["previous_response_id"] == first_id
    assert creates[1]["input"] == [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "what did I ask you to remember?"}]},
    ]

    page.reload()
    composer_ready(page)
    expect(page.locator("#transcript > article.turn")).to_have_count(2)
    expect(turn(page, 0)).to_have_attribute("data-response-id", first_id)
    expect(turn(page, 0).locator(".item.output.message")).to_contain_text("Okay, I will remember: blue whale.")
    expect(turn(page, 1).locator(".item.input.message")).to_contain_text("what did I ask you to remember?")
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text("You asked me to remember: blue whale.")
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "conversation.png"), full_page=True)

    # Without JavaScript the server-rendered transcript alone holds the whole conversation.
    plain = new_page(java_script_enabled=False)
    sign_in(plain, "alice", "alice-password-1")
    plain.get_by_role("link", name="Whales").click()
    expect(plain.locator("#transcript > article.turn")).to_have_count(2)
    expect(plain.locator("#transcript")).to_contain_text("You asked me to remember: blue whale.")


def test_markup_in_messages_and_model_output_stays_text(page: Page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Escaping")

    send(page, HOSTILE)
    reply = turn(page, 0).locator(".item.output.message")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(reply).to_contain_text(f'You said: "{HOSTILE}"')  # the model echoes it: shown as text
    expect(turn(page, 0).locator(".item.input.message")).to_contain_text(HOSTILE)

    assert_no_injected_markup(page)
    page.reload()
    composer_ready(page)
    expect(page.locator("#transcript")).to_contain_text(f'You said: "{HOSTILE}"')
    assert_no_injected_markup(page)
    # No alert() dialog fired: the `new_page` fixture fails the test if one did.


def test_recorded_markup_stays_text_in_the_server_rendered_and_history_transcript(page: Page) -> None:
    from sessions_app import services
    from sessions_app.models import Item, ResponseRecord

    alice = create_user("alice", "alice-password-1")

    def record_hostile_turn() -> str:
        conversation = services.conversation_create(owner=alice, title="Recorded")
        record = ResponseRecord.objects.create(
            conversation=conversation, response_id="resp_hostile", status=ResponseRecord.Status.COMPLETED,
            input_tokens=3, output_tokens=4, total_tokens=7,
        )
        user_item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": HOSTILE}]}
        model_item = {"id": "msg_hostile", "type": "message", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": HOSTILE, "annotations": []}]}
        Item.objects.create(response=record, direction="input", position=0, item_type="message", role="user",
                            text=HOSTILE, raw=user_item)
        Item.objects.create(response=record, direction="output", position=0, item_type="message",
                            role="assistant", text=HOSTILE, raw=model_item)
        return str(conversation.pk)

    pk = orm(record_hostile_turn)
    sign_in(page, "alice", "alice-password-1")
    page.goto(f"/conversations/{pk}/")
    expect(page.locator("#transcript .item.output.message").first).to_contain_text(HOSTILE)
    composer_ready(page)  # the socket's history has replaced the server-rendered turns by now
    expect(page.locator("#transcript .item.output.message").first).to_contain_text(HOSTILE)
    assert_no_injected_markup(page)


def test_a_tool_call_directive_renders_a_function_call_and_its_output_goes_back(page: Page) -> None:
    create_user("alice", "alice-password-1")
    frames = record_sent_frames(page)
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Weather")

    send(page, '/tool get_weather {"city":"Paris"}')
    call = turn(page, 0).locator(".item.output.function_call")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(call.locator(".call-name")).to_have_text("get_weather")
    expect(call.locator(".call-arguments")).to_have_text('{ "city": "Paris" }')  # pretty-printed
    call_id = call.locator(".call-id").inner_text()
    assert call_id.startswith("call_")
    expect(page.locator("#composer-hint")).to_contain_text("Answer each function call above")
    answer = page.get_by_label(f"Output of get_weather ({call_id})")
    expect(answer).to_be_visible()

    # Declared JSON is checked before anything is sent.
    answer.fill("{not json")
    page.get_by_label("Output is JSON (checked before sending)").check()
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".tool-answer .field-error")).to_contain_text("Not valid JSON")
    assert len([f for f in frames if f.get("type") == "response.create"]) == 1

    answer.fill('{"temp_c": 18}')
    page.get_by_role("button", name="Send").click()
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 1).locator(".item.input.function_call_output")).to_contain_text('{"temp_c": 18}')
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text(
        'The get_weather tool returned {"temp_c": 18}.'
    )
    creates = [frame for frame in frames if frame.get("type") == "response.create"]
    assert creates[1]["input"] == [{"type": "function_call_output", "call_id": call_id, "output": '{"temp_c": 18}'}]
    expect(page.locator(".tool-answer")).to_have_count(0)


def test_parallel_function_calls_are_answered_each_in_its_own_form_and_sent_together(page: Page) -> None:
    create_user("alice", "alice-password-1")
    frames = record_sent_frames(page)
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Two calls")

    send(page, '/tool get_weather {"city":"Paris"} /tool get_time {"zone":"CET"}')
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    calls = turn(page, 0).locator(".item.output.function_call")
    expect(calls).to_have_count(2)
    ids = [calls.nth(i).locator(".call-id").inner_text() for i in range(2)]
    page.get_by_label(f"Output of get_weather ({ids[0]})").fill("sunny")
    page.get_by_label(f"Output of get_time ({ids[1]})").fill("14:05")
    page.get_by_role("button", name="Send").click()
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    reply = turn(page, 1).locator(".item.output.message")
    expect(reply).to_contain_text("The get_weather tool returned sunny.")
    expect(reply).to_contain_text("The get_time tool returned 14:05.")
    creates = [frame for frame in frames if frame.get("type") == "response.create"]
    assert creates[1]["input"] == [
        {"type": "function_call_output", "call_id": ids[0], "output": "sunny"},
        {"type": "function_call_output", "call_id": ids[1], "output": "14:05"},
    ]

    # Answering in plain text instead: the composer's text goes to every call.
    send(page, '/tool a {} /tool b {}')
    expect(page.locator(".tool-answer")).to_have_count(2)
    page.get_by_role("button", name="Answer in plain text instead").click()
    expect(page.locator(".tool-answer")).to_have_count(0)
    send(page, "done")
    expect(turn(page, 3)).to_have_class(re.compile(r"\bcompleted\b"))
    last = [frame for frame in frames if frame.get("type") == "response.create"][-1]
    assert [item["output"] for item in last["input"]] == ["done", "done"]


def test_a_staff_viewer_of_someone_elses_conversation_gets_no_usable_composer(page: Page) -> None:
    from sessions_app import services

    bob = create_user("bob", "bob-password-1")
    create_user("staff", "staff-password-1", is_staff=True)
    conversation = orm(services.conversation_create, owner=bob, title="Bob's plans")

    sign_in(page, "staff", "staff-password-1")
    page.goto(f"/conversations/{conversation.pk}/")
    expect(page.get_by_role("heading", name="Bob's plans")).to_be_visible()
    expect(page.locator(".toolbar .meta")).to_contain_text("read-only (owner: bob)")
    # Once the script has run (it replaces the "Not connected" placeholder) and the socket settled,
    # the composer is still disabled.
    expect(page.locator("#connection-state")).not_to_have_attribute("data-state", "offline")
    expect(page.locator("#connection-state")).not_to_have_attribute("data-state", "connecting")
    expect(page.get_by_label("Message")).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.get_by_role("button", name="Steer")).to_be_hidden()
    expect(page.locator("#composer-hint")).to_contain_text("Read-only")


def test_a_failed_response_and_an_error_event_are_shown_and_the_composer_recovers(page: Page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Failures")

    send(page, "/fail")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bfailed\b"))
    error = turn(page, 0).locator(".item.error")
    expect(error).to_contain_text("The model service had an internal error.")  # in words, with the code
    expect(error).to_contain_text("server_error")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_label("Message")).to_have_value("/fail")  # the failed text is back, to retry or edit

    send(page, "/error invalid_value")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bfailed\b"))
    expect(turn(page, 1).locator(".item.error")).to_contain_text("invalid_value")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    # A rate limit is retried by the relay after the pause the upstream asks for: one turn, with a note.
    send(page, "hello again /error rate_limit_exceeded x1")
    expect(turn(page, 2)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text('Hello! You said: "hello again')
    expect(turn(page, 2)).to_contain_text("Retried: the upstream was rate limiting")
    expect(page.locator("#transcript > article.turn")).to_have_count(3)

    # Retry on a failed turn sends the same input again from the same point.
    turn(page, 0).get_by_role("button", name="Retry").click()
    expect(page.locator("#transcript > article.turn.failed")).to_have_count(3)  # /fail fails again
    before = page.locator("#transcript").inner_text()
    page.reload()
    expect(page.locator("#transcript > article.turn.failed")).to_have_count(3)
    same_transcript(page, before)


def test_a_turn_that_ends_shows_what_it_streamed_even_in_a_tab_that_draws_no_frames(page: Page) -> None:
    # A hidden tab gets no animation frames, and streamed text waits for one. A turn's end must draw what it
    # had at once: the failed reply's partial text is on the page as soon as the turn says it failed.
    page.add_init_script("window.requestAnimationFrame = () => 1; window.cancelAnimationFrame = () => {};")
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Hidden tab")

    send(page, "/fail")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bfailed\b"))
    live = turn(page, 0).locator(".item.output.message").inner_text()
    assert live.strip(), "the partial reply was not drawn when the turn failed"
    before = page.locator("#transcript").inner_text()
    # What the records hold, drawn in a tab that gets frames (this one's stub would hold back the reloaded page's
    # own drawing): the same transcript.
    reloaded = page.context.new_page()
    reloaded.goto(page.url)
    expect(turn(reloaded, 0)).to_have_class(re.compile(r"\bfailed\b"))
    same_transcript(reloaded, before)


def test_send_waits_while_a_reply_streams_and_steer_redirects_it(page: Page) -> None:
    create_user("alice", "alice-password-1")
    frames = record_sent_frames(page)
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Steering")

    send(page, "/slow 40 /long 60")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bin_progress\b"))
    expect(turn(page, 0).locator(".item.output.message")).not_to_have_text("")  # deltas are arriving
    # While it streams, Send gives way to Stop, and Enter steers.
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(page.locator("#composer-hint")).to_contain_text("Enter steers")
    steer = page.get_by_role("button", name="Steer")
    expect(steer).to_be_enabled()
    running_id = turn(page, 0).get_attribute("data-response-id")

    page.get_by_label("Message").fill("remember: steer worked")
    steer.click()
    steers = [frame for frame in frames if frame.get("type") == "response.steer"]
    assert steers == [{"type": "response.steer", "previous_response_id": running_id, "input": "remember: steer worked"}]

    # The steered response stops early and its successor, which shows the steering text, answers it.
    expect(turn(page, 0)).to_have_class(re.compile(r"\bincomplete\b"))
    expect(turn(page, 0)).to_contain_text("Steered: the reply was ended")
    successor = turn(page, 1)
    expect(successor).to_have_class(re.compile(r"\bcompleted\b"))
    expect(successor.locator(".badge.origin")).to_have_text("Steered")
    expect(successor.locator(".item.input.message")).to_contain_text("remember: steer worked")
    expect(successor.locator(".item.output.message")).to_contain_text("Okay, I will remember: steer worked.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text("Okay, I will remember: steer worked.")
    same_transcript(page, before)


def test_a_steer_sent_in_one_tab_shows_in_another_as_a_reload_draws_it(page: Page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Two tabs")
    other = page.context.new_page()
    other.goto(page.url)
    composer_ready(other)

    send(page, "/slow 40 /long 60")
    expect(turn(other, 0).locator(".item.output.message")).not_to_have_text("")  # the other tab watches it stream
    expect(page.get_by_role("button", name="Steer")).to_be_enabled()
    page.get_by_label("Message").fill("remember: steered elsewhere")
    page.get_by_role("button", name="Steer").click()

    # The other tab shows the steer's text where the steering tab and a reload show it: on the successor.
    for tab in (page, other):
        successor = turn(tab, 1)
        expect(successor).to_have_class(re.compile(r"\bcompleted\b"))
        expect(successor.locator(".badge.origin")).to_have_text("Steered")
        expect(successor.locator(".item.input.message")).to_have_text(re.compile("remember: steered elsewhere"))
    before = other.locator("#transcript").inner_text()
    assert before == page.locator("#transcript").inner_text()
    other.reload()
    composer_ready(other)
    expect(turn(other, 1).locator(".item.input.message")).to_contain_text("remember: steered elsewhere")
    same_transcript(other, before)


def test_reasoning_summaries_and_compaction_markers_render(page: Page) -> None:
    from sessions_app import services

    alice = create_user("alice", "alice-password-1")
    conversation = orm(services.conversation_create, owner=alice, title="Thinking", model="o4-mini")
    sign_in(page, "alice", "alice-password-1")
    page.goto(f"/conversations/{conversation.pk}/")
    composer_ready(page)

    send(page, "remember: krill /compact")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 0).locator(".item.output.reasoning")).to_contain_text("context items in view")
    expect(turn(page, 0).locator(".item.output.compaction")).to_contain_text("Context compacted")
    expect(turn(page, 0).locator(".item.output.message")).to_contain_text("Okay, I will remember: krill.")


def test_a_dropped_upstream_is_announced_and_the_conversation_carries_on(page: Page) -> None:
    create_user("alice", "alice-password-1")
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Dropped")

    send(page, "remember: orca")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    send(page, "/slow 20 /long 50 /drop")
    # Said on the turn (which the records keep) and beside the composer, never as a line a reload would drop.
    expect(turn(page, 1)).to_have_class(re.compile(r"\b(failed|interrupted)\b"))
    expect(turn(page, 1).locator(".item.error")).to_contain_text("dropped mid-response")
    expect(page.locator("#connection-state")).to_contain_text("upstream disconnected")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, before)

    send(page, "what did I ask you to remember?")  # a new upstream socket: the relay rebuilds the context
    expect(turn(page, 2)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("You asked me to remember: orca.")

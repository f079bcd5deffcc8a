"""Chatting on a conversation page: real Chromium, real Daphne relay, real simulator upstream."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.support import RESULTS, composer_ready, create_user, orm, send, sign_in

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
    expect(call.locator(".call-arguments")).to_have_text('{"city":"Paris"}')
    call_id = call.locator(".call-id").inner_text()
    assert call_id.startswith("call_")
    expect(page.locator("#composer-hint")).to_contain_text(f"output of get_weather ({call_id})")

    send(page, '{"temp_c": 18}')  # answered as the function's output
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 1).locator(".item.input.function_call_output")).to_contain_text('{"temp_c": 18}')
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text(
        'The get_weather tool returned {"temp_c": 18}.'
    )
    creates = [frame for frame in frames if frame.get("type") == "response.create"]
    assert creates[1]["input"] == [{"type": "function_call_output", "call_id": call_id, "output": '{"temp_c": 18}'}]


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
    expect(turn(page, 0).locator(".item.error")).to_contain_text("server_error")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    send(page, "/error rate_limit_exceeded")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bfailed\b"))
    expect(turn(page, 1).locator(".item.error")).to_contain_text("rate_limit_exceeded")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    send(page, "hello again")
    expect(turn(page, 2)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text('Hello! You said: "hello again".')


def test_send_waits_while_a_reply_streams_and_steer_redirects_it(page: Page) -> None:
    create_user("alice", "alice-password-1")
    frames = record_sent_frames(page)
    sign_in(page, "alice", "alice-password-1")
    start_conversation(page, "Steering")

    send(page, "/slow 40 /long 60")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bin_progress\b"))
    expect(turn(page, 0).locator(".item.output.message")).not_to_have_text("")  # deltas are arriving
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    steer = page.get_by_role("button", name="Steer")
    expect(steer).to_be_enabled()
    running_id = turn(page, 0).get_attribute("data-response-id")

    page.get_by_label("Message").fill("remember: steer worked")
    steer.click()
    expect(turn(page, 0).locator(".item.input.message").last).to_contain_text("remember: steer worked")
    steers = [frame for frame in frames if frame.get("type") == "response.steer"]
    assert steers == [{"type": "response.steer", "previous_response_id": running_id, "input": "remember: steer worked"}]

    # The steered response stops early and its successor answers the steering text.
    expect(turn(page, 0)).to_have_class(re.compile(r"\bincomplete\b"))
    expect(turn(page, 0)).to_contain_text("Stopped early: steered")
    successor = turn(page, 1)
    expect(successor).to_have_class(re.compile(r"\bcompleted\b"))
    expect(successor.locator(".badge.origin")).to_have_text("Steered successor")
    expect(successor.locator(".item.output.message")).to_contain_text("Okay, I will remember: steer worked.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


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
    expect(page.locator("#transcript .notice")).to_contain_text("Upstream connection closed (upstream_error")
    expect(turn(page, 1)).to_have_class(re.compile(r"\b(failed|interrupted)\b"))
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    send(page, "what did I ask you to remember?")  # a new upstream socket: the relay rebuilds the context
    expect(turn(page, 2)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("You asked me to remember: orca.")

"""Faults through the proxy, with real processes: the production shape (nginx + two Daphne processes on a private
PostgreSQL cluster and a private Redis) loses a process, restarts each in turn, loses Redis, loses PostgreSQL,
while clients talk to it through nginx. docs/production.md says what each test proves.

The script's supervisor starts a Daphne process that exited again on its port, so every test leaves the shape
as it found it (`production.wait_for_daphnes()`).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import openai
from playwright.sync_api import Page, expect
from websockets.exceptions import WebSocketException

from tests.browser.support import send, sign_in

from .test_production_shape import start_conversation, turn

TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")

RECORDS = """
import json
from sessions_app.models import ResponseRecord
rows = ResponseRecord.objects.filter(conversation__owner__username={name!r}).order_by("sent_at", "pk")
print(json.dumps([[r.origin, r.status, r.response_id] for r in rows]))
"""

HOLDER = """
import json
from sessions_app.models import UpstreamConnection
print(json.dumps(list(UpstreamConnection.objects.filter(conversation__owner__username={name!r}, close_reason="")
                      .values_list("holder", flat=True))))
"""


def records(production, name: str) -> list[list[str]]:
    return production.query(RECORDS.format(name=name))


def settled_records(production, name: str, count: int, within: float = 30.0) -> list[list[str]]:
    """The user's records once there are `count` and none is still queued or in progress (the recorder writes a
    moment behind the stream)."""
    deadline = time.monotonic() + within
    while True:
        rows = records(production, name)
        if (len(rows) >= count and all(status not in ("queued", "in_progress") for _, status, _ in rows)) \
                or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def completed(page: Page, index: int) -> None:
    expect(turn(page, index)).to_have_class(re.compile(r"\bcompleted\b"), timeout=30_000)


def test_a_killed_process_moves_the_browser_to_the_other_and_the_conversation_keeps_its_context(
    production, browser_page, make_user
) -> None:
    kim = make_user("kim")
    page = browser_page
    sign_in(page, kim["name"], kim["password"])
    start_conversation(page, "Killed mid-response")
    send(page, "remember: orca")
    completed(page, 0)

    send(page, "/long 300 /slow 30")  # ten seconds of text
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text(re.compile(r"\S+ \S+ \S+ \S+"))
    [holder] = production.query(HOLDER.format(name="kim"))
    pid = int(holder.split(":")[1])
    assert pid in production.daphne_pids()  # the process holding the browser's socket and the upstream's
    os.kill(pid, signal.SIGKILL)

    # The page reconnects through nginx (to the other process, or to the killed one's successor); once the dead
    # holder's lease ran out its response is settled `interrupted`, with what had streamed.
    expect(turn(page, 1)).to_have_class(re.compile(r"\binterrupted\b"), timeout=30_000)
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=30_000)
    send(page, "what did I ask you to remember?")
    completed(page, 2)
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("You asked me to remember: orca.")

    rows = settled_records(production, "kim", 3)
    assert [(origin, status) for origin, status, _ in rows] == [
        ("user", "completed"), ("user", "interrupted"), ("recovery_replay", "completed")]
    production.wait_for_daphnes(replacing=pid)


class Chatter(threading.Thread):
    """An SDK client chaining turns through nginx until told to stop, then asking what it was told to remember.

    A socket closed under it (a draining process answers 1012) is opened again, and a turn whose answer did not
    arrive is asked again, continuing from the last answered `previous_response_id` (which the relay replays on
    the new process: the SDK's chain survives)."""

    def __init__(self, production, user: dict, secret: str) -> None:
        super().__init__(daemon=True)
        self.production, self.secret = production, secret
        self.client = openai.OpenAI(api_key=user["token"], websocket_base_url=production.ws_url + "/v1")
        self.answered: list[str] = []  # response ids of completed turns, in order
        self.last_text = ""
        self.reconnects = 0
        self.failure: BaseException | None = None
        self.stopping = threading.Event()
        self.connection = None

    def run(self) -> None:
        try:
            self.ask(f"remember: {self.secret}")
            while not self.stopping.is_set():
                self.ask("/long 20 /slow 40")
            self.ask("what did I ask you to remember?")
        except BaseException as error:  # noqa: BLE001 (the test reports it)
            self.failure = error
        finally:
            if self.connection is not None:
                self.connection.close()

    def ask(self, text: str) -> None:
        last: BaseException | None = None
        for _ in range(10):
            try:
                if self.connection is None:
                    options = {"ssl": self.production.ssl_context()}
                    self.connection = self.client.responses.connect(websocket_connection_options=options).enter()
                extra = {"previous_response_id": self.answered[-1]} if self.answered else {}
                self.connection.response.create(model="gpt-5.5", store=False, input=text, **extra)
                event = next(e for e in self.connection if e.type in TERMINAL)
                assert event.type == "response.completed", event.to_dict()
                self.answered.append(event.response.id)
                self.last_text = event.response.output_text
                return
            except (openai.OpenAIError, WebSocketException, OSError, StopIteration, RuntimeError) as closed:
                last, self.connection = closed, None
                self.reconnects += 1
                time.sleep(0.5)
        raise AssertionError(f"no answer after 10 connections: {last!r}")


def test_a_rolling_restart_under_traffic_loses_no_turn_and_no_record(production, make_user) -> None:
    users = [make_user(f"roll{n}") for n in range(2)]
    chatters = [Chatter(production, user, f"secret-{n}") for n, user in enumerate(users)]
    for chatter in chatters:
        chatter.start()
    first = production.daphne_pids()
    for old in first:
        count = sum(len(c.answered) for c in chatters)
        while sum(len(c.answered) for c in chatters) < count + 4:  # traffic flows before each restart
            assert all(c.failure is None and c.is_alive() for c in chatters), [c.failure for c in chatters]
            time.sleep(0.1)
        os.kill(old, signal.SIGTERM)  # drains: in-flight responses finish, then 1012; the supervisor restarts it
        production.wait_for_daphnes(replacing=old)
    for chatter in chatters:
        chatter.stopping.set()
    for chatter in chatters:
        chatter.join(60)
        assert chatter.failure is None and not chatter.is_alive(), chatter.failure
        assert f"You asked me to remember: {chatter.secret}." in chatter.last_text  # the chain kept its context
    assert not set(first) & set(production.daphne_pids())  # both processes were restarted
    assert sum(c.reconnects for c in chatters) >= 1  # the restarts did reach the clients

    for user, chatter in zip(users, chatters, strict=True):
        rows = settled_records(production, user["name"], len(chatter.answered))
        recorded = {response_id: status for _, status, response_id in rows}
        # Every answer a client got is recorded completed; nothing is left in flight; anything else is a
        # request cut by a restart (interrupted, or superseded by its resend), which the client asked again.
        assert all(recorded.get(response_id) == "completed" for response_id in chatter.answered), (rows, chatter.answered)
        assert {status for _, status, _ in rows} <= {"completed", "interrupted", "failed"}, rows

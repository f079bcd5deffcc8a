"""Faults through the proxy, with real processes: the production shape (nginx + two Daphne processes on a private
PostgreSQL cluster and a private Redis) loses a process, restarts each in turn, loses Redis, loses PostgreSQL,
while clients talk to it through nginx. docs/production.md says what each test proves.

The script's supervisor starts a Daphne process that exited again on its port, so every test leaves the shape
as it found it (`production.wait_for_daphnes()`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

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


def holder_pid(production, name: str) -> int:
    """The pid of the process holding the user's open upstream socket (stamped by its first heartbeat)."""
    deadline = time.monotonic() + 30
    while True:
        holders = [h for h in production.query(HOLDER.format(name=name)) if h]
        if len(holders) == 1 or time.monotonic() > deadline:
            [holder] = holders
            return int(holder.split(":")[1])
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
    pid = holder_pid(production, "kim")
    assert pid in production.daphne_pids()  # the process holding the browser's socket and the upstream's
    [survivor] = [other for other in production.daphne_pids() if other != pid]
    os.kill(pid, signal.SIGKILL)

    # The page reconnects through nginx (to the other process, or to the killed one's successor); once the dead
    # holder's lease ran out its response is settled `interrupted`, with what had streamed.
    expect(turn(page, 1)).to_have_class(re.compile(r"\binterrupted\b"), timeout=30_000)
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=30_000)
    send(page, "what did I ask you to remember?")
    completed(page, 2)
    expect(turn(page, 2).locator(".item.output.message")).to_contain_text("You asked me to remember: orca.")

    assert holder_pid(production, "kim") == survivor  # nginx sent the page to the other process at once
    rows = settled_records(production, "kim", 3)
    assert [(origin, status) for origin, status, _ in rows] == [
        ("user", "completed"), ("user", "interrupted"), ("recovery_replay", "completed")]
    production.wait_for_daphnes(replacing=pid)


class Chatter(threading.Thread):
    """An SDK client chaining turns through nginx until told to stop, then asking what it was told to remember.

    A socket closed under it (a draining process answers 1012) is opened again, and a turn whose answer did not
    arrive, or that was refused with a 503 `error` (its input could not be recorded), is asked again, continuing from the last answered `previous_response_id` (which the relay replays on
    the new process: the SDK's chain survives)."""

    def __init__(self, production, user: dict, secret: str) -> None:
        super().__init__(daemon=True)
        self.production, self.secret = production, secret
        self.client = openai.OpenAI(api_key=user["token"], websocket_base_url=production.ws_url + "/v1")
        self.answered: list[str] = []  # response ids of completed turns, in order
        self.last_text = ""
        self.reconnects = 0
        self.refusals = 0  # turns refused with a 503 error event (the database was down), asked again
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
        for _ in range(40):
            try:
                if self.connection is None:
                    options = {"ssl": self.production.ssl_context()}
                    self.connection = self.client.responses.connect(websocket_connection_options=options).enter()
                extra = {"previous_response_id": self.answered[-1]} if self.answered else {}
                self.connection.response.create(model="gpt-5.5", store=False, input=text, **extra)
                event = next(e for e in self.connection if e.type in TERMINAL)
                if event.type == "error" and event.to_dict().get("status") == 503:
                    last = AssertionError(event.to_dict())  # e.g. recording_failed: not sent; ask again later
                    self.refusals += 1
                    time.sleep(0.5)
                    continue
                assert event.type == "response.completed", event.to_dict()
                self.answered.append(event.response.id)
                self.last_text = event.response.output_text
                return
            except (openai.OpenAIError, WebSocketException, OSError, StopIteration, RuntimeError) as closed:
                last, self.connection = closed, None
                self.reconnects += 1
                time.sleep(0.5)
        raise AssertionError(f"no answer after 40 tries: {last!r}")


def test_a_rolling_restart_under_traffic_loses_no_turn_and_no_record(production, browser_page, make_user) -> None:
    page, reader = browser_page, make_user("roller")
    sign_in(page, reader["name"], reader["password"])
    start_conversation(page, "Rolling restart")
    send(page, "remember: coral")
    completed(page, 0)
    users = [make_user(f"roll{n}") for n in range(2)]
    chatters = [Chatter(production, user, f"secret-{n}") for n, user in enumerate(users)]
    for chatter in chatters:
        chatter.start()
    first = production.daphne_pids()
    try:
        for index, old in enumerate(first, start=1):
            count = sum(len(c.answered) for c in chatters)
            while sum(len(c.answered) for c in chatters) < count + 4:  # traffic flows before each restart
                assert all(c.failure is None and c.is_alive() for c in chatters), [c.failure for c in chatters]
                time.sleep(0.1)
            expect(page.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=30_000)
            send(page, "/long 40 /slow 20")  # two seconds of text, streaming when the SIGTERM comes
            expect(turn(page, index).locator(".item.output.message")).to_contain_text(re.compile(r"\S+ \S+"))
            os.kill(old, signal.SIGTERM)  # drains: in-flight responses finish, then 1012; the supervisor restarts it
            completed(page, index)
            production.wait_for_daphnes(replacing=old)
    finally:
        for chatter in chatters:
            chatter.stopping.set()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=30_000)
    send(page, "what did I ask you to remember?")
    completed(page, 3)
    expect(turn(page, 3).locator(".item.output.message")).to_contain_text("You asked me to remember: coral.")
    for chatter in chatters:
        chatter.join(60)
        assert chatter.failure is None and not chatter.is_alive(), chatter.failure
        assert f"You asked me to remember: {chatter.secret}." in chatter.last_text  # the chain kept its context
    assert not set(first) & set(production.daphne_pids())  # both processes were restarted
    assert sum(c.reconnects for c in chatters) >= 1  # the restarts did reach the clients

    rows = settled_records(production, reader["name"], 4)
    assert [status for _, status, _ in rows] == ["completed"] * 4, rows  # each drain let the page's reply end
    for user, chatter in zip(users, chatters, strict=True):
        rows = settled_records(production, user["name"], len(chatter.answered))
        recorded = {response_id: status for _, status, response_id in rows}
        # Every answer a client got is recorded completed; nothing is left in flight; anything else is a
        # request cut by a restart (interrupted, or superseded by its resend), which the client asked again.
        assert all(recorded.get(response_id) == "completed" for response_id in chatter.answered), (rows, chatter.answered)
        assert {status for _, status, _ in rows} <= {"completed", "interrupted", "failed"}, (user["name"], rows)


def chat_under(production, make_user, browser_page, name: str, fault) -> None:
    """A browser and an SDK client keep talking while `fault()` runs; then each still has its context, and
    every answer either got is recorded completed."""
    user, sdk_user = make_user(name), make_user(f"{name}-sdk")
    page = browser_page
    live: list[str] = []  # the states of the switchboard.live events the page received
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: note_live(payload, live)))
    sign_in(page, user["name"], user["password"])
    start_conversation(page, name)
    send(page, "remember: kelp")
    completed(page, 0)
    chatter = Chatter(production, sdk_user, "plankton")
    chatter.start()
    try:
        while len(chatter.answered) < 3:
            assert chatter.failure is None and chatter.is_alive(), chatter.failure
            time.sleep(0.1)

        fault(page, live)

        send(page, "what did I ask you to remember?")
        completed(page, 2)
        expect(turn(page, 2).locator(".item.output.message")).to_contain_text("You asked me to remember: kelp.")
        answered = len(chatter.answered)
        while len(chatter.answered) < answered + 3:  # the SDK's chain goes on too
            assert chatter.failure is None and chatter.is_alive(), chatter.failure
            time.sleep(0.1)
    finally:
        chatter.stopping.set()
    chatter.join(60)
    assert chatter.failure is None and not chatter.is_alive(), chatter.failure
    assert "You asked me to remember: plankton." in chatter.last_text

    rows = settled_records(production, user["name"], 3)
    assert [status for _, status, _ in rows] == ["completed"] * 3, rows
    rows = settled_records(production, sdk_user["name"], len(chatter.answered))
    recorded = {response_id: status for _, status, response_id in rows}
    assert all(recorded.get(response_id) == "completed" for response_id in chatter.answered), rows
    assert {status for _, status, _ in rows} <= {"completed", "interrupted", "failed"}, (sdk_user["name"], rows)


def note_live(payload: str | bytes, live: list[str]) -> None:
    if isinstance(payload, str) and '"switchboard.live"' in payload:
        live.append(json.loads(payload)["state"])


def health(production) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(production.url + "/healthz", context=production.ssl_context(), timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_redis_restarted_under_traffic_loses_no_turn_and_no_record(production, browser_page, make_user) -> None:
    def restart_redis(page: Page, live: list[str]) -> None:
        production.redis.stop()
        try:
            status, report = health(production)
            assert status == 200 and report["channel_layer"]["status"] == "down"  # degraded, not down
            send(page, "/long 10")  # the browser's own process relays and records without the layer
            completed(page, 1)
        finally:
            production.redis.start()  # whatever happened: the next tests need it
        deadline = time.monotonic() + 60
        while health(production)[1]["channel_layer"]["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.5)
        # The page's live view paused with the layer; it resumes (with a fresh history) once its process's
        # subscriber is back in its group. Sending before that races the page's own redraw from that history.
        # Playwright's sync API hands the page's frames to `live` only while the test calls it: wait through it,
        # not in time.sleep, which left `live` as it was until the deadline (60 s, every run).
        while "paused" in live and live[-1] != "resumed" and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert "paused" not in live or live[-1] == "resumed", live

    chat_under(production, make_user, browser_page, "redis", restart_redis)


def test_postgresql_restarted_under_traffic_loses_no_turn_and_no_record(production, browser_page,
                                                                      make_user) -> None:
    def restart_postgresql(page: Page, live: list[str]) -> None:
        production.cluster.restart()
        send(page, "/long 10")
        completed(page, 1)

    chat_under(production, make_user, browser_page, "postgres", restart_postgresql)

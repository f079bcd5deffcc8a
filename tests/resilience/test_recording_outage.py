"""A response already streaming when the database stops keeps streaming; its records wait and are written
when the database returns.

A private PostgreSQL cluster (never the machine's shared one) under a real Daphne (`python -m
sessions_app.serve`) and the simulator process: a slow long reply starts on a gateway socket and on a
browser socket, the cluster stops mid-stream, each client still receives every delta and the
`response.completed`; a new request meanwhile is refused
with `recording_failed` (its input cannot be stored, so nothing goes upstream). The cluster starts again,
and the record is written as the client saw it: completed, the output text, the usage, the conversation's
latest response (the writer kept the order). The log says the outage began and ended, once each. A
second outage lasts until the server is stopped: it waits SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS, then
logs what it could not write. The cluster is removed afterwards, whatever happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.live import ROOT
from tests.private_services import needs_cluster_tools, pg_ctl
from tests.private_services import private_cluster as private_cluster_of
from tests.resilience.test_database_outage import world_on

SLOW_LONG = "/slow 30 /long 400 tell me a long story"
DELTAS = 400
STOP_AFTER_DELTAS = 40
SHUTDOWN_SECONDS = 3

RECORDS = """
import json, time
import django
django.setup()
from sessions_app.models import Conversation, Item, ResponseRecord
deadline = time.monotonic() + 90
while True:
    record = ResponseRecord.objects.filter(response_id={response_id!r}).first()
    conversation = Conversation.objects.filter(latest_response_id={response_id!r}).first()  # after the record's ops
    if (record is not None and record.status != "in_progress" and conversation is not None) \\
            or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps({{
    "status": record and record.status, "events_received": record and record.events_received,
    "output_tokens": record and record.output_tokens, "total_tokens": record and record.total_tokens,
    "output": [i.text for i in Item.objects.filter(response=record, direction="output").order_by("position")]
              if record else None,
    "conversation_status": conversation and conversation.status,
    "requests": [r.request_payload.get("input") for r in ResponseRecord.objects.filter(
        conversation=record.conversation_id).order_by("pk")] if record else None,
}}))
"""


@pytest.fixture
def private_cluster():
    with private_cluster_of("sbrecout") as made:
        yield made


@pytest.fixture
def recording_world(private_cluster, tmp_path: Path):
    with world_on(private_cluster, tmp_path, SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS)) as world:
        yield world


def wait_for_log(log: Path, text: str, times: int = 1, seconds: float = 60) -> str:
    """The log once it contains `text` `times` times (a bounded wait for the server to get there, not a
    timing assertion)."""
    deadline = time.monotonic() + seconds
    while (logged := log.read_text()).count(text) < times:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged:\n{logged[-4000:]}")
        time.sleep(0.2)
    return logged


def create(text: str, **fields) -> str:
    return json.dumps({"type": "response.create", "model": "gpt-5.5", "store": False, "input": text, **fields})


def until_terminal(socket, events: list[dict]) -> dict:
    while True:
        event = json.loads(socket.recv(timeout=30))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "response.incomplete", "error"):
            return event


def until_deltas(socket, events: list[dict], count: int) -> None:
    while sum(e["type"] == "response.output_text.delta" for e in events) < count:
        events.append(json.loads(socket.recv(timeout=30)))


def stored(world, response_id: str) -> dict:
    """The records of `response_id`, once the server has written them (the script waits up to 90 s)."""
    queried = subprocess.run([sys.executable, "-c", RECORDS.format(response_id=response_id)], cwd=ROOT,
                             env=world["env"], check=True, capture_output=True, text=True, timeout=120)
    return json.loads(queried.stdout.strip().splitlines()[-1])


def check_stream(events: list[dict], completed: dict) -> tuple[str, list[dict]]:
    """Every delta arrived, nothing is missing, and the text is the response's: (text, protocol events)."""
    assert completed["type"] == "response.completed", completed
    relayed = [e for e in events if not e["type"].startswith("switchboard.")]  # the browser's own events aside
    deltas = [e for e in relayed if e["type"] == "response.output_text.delta"]
    assert len(deltas) == DELTAS
    assert [e["sequence_number"] for e in relayed] == list(range(len(relayed)))
    text = "".join(e["delta"] for e in deltas)
    [message] = [item for item in completed["response"]["output"] if item["type"] == "message"]
    assert text == message["content"][0]["text"]
    return text, relayed


def check_record(record: dict, completed: dict, text: str, relayed: list[dict], logged: str) -> None:
    """The record as the client saw the response (all its ops written, in order)."""
    assert record["status"] == "completed", (record, logged[-4000:])
    assert record["output"] == [text]
    assert record["output_tokens"] == completed["response"]["usage"]["output_tokens"] == DELTAS
    assert record["total_tokens"] == completed["response"]["usage"]["total_tokens"]
    assert record["events_received"] == len(relayed)
    assert record["conversation_status"] == "idle"  # its state op came after the record's, in order
    assert record["requests"] == [SLOW_LONG]  # a request refused meanwhile left no record


@needs_cluster_tools
def test_a_streaming_response_survives_a_database_outage_and_is_recorded_when_it_returns(recording_world):
    world, port = recording_world, recording_world["port"]
    with connect(f"ws://127.0.0.1:{port}/v1/responses", open_timeout=20,
                 additional_headers={"Authorization": f"Bearer {world['token']}"}) as socket, \
            connect(f"ws://127.0.0.1:{port}/ws/conversations/{world['conversation']}/", open_timeout=20,
                    origin=f"http://127.0.0.1:{port}", additional_headers={"Cookie": f"sessionid={world['session']}"}
                    ) as browser, \
            connect(f"ws://127.0.0.1:{port}/v1/responses", open_timeout=20,
                    additional_headers={"Authorization": f"Bearer {world['token']}"}) as fresh:
        socket.send(create(SLOW_LONG))
        browser.send(json.dumps({"type": "response.create", "input": SLOW_LONG}))
        events: list[dict] = []
        seen: list[dict] = []
        until_deltas(socket, events, STOP_AFTER_DELTAS)
        until_deltas(browser, seen, STOP_AFTER_DELTAS)

        pg_ctl(world["cluster"], "stop")  # mid-stream: each reply has ~350 deltas (10 s) to go

        completed = until_terminal(socket, events)
        seen_text, relayed = check_stream(events, completed)
        shown = until_terminal(browser, seen)
        shown_text, shown_relayed = check_stream(seen, shown)
        # The finished responses' records wait in the queue; the writer has found the database down.
        wait_for_log(world["log"], "Database unavailable (")

        # A new request cannot have its input stored: refused, and not sent upstream (the writer knows the
        # database is down, so it is not sent beside its write either: relay/overlap.py).
        socket.send(create("this one cannot be stored", previous_response_id=completed["response"]["id"]))
        refused = json.loads(socket.recv(timeout=30))
        assert refused["type"] == "error" and refused["error"]["code"] == "recording_failed", refused
        # A socket's first request needs the user's limits and usage read first: the same clear refusal.
        fresh.send(create("my first words, during the outage"))
        refused = json.loads(fresh.recv(timeout=30))
        assert refused["type"] == "error" and refused["error"]["code"] == "recording_failed", refused

        pg_ctl(world["cluster"], "start")

        logged = wait_for_log(world["log"], "Database available again")
        check_record(stored(world, completed["response"]["id"]), completed, seen_text, relayed, logged)
        check_record(stored(world, shown["response"]["id"]), shown, shown_text, shown_relayed, logged)

        # Writing works again on the same socket.
        socket.send(create("and now?", previous_response_id=completed["response"]["id"]))
        assert until_terminal(socket, [])["type"] == "response.completed"

        recording_lines = [line for line in logged.splitlines() if "sessions_app.recording" in line]
        assert sum("Database unavailable (" in line for line in recording_lines) == 1, recording_lines
        assert sum("Database available again" in line for line in recording_lines) == 1, recording_lines
        assert not any(" ERROR sessions_app.recording" in line for line in recording_lines), recording_lines  # none lost
        assert " WARNING sessions_app.relay: Could not record a request for conversation " in logged
        assert "it was not relayed (database unavailable: OperationalError)" in logged
        assert "Traceback" not in logged  # an outage is warnings, one line each

        # Stopping the server while the database is down: a bounded wait, then what is lost is logged.
        socket.send(create("/slow 30 /long 60 one more", previous_response_id=completed["response"]["id"]))
        last: list[dict] = []
        while not any(e["type"] == "response.output_text.delta" for e in last):
            last.append(json.loads(socket.recv(timeout=30)))
        pg_ctl(world["cluster"], "stop")
        assert until_terminal(socket, last)["type"] == "response.completed"
        wait_for_log(world["log"], "Database unavailable (", times=2)
        world["process"].terminate()
        world["process"].wait(60)
    logged = world["log"].read_text()
    [lost] = [line for line in logged.splitlines() if "Recorder stopped with" in line]
    assert lost.startswith(tuple("0123456789")) and " ERROR sessions_app.recording: " in lost
    assert f"after waiting {float(SHUTDOWN_SECONDS)} s for a database unavailable" in lost
    assert "1 Finished" in lost  # the response that completed during this outage


CONVERSATION = """
import json
import django
django.setup()
from sessions_app.models import ResponseRecord, UpstreamConnection
record = ResponseRecord.objects.get(response_id={response_id!r})
print(json.dumps({{
    "requests": [r.request_payload.get("input") for r in ResponseRecord.objects.filter(
        conversation=record.conversation_id).order_by("pk")],
    "closed": list(UpstreamConnection.objects.filter(conversation=record.conversation_id).order_by("pk")
                   .values_list("close_reason", flat=True)),
}}))
"""


@needs_cluster_tools
def test_a_request_sent_beside_its_write_is_cut_unseen_when_the_database_fails(recording_world):
    """The usual continuation goes upstream while its record is written (relay/overlap.py). The database stops
    after the send: nothing of the response reaches the client, which gets `recording_failed`; the upstream
    socket is closed; the next turn replays the context from the records on a new socket."""
    world, port = recording_world, recording_world["port"]
    with connect(f"ws://127.0.0.1:{port}/v1/responses", open_timeout=20,
                 additional_headers={"Authorization": f"Bearer {world['token']}"}) as socket:
        socket.send(create("remember: orca"))
        first = until_terminal(socket, [])
        assert first["type"] == "response.completed", first
        pg_ctl(world["cluster"], "stop")  # nothing is queued: the relay does not know yet

        socket.send(create("/slow 30 /long 60 tell me a story", previous_response_id=first["response"]["id"]))
        refused = json.loads(socket.recv(timeout=30))
        assert refused["type"] == "error" and refused["error"]["code"] == "recording_failed", refused
        logged = wait_for_log(world["log"], "a request sent before its record committed could not be recorded")
        with pytest.raises(TimeoutError):  # the upstream had started it; none of it is relayed
            socket.recv(timeout=3)

        pg_ctl(world["cluster"], "start")
        socket.send(create("what did I ask you to remember?", previous_response_id=first["response"]["id"]))
        events: list[dict] = []
        answer = until_terminal(socket, events)
        assert answer["type"] == "response.completed", answer
        assert "You asked me to remember: orca." in "".join(
            e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert answer["response"]["previous_response_id"] == first["response"]["id"]

    queried = subprocess.run([sys.executable, "-c", CONVERSATION.format(response_id=answer["response"]["id"])],
                             cwd=ROOT, env=world["env"], check=True, capture_output=True, text=True, timeout=120)
    records = json.loads(queried.stdout.strip().splitlines()[-1])
    assert records["requests"][0] == "remember: orca"
    assert "tell me a story" not in json.dumps(records["requests"])  # its input was never stored
    assert records["closed"][0] == "recording_failed"  # the socket that carried it
    assert " WARNING sessions_app.relay: Could not record a request for conversation " in logged

"""Differential: the same scripted conversations straight to the simulator and through the gateway.

Each script runs twice, on raw WebSockets: once straight to a simulator of its own, once through the
gateway (`/v1/responses`, the real ASGI app) to the profile's simulator. Both event streams are
normalised (ids renamed by order of first appearance, times dropped, lanes of a concurrent step put
one after the other) and must be equal: every event, type, sequence number, item and field.

* `no-faults`: nothing happens to either upstream.
* `faults`: the gateway's upstream has a short connection limit, waited out at the script's
  `pause` steps, and its socket is cut without a close frame at the `drop` steps (as `/drop` does).
  The gateway recovers (replays the context from its records) and the client must not notice;
  only `usage` may differ, since a replay is billed differently (no cached tokens).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from websockets.asyncio.client import connect

from sessions_app.models import ApiToken, Conversation, ResponseRecord, UpstreamConnection
from sessions_app.simulator import Simulator, SimulatorConfig
from tests.relay.conftest import SECRET_KEY, TERMINAL, db, eventually, validated

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT_SECONDS = 1.0
MODEL = "gpt-5.5"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


# -- scripts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One create: `after` names the turn it continues (its response id is filled in per run),
    `answers` the turn whose function calls this one answers (function_call_output items)."""

    name: str
    input: Any = None
    after: str | None = None
    lane: str | None = None
    answers: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def create(self, ran: dict[str, dict[str, Any]]) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "response.create", "model": MODEL, "store": False, **self.fields}
        if self.answers is not None:
            calls = [i for i in ran[self.answers]["output"] if i["type"] == "function_call"]
            event["input"] = [{"type": "function_call_output", "call_id": c["call_id"], "output": '{"temp": 21}'}
                              for c in calls]
        else:
            event["input"] = self.input
        if self.after is not None:
            event["previous_response_id"] = ran[self.after]["id"]
        if self.lane is not None:
            event["stream_id"] = self.lane
        return event


@dataclass(frozen=True)
class Together:
    """Creates sent at once (lanes run concurrently, a busy lane queues); read until all ended."""

    turns: tuple[Turn, ...]


PAUSE, DROP = "pause", "drop"  # faults of the gateway's upstream (the `faults` mode only)
Step = Turn | Together | str

CHAIN = [
    Turn("a", "remember: orca"),
    Turn("b", "and the sea is blue", after="a"),
    PAUSE,
    Turn("c", "how many items?", after="b"),
    DROP,
    Turn("d", "what did I ask you to remember?", after="c"),
    PAUSE,
    Turn("e", "hello again", after="d"),
    DROP,  # a replay that ends response.incomplete, then one that ends response.failed
    Turn("f", "tell me about the sea /incomplete", after="e"),
    PAUSE,
    Turn("g", "and the wind /fail", after="f"),
]
TOOLS = [
    Turn("ask", "What is the weather in Paris?", fields={"tools": [WEATHER], "instructions": "Be brief."}),
    PAUSE,
    Turn("answer", answers="ask", after="ask", fields={"tools": [WEATHER], "instructions": "Be brief."}),
    DROP,
    Turn("more", "/tool get_weather {\"city\": \"Oslo\"}", after="answer", fields={"tools": [WEATHER]}),
    Turn("done", answers="more", after="more", fields={"tools": [WEATHER]}),
    PAUSE,
    Turn("recall", "how many items?", after="done"),
]
LANES = [
    Together((Turn("k", "remember: kiwi", lane="left"), Turn("p", "remember: plum", lane="right"))),
    PAUSE,
    Together((Turn("k2", "what did I ask you to remember?", after="k", lane="left"),
              Turn("p2", "what did I ask you to remember?", after="p", lane="right"))),
    DROP,
    Turn("fork", "what did I ask you to remember?", after="k2", lane="third"),
    Together((Turn("q1", "first in the queue", after="fork", lane="third"),
              Turn("q2", "second in the queue", lane="third"))),
    PAUSE,
    Turn("after-queue", "how many items?", after="q2", lane="left"),
]
WARMUP = [
    Turn("warm", [], fields={"generate": False, "instructions": "You are a coding agent.", "tools": [WEATHER]}),
    PAUSE,
    Turn("first", "remember: the build is green", after="warm",
         fields={"instructions": "You are a coding agent.", "tools": [WEATHER]}),
    DROP,
    Turn("second", "what did I ask you to remember?", after="first",
         fields={"instructions": "You are a coding agent.", "tools": [WEATHER]}),
]
COMPACTING = {"context_management": [{"type": "compaction", "compact_threshold": 60}]}
COMPACTION = [
    Turn("c1", "remember: amber", fields=COMPACTING),
    Turn("c2", "remember: violet and a long line of words to fill the context window", after="c1",
         fields=COMPACTING),
    Turn("c3", "remember: teal, then tell me more about the sea and the wind", after="c2", fields=COMPACTING),
    DROP,
    Turn("c4", "what did I ask you to remember?", after="c3", fields=COMPACTING),
    PAUSE,
    Turn("c5", "go on /compact", after="c4", fields=COMPACTING),
    DROP,
    Turn("c6", "what did I ask you to remember?", after="c5", fields=COMPACTING),
]
SCRIPTS = {"chain": CHAIN, "tools": TOOLS, "lanes": LANES, "warmup": WARMUP, "compaction": COMPACTION}
# What each script must show, so a script that stopped covering its subject fails.
COVERS = {"chain": "response.output_text.delta", "tools": "response.function_call_arguments.done",
          "lanes": "response.output_text.delta", "warmup": "response.completed",
          "compaction": "response.compaction.compacting"}


# -- running a script ------------------------------------------------------------------------


class Direct:
    """A raw WebSocket straight to a simulator."""

    def __init__(self, connection) -> None:
        self.connection = connection

    async def send(self, event: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        return validated(json.loads(await asyncio.wait_for(self.connection.recv(), 10)))


async def run(client, script: list[Step], fault) -> list[list[dict[str, Any]]]:
    """The events of each step of `script` (faults call `fault`), in the order received."""
    ran: dict[str, dict[str, Any]] = {}
    steps: list[list[dict[str, Any]]] = []
    for step in script:
        if isinstance(step, str):
            await fault(step)
            continue
        turns = step.turns if isinstance(step, Together) else (step,)
        for turn in turns:
            await client.send(turn.create(ran))
        events: list[dict[str, Any]] = []
        waiting = [turn.lane for turn in turns]  # one end per create, lane by lane
        while waiting:
            event = await client.recv()
            events.append(event)
            if event["type"] in TERMINAL or event["type"] == "error":
                waiting.remove(event.get("stream_id"))
        for turn in turns:  # each turn's terminal Response, in its lane's order
            ends = [e for e in events if e["type"] in TERMINAL and e.get("stream_id") == turn.lane]
            index = [t.lane for t in turns[:turns.index(turn)]].count(turn.lane)
            assert index < len(ends), f"{turn.name} got no response: {events[-1]}"
            ran[turn.name] = ends[index]["response"]
        steps.append(events)
    return steps


# -- normalising -----------------------------------------------------------------------------

ID = re.compile(r"^(resp|msg|fc|call|rs|cmp|steer)_[0-9A-Za-z]+$")
TIMES = ("created_at", "completed_at")


def normalised(steps: list[list[dict[str, Any]]], *, usage: bool) -> list[dict[str, Any]]:
    """The events in a comparable form: each step's lanes one after the other (a lane's own order
    kept: lanes interleave as they please), every id renamed `<prefix>#<n>` by order of first
    appearance, times replaced by a mark (null stays null), `usage` dropped unless `usage`."""
    ordered: list[dict[str, Any]] = []
    for events in steps:
        lanes = sorted({e.get("stream_id") or "" for e in events})
        ordered += [e for lane in lanes for e in events if (e.get("stream_id") or "") == lane]
    names: dict[str, str] = {}

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items() if usage or k != "usage"}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key in TIMES and value is not None:
            return "<time>"
        if isinstance(value, str) and ID.match(value):
            if value not in names:
                prefix = value.split("_", 1)[0]
                names[value] = f"{prefix}#{sum(1 for n in names.values() if n.startswith(prefix + '#')) + 1}"
            return names[value]
        return value

    return [walk(e) for e in ordered]


def first_difference(direct: list[dict[str, Any]], gateway: list[dict[str, Any]]) -> str:
    for n, (a, b) in enumerate(zip(direct, gateway, strict=False)):
        if a != b:
            return f"event {n}:\n direct:  {json.dumps(a)[:1500]}\n gateway: {json.dumps(b)[:1500]}"
    return f"lengths {len(direct)} (direct) != {len(gateway)} (gateway)"


# -- the test --------------------------------------------------------------------------------


@pytest.mark.parametrize("simulator_config", [{}, {"connection_limit_seconds": LIMIT_SECONDS}],
                         ids=["no-faults", "faults"])
@pytest.mark.parametrize("script", list(SCRIPTS))
async def test_the_gateway_streams_what_the_upstream_streams(simulator_config, script, profile, sim, user,
                                                            open_gateway):
    faults = bool(simulator_config)
    steps = SCRIPTS[script]
    config = SimulatorConfig(host="127.0.0.1", port=0, tokens_per_second=0, require_key=SECRET_KEY)
    async with Simulator(config) as upstream, connect(
        upstream.url, additional_headers={"Authorization": f"Bearer {SECRET_KEY}"}, max_size=None
    ) as connection:
        direct = await run(Direct(connection), steps, fault=_nothing)

    _, token = await db(ApiToken.issue)(user=user)
    socket = await open_gateway(token)

    async def fault(kind: str) -> None:
        if not faults:
            return
        if kind == PAUSE:  # the next create meets the connection limit
            await asyncio.sleep(LIMIT_SECONDS + 0.1)
            return
        assert sim.abort_connections() == 1  # the upstream socket dies without a close frame (1006)
        closed = await eventually(lambda: not UpstreamConnection.objects.filter(closed_at__isnull=True).exists())
        assert closed, "the relay never saw its upstream socket die"

    gateway = await run(socket, steps, fault=fault)
    await socket.close()

    expected, got = normalised(direct, usage=not faults), normalised(gateway, usage=not faults)
    assert got == expected, first_difference(expected, got)
    assert COVERS[script] in {e["type"] for e in expected}
    if script == "chain":  # every kind of Response end, replayed too with faults
        assert TERMINAL <= {e["type"] for e in expected}
    if script == "lanes":
        assert {e.get("stream_id") for e in expected} == {"left", "right", "third"}
    if script == "warmup":
        assert expected[2]["response"]["output"] == []  # generate: false

    [conversation] = await db(lambda: list(Conversation.objects.filter(owner=user)))()
    records = await db(lambda: list(ResponseRecord.objects.filter(conversation=conversation)))()
    replays = [r for r in records if r.origin == ResponseRecord.Origin.RECOVERY_REPLAY]
    if not faults:
        assert not replays and sim.connections_opened == 1
        return
    # Every fault was met and recovered from: a new upstream socket each, and what follows it replayed.
    assert sim.connections_opened == 1 + sum(1 for s in steps if isinstance(s, str))
    assert replays and all(r.previous_response_id == "" and r.parent_id for r in replays)
    assert all("previous_response_id" not in r.request_payload for r in replays)


async def _nothing(kind: str) -> None:
    return None


@pytest.mark.parametrize("simulator_config", [{"connection_limit_seconds": LIMIT_SECONDS}])
async def test_a_replay_echoes_the_clients_previous_response_id_and_the_admin_shows_both(
    simulator_config, profile, user, staff_user, open_gateway, open_browser, conversation_of
):
    _, token = await db(ApiToken.issue)(user=user)
    socket = await open_gateway(token)
    first = (await socket.turn("remember: orca", model=MODEL, store=False))[-1]["response"]["id"]
    await asyncio.sleep(LIMIT_SECONDS + 0.1)
    events = await socket.turn("what did I ask you to remember?", model=MODEL, store=False,
                               previous_response_id=first)
    await socket.close()
    responses = [e["response"] for e in events if "response" in e]
    assert [e["type"] for e in events if "response" in e] == [
        "response.created", "response.in_progress", "response.completed"]
    assert {r["previous_response_id"] for r in responses} == {first}
    assert "orca" in responses[-1]["output"][0]["content"][0]["text"]

    # The browser face: its notice, and the same echo.
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    start = (await browser.turn("remember: kiwi"))[-1]["response"]["id"]
    await asyncio.sleep(LIMIT_SECONDS + 0.1)
    events = await browser.turn("what did I ask you to remember?", previous_response_id=start)
    await browser.close()
    [notice] = [e for e in events if e["type"] == "switchboard.recovered"]
    assert (notice["previous_response_id"], notice["replayed"]) == (start, True)
    assert {e["response"]["previous_response_id"] for e in events if "response" in e} == {start}

    # The records keep what was sent (a new chain) and show what the client asked for.
    replay = await db(ResponseRecord.objects.get)(response_id=responses[-1]["id"])
    assert replay.origin == "recovery_replay" and replay.previous_response_id == ""
    assert "previous_response_id" not in replay.request_payload
    assert replay.response_payload["previous_response_id"] is None  # the upstream's own answer

    def admin_page() -> str:
        client = Client()
        client.force_login(staff_user)
        return client.get(reverse("admin:sessions_app_responserecord_change", args=[replay.pk])).content.decode()

    page = await db(admin_page)()
    sent, asked = page.index("Previous_response_id as sent:"), page.index("Previous_response_id the client sent:")
    assert sent < asked < page.index("Request as sent:")  # side by side, the replay's payload below
    assert first in page[asked:page.index("</div>", asked)]


async def test_a_fork_replayed_on_the_same_socket_echoes_the_id_it_forked_from(profile, user, open_gateway):
    """previous_response_not_found on the socket itself (the upstream caches only its latest response): the
    fork is resent there as a replay, and its Response objects still name the response the client forked."""
    _, token = await db(ApiToken.issue)(user=user)
    socket = await open_gateway(token)
    ids = [(await socket.turn("remember: orca", model=MODEL, store=False))[-1]["response"]["id"]]
    for n in range(2):
        events = await socket.turn(f"turn {n}", model=MODEL, store=False, previous_response_id=ids[-1])
        ids.append(events[-1]["response"]["id"])
    events = await socket.turn("what did I ask you to remember?", model=MODEL, store=False,
                               previous_response_id=ids[0])
    await socket.close()
    assert "error" not in {e["type"] for e in events}
    assert [(e["type"], e["response"]["previous_response_id"]) for e in events if "response" in e] == [
        ("response.created", ids[0]), ("response.in_progress", ids[0]), ("response.completed", ids[0])]
    replay = await db(ResponseRecord.objects.get)(response_id=events[-1]["response"]["id"])
    assert (replay.origin, replay.previous_response_id, replay.connection_id is not None) == (
        "recovery_replay", "", True)
    assert await db(lambda: UpstreamConnection.objects.count())() == 1  # the same upstream socket


async def test_only_a_replayed_request_pays_for_the_echo(profile, user, open_gateway, monkeypatch):
    """Frames of ordinary turns go out as the upstream sent them: the rewrite runs for a replay's Response
    events only (counted at the one place the relay calls it)."""
    from sessions_app.relay import stream

    rewritten: list[str] = []
    real = stream.echoed_frame
    monkeypatch.setattr(stream, "echoed_frame", lambda frame, *args: rewritten.append(frame) or real(frame, *args))
    _, token = await db(ApiToken.issue)(user=user)
    socket = await open_gateway(token)
    previous = None
    for n in range(3):
        events = await socket.turn(f"turn {n}", model=MODEL, store=False, previous_response_id=previous)
        previous = events[-1]["response"]["id"]
    await socket.close()
    assert rewritten == []
    fresh = await open_gateway(token)  # a new socket's cache is empty: the continuation is replayed
    events = await fresh.turn("and on", model=MODEL, store=False, previous_response_id=previous)
    await fresh.close()
    assert len(rewritten) == len([e for e in events if "response" in e]) == 3
    assert {e["response"]["previous_response_id"] for e in events if "response" in e} == {previous}


async def test_the_sdk_sees_its_own_chain_in_every_response_across_connection_limits(limited_daphne, user):
    """The official SDK through a real Daphne whose upstream has a 1 s limit: every Response object of
    every turn names the response the client continued, replayed or not."""
    import openai

    _, token = await db(ApiToken.issue)(user=user)
    client = openai.AsyncOpenAI(api_key=token, websocket_base_url=limited_daphne.ws_url + "/v1")
    previous: str | None = None
    async with client.responses.connect() as connection:
        for n in range(4):
            await connection.response.create(model=MODEL, store=False, input=f"remember: fact {n}",
                                             previous_response_id=previous)
            echoed = []
            async for event in connection:
                assert event.type != "error", event
                if hasattr(event, "response"):
                    echoed.append(event.response.previous_response_id)
                if event.type == "response.completed":
                    break
            assert echoed == [previous] * 3  # created, in_progress, completed
            previous = event.response.id
            if n < 3:
                await asyncio.sleep(LIMIT_SECONDS + 0.1)  # the next create meets the limit
    replays = await db(lambda: ResponseRecord.objects.filter(origin="recovery_replay").count())()
    assert replays == 3

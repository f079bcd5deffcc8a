"""Upstreams that misbehave, for real: a Daphne process relays to small servers that refuse handshakes,
never answer them, fall silent, or send frames that break the protocol.

Both faces are driven over real sockets: the browser socket (a session cookie) and the gateway socket
(the official `openai` SDK, `client.responses.connect()`). Each case asserts that the client gets a clear
`error` (a code and a message in words), that the socket is not stuck (the next turn gets an answer or
the same clear error), that Daphne keeps no socket to the bad upstream once its clients left (the bad
servers count their open connections; the UpstreamConnection rows all end with a close reason), and,
under floods of refusals and broken frames, that its memory and the error rows stay bounded.

Daphne runs with short limits (`SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS`, `..._STALL_SECONDS`,
`SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES`) so a timeout takes a second or two, not minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db.models import Count
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from sessions_app.models import ErrorEvent, ResponseRecord, UpstreamConnection, UpstreamProfile, UserLimits
from sessions_app.upstream import UpstreamTarget, post_compact
from tests.relay.conftest import db
from tests.resilience.bad_upstream import FRAME_CAP, BadUpstream
from tests.worlds import signed_in

pytestmark = pytest.mark.django_db(transaction=True)

OPEN_TIMEOUT, STALL = "3", "3"  # generous: a loaded CI machine must not trip them on a healthy upstream
REFUSALS = (401, 429, 500, 503)
WORDS = {"notjson": "a frame that is not JSON", "notype": 'a JSON frame without a "type"',
         "binary": "a binary frame (14 bytes)"}
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
WAIT = 30.0  # generous: two cores, other test runs beside this one


@pytest.fixture(scope="module")
def bad():
    with BadUpstream() as upstream:
        yield upstream


# -- the world: profiles, a user with a session and a token, a real Daphne -----------------------------

def make_world(bad: BadUpstream) -> dict[str, Any]:
    from sessions_app.services import conversation_create

    urls = {"ok": bad.url("/v1/responses"), "silent": bad.silent_url, "garbage": bad.garbage_url,
            "slow": bad.url("/slow-handshake/700"), "hangup": bad.url("/hang-up"),
            **{f"refuse{s}": bad.url(f"/refuse/{s}") for s in REFUSALS}}
    made = signed_in(token_name="bad upstreams", is_staff=True)
    user, token = made["user"], made["token_row"]
    token.reads_metrics = True
    token.save(update_fields=["reads_metrics"])
    conversations = {}
    for name, url in urls.items():
        profile = UpstreamProfile.objects.create(name=f"bad-{name}", websocket_url=url, auth_style="none")
        for face in ("browser", "gateway"):
            conversations[name, face] = str(conversation_create(owner=user, profile=profile).pk)
    return {"session": made["session"], "token": made["token"], "conversations": conversations}


@pytest.fixture
def world(transactional_db, bad, tmp_path):
    from tests.live import daphne_process

    made = make_world(bad)
    env = {"SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS": OPEN_TIMEOUT, "SWITCHBOARD_UPSTREAM_STALL_SECONDS": STALL,
           "SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES": str(FRAME_CAP), "SWITCHBOARD_UPSTREAM_IDLE_SECONDS": "0",
           "SWITCHBOARD_LOG_FORMAT": "text"}
    with daphne_process(db_connection.settings_dict, env) as server:
        yield {**made, "server": server}


class Browser:
    """A browser socket on the real Daphne (session cookie, same origin)."""

    def __init__(self, world: dict[str, Any], name: str) -> None:
        self.world, self.name = world, name

    async def __aenter__(self) -> Browser:
        server = self.world["server"]
        conversation = self.world["conversations"][self.name, "browser"]
        self.ws = await connect(f"{server.ws_url}/ws/conversations/{conversation}/", origin=server.base_url,
                                additional_headers={"Cookie": f"sessionid={self.world['session']}"},
                                open_timeout=WAIT)
        await self._until(lambda e: e["type"] == "switchboard.status")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ws.close()

    async def _until(self, done) -> list[dict[str, Any]]:
        events = []
        while True:
            events.append(json.loads(await asyncio.wait_for(self.ws.recv(), WAIT)))
            if done(events[-1]):
                return events

    async def turn(self, text: str, ends: int = 1) -> list[dict[str, Any]]:
        """Send a create; every event until it ended (its terminal event, or the error that ended it), or until
        `ends` such events came."""
        await self.ws.send(json.dumps({"type": "response.create", "input": text}))
        events: list[dict[str, Any]] = []
        for _ in range(ends):
            events += await self._until(ends_turn)
        return events


class Gateway:
    """A gateway socket on the real Daphne, through the official SDK."""

    def __init__(self, world: dict[str, Any], name: str) -> None:
        self.world, self.name = world, name

    async def __aenter__(self) -> Gateway:
        client = AsyncOpenAI(api_key=self.world["token"], websocket_base_url=self.world["server"].ws_url + "/v1")
        self._manager = client.responses.connect()
        self.connection = await self._manager.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._manager.__aexit__(*exc_info)

    async def turn(self, text: str, ends: int = 1) -> list[dict[str, Any]]:
        conversation = self.world["conversations"][self.name, "gateway"]
        await self.connection.response.create(model="gpt-5.5", input=text, store=False,
                                              metadata={"switchboard_conversation": conversation})
        events: list[dict[str, Any]] = []
        while sum(map(ends_turn, events)) < ends:
            event = await asyncio.wait_for(self.connection.recv(), WAIT)
            events.append(event.to_dict())
        return events


FACES = {"browser": Browser, "gateway": Gateway}


def ends_turn(event: dict[str, Any]) -> bool:
    return event["type"] in TERMINAL or event["type"] == "error"


def errors(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["error"]["code"], e["status"]) for e in events if e["type"] == "error"]


def the_error(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in reversed(events) if e["type"] == "error")


async def eventually(check, within: float = WAIT):
    """Poll `check` (sync, run off the loop) until it returns something truthy; return its last answer."""
    deadline = time.monotonic() + within
    while True:
        result = await asyncio.to_thread(check)
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


def settled(bad: BadUpstream, sockets: int | None) -> tuple[tuple[list, list] | None, str]:
    """Nothing open anywhere: no connection to the bad upstreams, all `sockets` upstream rows written (None:
    however many) and closed with a reason, no response still in flight. Returns (the rows, "") once it is so,
    else (None, what is not settled yet)."""
    from django.db import connections

    if any(bad.open.values()):
        return None, f"connections still open to the bad upstreams: {dict(bad.open)}"
    try:
        connections_ = list(UpstreamConnection.objects.order_by("pk"))
        records = list(ResponseRecord.objects.order_by("pk"))
    finally:
        connections.close_all()
    open_rows = [c.pk for c in connections_ if not c.close_reason]
    busy = [(r.pk, r.status) for r in records if r.status in ("pending", "queued", "in_progress")]
    if open_rows or busy or (sockets is not None and len(connections_) != sockets):
        return None, (f"{len(connections_)} upstream rows (expected {sockets}), open {open_rows[:10]}, "
                      f"responses in flight {busy[:10]}, close reasons "
                      f"{Counter(c.close_reason for c in connections_)}, statuses {Counter(r.status for r in records)}")
    return (connections_, records), ""


async def settle(bad: BadUpstream, sockets: int | None) -> tuple[list, list]:
    """`settled`'s rows once everything is; fails after WAIT with what still was not (a count off, a row open)."""
    why = ""

    def check():
        nonlocal why
        rows, why = settled(bad, sockets)
        return rows

    rows = await eventually(check)
    assert rows, f"not settled after {WAIT:g} s: {why}"
    return rows


def error_rows(*fields: str) -> list[tuple]:
    from django.db import connections

    try:
        return sorted(ErrorEvent.objects.values_list(*fields))
    finally:
        connections.close_all()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def scrape(world: dict[str, Any]) -> dict[str, float]:
    request = urllib.request.Request(f"{world['server'].base_url}/metrics",
                                     headers={"Authorization": f"Bearer {world['token']}"})
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        body = answer.read().decode()
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


# -- the tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("face", FACES)
async def test_refused_handshakes_are_clear_errors_and_the_socket_stays_usable(face, world, bad):
    for status in REFUSALS:
        async with FACES[face](world, f"refuse{status}") as client:
            for _ in range(2):  # the second turn is refused the same way: nothing is stuck
                error = the_error(await client.turn("hello"))
                assert (error["error"]["code"], error["status"]) == ("upstream_rejected", 429 if status == 429 else 502)
                assert f"refused the connection with HTTP {status} (" in error["error"]["message"]
                assert ("retry after 7 s" in error["error"]["message"]) == (status in (429, 503))
        async with FACES[face](world, "ok") as client:  # the relay itself is fine
            assert client_final(await client.turn("hello"))["type"] == "response.completed"

    connections_, records = await settle(bad, 3 * len(REFUSALS))
    refused = [c for c in connections_ if c.close_reason == "handshake_failed"]
    assert sorted({c.close_code for c in refused}) == list(REFUSALS) and len(refused) == 2 * len(REFUSALS)
    assert [r.status for r in records].count("failed") == 2 * len(REFUSALS)
    expected = [("upstream_rejected", "relay", 1)] * 2 * len(REFUSALS)  # one per request, no more
    assert await eventually(lambda: error_rows("code", "source", "count") == expected)


def client_final(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in reversed(events) if e["type"] in TERMINAL or e["type"] == "error")


@pytest.mark.parametrize("face", FACES)
async def test_a_handshake_that_never_completes_times_out_with_a_clear_error(face, world, bad):
    for name in ("silent", "silent", "garbage"):
        async with FACES[face](world, name) as client:
            error = the_error(await client.turn("hello"))
            if name == "silent":
                assert (error["error"]["code"], error["status"]) == ("upstream_timeout", 504)
                assert error["error"]["message"] == (
                    f"The upstream did not complete the WebSocket handshake within {OPEN_TIMEOUT} s.")
            else:
                assert error["error"]["code"] == "upstream_protocol_error"
                assert "handshake was invalid" in error["error"]["message"]
    connections_, _ = await settle(bad, 3)  # no TCP connection left to either server
    assert [c.close_reason for c in connections_] == ["handshake_failed"] * 3


@pytest.mark.parametrize("face", FACES)
async def test_an_upstream_that_falls_silent_is_closed_and_the_turn_fails_with_upstream_timeout(face, world, bad):
    async with FACES[face](world, "ok") as client:
        for script in ("silent", "stall"):
            events = await client.turn(script)
            error = the_error(events)
            assert (error["error"]["code"], error["status"]) == ("upstream_timeout", 504)
            assert f"sent nothing for {STALL} s" in error["error"]["message"]
            assert ("response.output_text.delta" in [e["type"] for e in events]) == (script == "stall")
            # Not stuck: the next turn opens a new upstream socket and completes.
            assert client_final(await client.turn("are you there?"))["type"] == "response.completed"

    connections_, records = await settle(bad, 3)
    assert [r.status for r in records] == ["failed", "completed", "failed", "completed"]
    stalled = [c for c in connections_ if c.close_text == "upstream_timeout"]
    assert len(stalled) == 2 and {c.close_reason for c in stalled} == {"upstream_error"}
    assert await eventually(lambda: error_rows("code", "source") == [("upstream_timeout", "relay")] * 2)


@pytest.mark.parametrize("face", FACES)
async def test_an_upstream_that_hangs_up_after_the_handshake_is_a_clear_error(face, world, bad):
    async with FACES[face](world, "hangup") as client:
        for _ in range(2):  # the next turn is not stuck: it opens a new socket, and gets the same clear error
            error = the_error(await client.turn("hello"))
            assert (error["error"]["code"], error["status"]) == ("upstream_disconnected", 502)
            assert error["error"]["message"] == ("The upstream socket closed (upstream_error, code 1011: going away) "
                                                 "before this response ended.")
    # Each turn opened one or two sockets (the relay sends again once when the socket died under the send).
    connections_, records = await settle(bad, None)
    assert [r.status for r in records] == ["failed", "failed"]
    assert {(c.close_reason, c.close_code) for c in connections_} == {("upstream_error", 1011)}


@pytest.mark.parametrize("face", FACES)
async def test_a_slow_upstream_that_keeps_talking_is_not_cut_off(face, world, bad):
    """Slow is not stalled: a handshake under the open timeout, and a response longer than the stall limit
    whose events come closer together than it, both go through."""
    async with FACES[face](world, "slow") as client:
        events = await client.turn("slow 10 400")  # 10 deltas 0.4 s apart: over 4 s in all, over the 3 s limit
        assert client_final(events)["type"] == "response.completed" and not errors(events)
        assert [e["type"] for e in events].count("response.output_text.delta") == 10
    _, records = await settle(bad, 1)
    assert [r.status for r in records] == ["completed"]


@pytest.mark.parametrize("face", FACES)
async def test_malformed_frames_fail_the_turn_clearly_and_the_next_turn_works(face, world, bad):
    async with FACES[face](world, "ok") as client:
        for script in ("notjson", "notype", "binary"):
            events = await client.turn(script)
            assert errors(events) == [("upstream_protocol_error", 502)]  # one error for the request, no more
            assert the_error(events)["error"]["message"] == f"The upstream sent {WORDS[script]}, which breaks the " \
                "protocol; that upstream socket was closed."
            assert client_final(await client.turn("again"))["type"] == "response.completed"
        events = await client.turn("huge")
        assert errors(events) == [("upstream_frame_too_large", 502)]
        assert f"larger than {FRAME_CAP} bytes" in the_error(events)["error"]["message"]
        assert client_final(await client.turn("again"))["type"] == "response.completed"

    connections_, records = await settle(bad, 5)
    assert [r.status for r in records] == ["failed", "completed"] * 4
    assert {c.close_reason for c in connections_} == {"upstream_error", "client_left"}


@pytest.mark.parametrize("face", FACES)
async def test_unknown_events_and_unknown_response_ids_are_relayed_and_the_turn_completes(face, world, bad):
    async with FACES[face](world, "ok") as client:
        events = await client.turn("unknowntype 3")
        assert [e["type"] for e in events].count("response.mystery_event") == 3  # relayed, not dropped
        assert client_final(events)["type"] == "response.completed" and not errors(events)
        events = await client.turn("ghost", ends=2)  # the stray terminal is relayed too
        completed = [e["response"]["id"] for e in events if e["type"] == "response.completed"]
        assert len(completed) == 2 and completed[0].startswith("resp_ghost") and not errors(events)
        assert client_final(await client.turn("again"))["type"] == "response.completed"
        # The stray terminal must not hide the response still streaming: when the socket dies, it ends too.
        events = await client.turn("ghostdrop", ends=2)
        assert errors(events) == [("upstream_disconnected", 502)]
        assert client_final(await client.turn("again"))["type"] == "response.completed"

    _, records = await settle(bad, 2)
    mine = [r for r in records if not r.response_id.startswith("resp_ghost")]
    assert [r.status for r in mine] == ["completed"] * 3 + ["failed", "completed"]
    assert all(r.events_received for r in mine)


@pytest.mark.parametrize("face", FACES)
async def test_a_flood_of_upstream_errors_that_end_nothing_is_relayed_and_counted_not_written_per_frame(
    face, world, bad
):
    async with FACES[face](world, "ok") as client:
        for _ in range(2):
            events = await client.turn("errorflood 300", ends=301)  # every error relayed, then the completion
            assert len(errors(events)) == 300 and client_final(events)["type"] == "response.completed"

    connections_, _ = await settle(bad, 1)
    # One row per socket and code, counting its occurrences (as client mistakes are counted: refusals.py).
    expected = [("noise_0", "upstream", 200), ("noise_1", "upstream", 200), ("noise_2", "upstream", 200)]
    assert await eventually(lambda: error_rows("code", "source", "count") == expected)


@pytest.mark.parametrize("face", FACES)
async def test_a_turn_right_after_a_broken_frame_gets_a_new_socket_at_a_limit_of_one(face, world, bad):
    """Each broken frame closes its upstream socket, and the client's next turn opens a new one at once. Until
    the old socket's end was written its row counted as held, so at a limit of one upstream socket the next
    turn was refused `too_many_upstream_sockets` (the flood test below failed that way): the client hears of
    the failure once the end is written."""
    from django.contrib.auth import get_user_model

    await db(lambda: UserLimits.objects.create(user=get_user_model().objects.get(), max_upstream_sockets=1))()
    async with FACES[face](world, "ok") as client:
        for word in ["notjson", "notype", "binary", "huge"] * 3:
            codes = [code for code, _ in errors(await client.turn(word))]
            assert codes and "too_many_upstream_sockets" not in codes, (word, codes)
            assert client_final(await client.turn("hello"))["type"] == "response.completed"
    connections_, _ = await settle(bad, 13)  # each broken frame ended the socket a "hello" had opened
    assert Counter(c.close_reason for c in connections_)["upstream_error"] == 12


@pytest.mark.parametrize("face", FACES)
async def test_a_turn_right_after_an_idle_close_gets_a_new_socket_at_a_limit_of_one(face, world, bad):
    """The upstream closes a socket with nothing open on it, just after a response ended, and the client's next
    turn comes at once. The gateway tells its client nothing of such a close, so nothing waited for the old
    socket's end to be written: at a limit of one the new socket's row could count the old one as held and be
    refused `too_many_upstream_sockets`. A new socket now waits until its session's last end is written, and a
    create that comes while the close is read but not yet handled waits for it first (the upstream sends its
    last event and its close together, so on a loaded machine the create often comes in between)."""
    from django.contrib.auth import get_user_model

    await db(lambda: UserLimits.objects.create(user=get_user_model().objects.get(), max_upstream_sockets=1))()
    async with FACES[face](world, "ok") as client:
        for _ in range(12):
            events = await client.turn("bye")
            assert client_final(events)["type"] == "response.completed", errors(events)
    connections_, _ = await settle(bad, 12)  # each "bye" needed a new socket
    assert {c.close_code for c in connections_} == {1000}


async def test_floods_of_refusals_and_broken_frames_keep_memory_and_error_rows_bounded(world, bad):
    pid = world["server"].process.pid
    broken = itertools.cycle(["notjson", "notype", "binary", "huge"])

    async def refusals(turns: int) -> None:
        async with Gateway(world, "refuse503") as client:
            for _ in range(turns):
                assert the_error(await client.turn("hello"))["error"]["code"] == "upstream_rejected"

    async def broken_frames(turns: int) -> None:
        async with Browser(world, "ok") as client:
            for _ in range(turns):
                assert errors(await client.turn(next(broken)))
            flood = await client.turn("flood 2000")  # 2000 unknown events in one response: relayed
            assert client_final(flood)["type"] == "response.completed"

    await refusals(10)  # warm up: imports, caches, connection pools
    await broken_frames(20)
    before = rss_kib(pid)
    await refusals(50)
    await broken_frames(200)
    grown = rss_kib(pid) - before
    print(f"Daphne RSS grew {grown} KiB over 50 refused handshakes and 200 broken frames")
    assert grown < 64 * 1024, f"RSS grew {grown} KiB"

    connections_, records = await settle(bad, 60 + 220 + 2)
    assert len(records) == 60 + 220 + 2
    await eventually(lambda: len(error_rows("pk")) == 60 + 55 + 2 * 165)
    counts = await db(lambda: dict(ErrorEvent.objects.values_list("code").annotate(n=Count("pk"))))()
    # At most one row per failed request (and the connection-level notice of a violation): never one per frame.
    assert counts["upstream_rejected"] == 60
    assert counts["upstream_frame_too_large"] == 55
    assert counts["upstream_protocol_error"] == 2 * 165  # the frame (source upstream), the request it ended
    assert "upstream_disconnected" not in counts
    figures = scrape(world)
    assert figures["switchboard_upstream_connections[('close_reason', 'open')]"] == 0
    assert figures["switchboard_upstream_connections[('close_reason', 'handshake_failed')]"] == 60


def test_a_compaction_answer_over_the_cap_is_refused_not_buffered():
    """The standalone compaction call (HTTP, upstream/compact.py) reads no more than its cap of a broken
    upstream's answer, whether it says 200 or an error status."""
    class Endless(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200 if self.path.startswith("/ok") else 500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"output": [], "padding": "' + b"x" * 10_000 + b'"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with pytest.raises(ValueError, match="larger than 1000 bytes"):
            post_compact(UpstreamTarget(url=f"ws://127.0.0.1:{port}/ok/v1/responses"), {}, max_bytes=1000)
        assert post_compact(UpstreamTarget(url=f"ws://127.0.0.1:{port}/v1/responses"), {}, max_bytes=1000) == (500, {})
        status, body = post_compact(UpstreamTarget(url=f"ws://127.0.0.1:{port}/ok/v1/responses"), {})
        assert status == 200 and body["output"] == []  # under the default cap: read whole
    finally:
        server.shutdown()
        server.server_close()

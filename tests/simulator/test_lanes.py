"""TV6 and the lane rules: stream_id echo, FIFO, concurrency, 16 in flight, 32 lanes, forks."""

from __future__ import annotations

import asyncio

import pytest

from .helpers import TERMINAL, RawClient, create, text_of

pytestmark = pytest.mark.asyncio

J4 = {"type": "error", "status": 400, "error": {
    "type": "invalid_request_error", "code": "invalid_stream_id",
    "message": "The 'stream_id' field must be a non-empty string with at most 256 characters and may only contain "
               "letters, numbers, underscores, hyphens, and periods.", "param": "stream_id"}}


async def collect(client: RawClient, ends: int, errors: int = 0) -> list[dict]:
    """Read until `ends` terminal events and `errors` error events have arrived."""
    events: list[dict] = []
    while sum(e["type"] in TERMINAL for e in events) < ends or sum(e["type"] == "error" for e in events) < errors:
        events.append(await client.recv())
    return events


def by_lane(events: list[dict], lane: str | None) -> list[dict]:
    return [e for e in events if e.get("stream_id") == lane and e["type"] != "error"]


async def test_tv6_two_lanes_stream_concurrently_and_a_bad_stream_id_is_j4(client: RawClient) -> None:
    await client.send(create("Plan /long 40", stream_id="planner"))
    await client.send(create("Risks /long 40", stream_id="research"))
    await client.send({"type": "response.create", "stream_id": "", "model": "gpt-5.5", "input": "x"})
    events = await collect(client, ends=2, errors=1)
    assert [e for e in events if e["type"] == "error"] == [J4]
    for lane in ("planner", "research"):
        lane_events = by_lane(events, lane)
        assert all(e["stream_id"] == lane for e in lane_events)
        assert [e["sequence_number"] for e in lane_events] == list(range(len(lane_events)))
        assert lane_events[-1]["type"] == "response.completed"
    lanes = [e["stream_id"] for e in events if e["type"] == "response.output_text.delta"]
    first_research = lanes.index("research")
    assert "planner" in lanes[first_research:], "lanes should interleave"


async def test_a_second_create_on_a_busy_lane_is_queued_not_refused(client: RawClient) -> None:
    await client.send(create("one /long 20", stream_id="a"))
    await client.send(create("two", stream_id="a"))
    events = await collect(client, ends=2)
    assert not any(e["type"] == "error" for e in events)
    created = [i for i, e in enumerate(events) if e["type"] == "response.created"]
    completed = [i for i, e in enumerate(events) if e["type"] == "response.completed"]
    assert completed[0] < created[1], "FIFO: the second starts after the first ends"
    assert "one" not in text_of(events[created[1]:]) and "two" in text_of(events[created[1]:])


async def test_the_default_lane_is_also_fifo(client: RawClient) -> None:
    await client.send(create("one /long 10"))
    await client.send(create("two"))
    events = await collect(client, ends=2)
    types = [e["type"] for e in events]
    assert types.index("response.completed") < len(types) - 1 - types[::-1].index("response.created")
    assert all("stream_id" not in e for e in events)


async def test_at_most_sixteen_responses_are_in_flight(client: RawClient) -> None:
    for i in range(17):
        await client.send(create(f"n{i} /long 6 /slow 40", stream_id=f"l{i}"))
    events = await collect(client, ends=17)
    first_done = next(i for i, e in enumerate(events) if e["type"] == "response.completed")
    started_before = {e["stream_id"] for e in events[:first_done] if e["type"] == "response.created"}
    assert len(started_before) == 16 and "l16" not in started_before
    assert any(e["type"] == "response.created" and e["stream_id"] == "l16" for e in events[first_done:])


async def test_the_thirty_third_named_lane_is_j3(client: RawClient) -> None:
    for i in range(1, 33):
        await client.send(create("x", stream_id=f"agent_{i}"))
    await collect(client, ends=32)
    events = await client.turn(create("x", stream_id="agent_33"))
    assert events == [{"type": "error", "status": 400, "stream_id": "agent_33", "error": {
        "type": "invalid_request_error", "code": "websocket_stream_limit_reached",
        "message": "This WebSocket connection has reached its maximum number of distinct stream IDs (32). "
                   "Reuse an existing stream_id or open a new WebSocket connection.", "param": "stream_id"}}]
    assert (await client.turn(create("x", stream_id="agent_7")))[-1]["type"] == "response.completed"


async def test_each_lane_caches_its_own_latest_response(client: RawClient) -> None:
    a1 = (await client.turn(create("a1", stream_id="a")))[-1]["response"]["id"]
    b1 = (await client.turn(create("b1", stream_id="b")))[-1]["response"]["id"]
    a2 = (await client.turn(create("a2", stream_id="a", previous_response_id=a1)))[-1]["response"]["id"]
    assert (await client.turn(create("b2", stream_id="b", previous_response_id=b1)))[-1]["type"] == \
        "response.completed"
    # a1 is no longer the latest response of any lane.
    stale = await client.turn(create("x", stream_id="a", previous_response_id=a1))
    assert stale[0]["error"]["code"] == "previous_response_not_found" and stale[0]["stream_id"] == "a"
    assert (await client.turn(create("a3", stream_id="a", previous_response_id=a2)))[-1]["type"] == \
        "response.completed"


async def test_fork_onto_a_new_lane_from_a_cached_response(client: RawClient) -> None:
    root = (await client.turn(create("remember: blue", stream_id="main")))[-1]["response"]["id"]
    fork = await client.turn(create("what did I ask you to remember?", stream_id="fork", previous_response_id=root))
    assert fork[-1]["response"]["previous_response_id"] == root
    assert "blue" in text_of(fork) and text_of(fork).endswith("[context items: 3]")
    main = await client.turn(create("and now?", stream_id="main", previous_response_id=root))
    assert main[-1]["type"] == "response.completed"


async def test_lanes_do_not_block_each_other(client: RawClient) -> None:
    await client.send(create("slow /long 30 /slow 20", stream_id="slow"))
    await asyncio.sleep(0.05)
    quick = await client.turn(create("quick", stream_id="quick"))
    assert quick[-1]["stream_id"] == "quick" and quick[-1]["type"] == "response.completed"
    assert not any(e["type"] == "response.completed" and e["stream_id"] == "slow" for e in quick)
    await client.until_end("slow")

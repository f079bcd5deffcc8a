"""TV8 and §2.2: response.steer accepted (steered -> successor) and its failures."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from sessions_app.simulator import Simulator

from .helpers import RawClient, create, text_of

pytestmark = pytest.mark.asyncio


async def started(client: RawClient, frame: dict, deltas: int = 3) -> tuple[str, list[dict]]:
    """Send a slow create and read until it has streamed a few deltas; returns its id."""
    await client.send(frame)
    events = []
    while sum(e["type"] == "response.output_text.delta" for e in events) < deltas:
        events.append(await client.recv())
    return events[0]["response"]["id"], events


async def test_steer_is_accepted_then_the_response_ends_steered_and_a_successor_runs(client: RawClient) -> None:
    rid, head = await started(client, create("write a lot /long 80 /slow 15", stream_id="agent"))
    await client.send({"type": "response.steer", "previous_response_id": rid, "input": "Also check the tests."})
    events = head + await client.until_end("agent")
    accepted = next(e for e in events if e["type"] == "response.steer.accepted")
    assert accepted["stream_id"] == "agent"
    assert accepted["steer"]["previous_response_id"] == rid and accepted["steer"]["id"].startswith("steer_")
    steered = events[-1]
    assert steered["type"] == "response.incomplete"
    assert steered["response"]["incomplete_details"] == {"reason": "steered"}
    # The steer took a sequence number of the steered response: no gaps, no repeats.
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    message = steered["response"]["output"][0]
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == text_of(events)
    assert len(text_of(events).split()) < 80

    successor = await client.until_end("agent")
    assert successor[0]["type"] == "response.created"
    assert successor[0]["response"]["previous_response_id"] == rid
    assert successor[-1]["type"] == "response.completed"
    assert all(e["stream_id"] == "agent" for e in successor)
    assert [e["sequence_number"] for e in successor] == list(range(len(successor)))
    assert 'You said: "Also check the tests."' in text_of(successor)
    # The successor's context holds the first request, its partial answer and the steer.
    assert text_of(successor).endswith("[context items: 3]")


async def test_tv8_steer_on_an_unknown_response_fails_with_response_not_found(client: RawClient) -> None:
    await client.send({"type": "response.steer", "previous_response_id": "resp_zzz", "input": "also run tests"})
    assert await client.recv() == {
        "type": "response.steer.failed", "sequence_number": 0,
        "steer": {"previous_response_id": "resp_zzz", "input": "also run tests"},
        "error": {"type": "invalid_request_error", "code": "response_not_found",
                  "message": "Response not found on this connection."}}


async def test_steer_on_a_completed_response_fails(client: RawClient) -> None:
    done = (await client.turn(create("hi", stream_id="a")))[-1]["response"]["id"]
    await client.send({"type": "response.steer", "previous_response_id": done, "input": "late"})
    event = await client.recv()
    assert event["type"] == "response.steer.failed"
    assert event["error"]["code"] == "response_already_completed"
    assert event["stream_id"] == "a"
    assert event["steer"] == {"previous_response_id": done, "input": "late"}


async def test_steering_is_not_supported_with_automatic_compaction(client: RawClient) -> None:
    frame = create("go /long 40 /slow 10",
                   context_management=[{"type": "compaction", "compact_threshold": 100000}])
    rid, head = await started(client, frame)
    await client.send({"type": "response.steer", "previous_response_id": rid, "input": "stop"})
    events = head + await client.until_end()
    failed = next(e for e in events if e["type"] == "response.steer.failed")
    assert failed["error"]["code"] == "steering_not_supported"
    assert events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_steer_with_stream_id_is_invalid_input(client: RawClient) -> None:
    await client.send({"type": "response.steer", "previous_response_id": "resp_1", "input": "x", "stream_id": "a"})
    event = await client.recv()
    assert event["type"] == "response.steer.failed" and event["error"]["code"] == "invalid_input"


async def test_the_sdk_can_steer(sim: Simulator) -> None:
    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=sim.url.rsplit("/responses", 1)[0])
    async with client.responses.connect() as conn:
        await conn.response.create(model="gpt-5.5", store=False, input="essay /long 60 /slow 15")
        seen = []
        steered_id = None
        async for event in conn:
            seen.append(event.type)
            if event.type == "response.output_text.delta" and steered_id is None:
                steered_id = "pending"
            if event.type == "response.created" and steered_id is None:
                rid = event.response.id
            if steered_id == "pending":
                steered_id = rid
                await conn.response.steer(previous_response_id=rid, input="shorter please")
            if event.type == "response.completed":
                assert event.response.previous_response_id == steered_id
                break
        assert "response.steer.accepted" in seen and "response.incomplete" in seen

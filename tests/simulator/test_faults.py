"""Directives that shape a response: /long, /slow, /fail, /incomplete, and max_output_tokens."""

from __future__ import annotations

import time

import pytest

from sessions_app.simulator import Simulator, SimulatorConfig

from .helpers import RawClient, create, text_of

pytestmark = pytest.mark.asyncio


async def test_long_gives_exactly_n_token_deltas(client: RawClient) -> None:
    events = await client.turn(create("/long 200"))
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) == 200
    assert events[-1]["response"]["usage"]["output_tokens"] == 200


async def test_slow_spaces_the_deltas(client: RawClient) -> None:
    started = time.monotonic()
    await client.turn(create("/long 5 /slow 40"))
    assert time.monotonic() - started >= 0.2


async def test_tokens_per_second_paces_the_stream() -> None:
    async with Simulator(SimulatorConfig(port=0, tokens_per_second=100)) as sim:
        async with await RawClient.open(sim.url) as client:
            started = time.monotonic()
            await client.turn(create("/long 20"))
            assert time.monotonic() - started >= 0.18


async def test_fail_ends_with_response_failed_after_a_few_deltas(client: RawClient) -> None:
    events = await client.turn(create("please /fail now"))
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 3
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "server_error"
    assert failed["response"]["usage"]["output_tokens"] == 3
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_incomplete_cuts_the_text_and_reports_max_output_tokens(client: RawClient) -> None:
    events = await client.turn(create("/incomplete /long 20"))
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 10
    response = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"][0]["text"] == text_of(events)


async def test_max_output_tokens_truncates_a_long_reply(client: RawClient) -> None:
    events = await client.turn(create("/long 50", max_output_tokens=20))
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 20
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["usage"]["output_tokens"] == 20


async def test_an_incomplete_response_can_be_continued(client: RawClient) -> None:
    cut = (await client.turn(create("/incomplete /long 20")))[-1]["response"]["id"]
    events = await client.turn(create("go on", previous_response_id=cut))
    assert events[-1]["type"] == "response.completed"

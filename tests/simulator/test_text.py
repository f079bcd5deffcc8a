"""TV1, TV2 and warm-up: plain text responses, continuation, determinism."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from sessions_app.simulator import Simulator

from .helpers import RawClient, create, terminal, text_of, user, validated

pytestmark = pytest.mark.asyncio

TV1_TYPES = ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added"]
TV1_TAIL = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.completed"]


async def test_tv1_first_turn_streams_the_exact_sequence(client: RawClient) -> None:
    events = await client.turn(create([user("Say hello")], tools=[]))
    types = [e["type"] for e in events]
    assert types[:4] == TV1_TYPES and types[-4:] == TV1_TAIL
    assert set(types[4:-4]) == {"response.output_text.delta"} and len(types) > 9
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert all("stream_id" not in e for e in events)
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1 and ids.pop().startswith("resp_")
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["previous_response_id"] is None
    text = text_of(events)
    assert text == events[-4]["text"] == done["output"][0]["content"][0]["text"]
    assert text.startswith("Hello!")
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] == len(types[4:-4])
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert isinstance(done["completed_at"], int)
    item_ids = {e["item_id"] for e in events if "item_id" in e}
    assert len(item_ids) == 1 and item_ids.pop().startswith("msg_")
    assert events[2]["item"]["status"] == "in_progress" and events[-2]["item"]["status"] == "completed"


async def test_the_response_object_echoes_the_request(client: RawClient) -> None:
    events = await client.turn(create("x", instructions="Be brief.", metadata={"k": "v"}, store=True,
                                      max_output_tokens=500, tool_choice="none"))
    for event in (events[0], events[1], events[-1]):
        response = event["response"]
        assert response["instructions"] == "Be brief."
        assert response["metadata"] == {"k": "v"}
        assert response["store"] is True
        assert response["max_output_tokens"] == 500
        assert response["tool_choice"] == "none"
        assert response["tools"] == [] and response["parallel_tool_calls"] is True
        assert response["object"] == "response" and response["model"] == "gpt-5.5"
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["usage"] is None


async def test_tv2_continuation_on_the_same_socket_sees_the_whole_context(client: RawClient) -> None:
    first = (await client.turn(create([user("Say hello")])))[-1]["response"]
    events = await client.turn(create([user("Again")], previous_response_id=first["id"]))
    second = events[-1]["response"]
    assert second["status"] == "completed"
    assert second["id"] != first["id"]
    assert second["previous_response_id"] == first["id"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert text_of(events).endswith("[context items: 3]")
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    assert second["usage"]["input_tokens_details"]["cached_tokens"] > 0


async def test_same_context_gives_the_same_answer_whether_continued_or_replayed(client: RawClient) -> None:
    first = await client.turn(create("remember: the code is 42"))
    answer = first[-1]["response"]["output"][0]
    continued = await client.turn(create("What did I ask you to remember?",
                                         previous_response_id=first[-1]["response"]["id"]))
    replayed = await client.turn(create([user("remember: the code is 42"), answer,
                                         user("What did I ask you to remember?")]))
    assert text_of(continued) == text_of(replayed)
    assert "the code is 42" in text_of(continued)


async def test_model_remembers_facts_in_order(client: RawClient) -> None:
    r1 = (await client.turn(create("remember: apples")))[-1]["response"]
    assert "Okay, I will remember: apples." in r1["output"][0]["content"][0]["text"]
    r2 = (await client.turn(create("remember: pears", previous_response_id=r1["id"])))[-1]["response"]
    events = await client.turn(create("what did I ask you to remember?", previous_response_id=r2["id"]))
    assert "You asked me to remember: apples; pears." in text_of(events)


async def test_how_many_items(client: RawClient) -> None:
    events = await client.turn(create([user("a"), user("b"), user("how many items?")]))
    assert text_of(events).startswith("I can see 3 context items.")


async def test_warm_up_returns_an_empty_response_that_chains(client: RawClient) -> None:
    warm = await client.turn(create([], generate=False, instructions="You are a coding agent.", tools=[]))
    assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
    assert warm[-1]["response"]["output"] == []
    assert warm[-1]["response"]["usage"]["output_tokens"] == 0
    events = await client.turn(create("go", previous_response_id=warm[-1]["response"]["id"]))
    assert events[-1]["response"]["status"] == "completed"
    assert events[-1]["response"]["previous_response_id"] == warm[-1]["response"]["id"]


async def test_the_official_sdk_streams_and_continues(sim: Simulator) -> None:
    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=sim.url.rsplit("/responses", 1)[0])
    async with client.responses.connect() as conn:
        await conn.response.create(model="gpt-5.5", store=False, input="Say hello")
        deltas, final = [], None
        async for event in conn:
            validated(event.model_dump(mode="json", exclude_unset=True))
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
                break
        assert final is not None and final.output_text == "".join(deltas)
        await conn.response.create(model="gpt-5.5", store=False, input="next", previous_response_id=final.id)
        async for event in conn:
            if event.type == "response.completed":
                assert event.response.previous_response_id == final.id
                break


async def test_base_url_alone_also_reaches_the_socket(sim: Simulator) -> None:
    client = AsyncOpenAI(api_key="sk-test", base_url=sim.base_url)
    async with client.responses.connect() as conn:
        await conn.response.create(model="gpt-5.5", store=False, input="hi")
        async for event in conn:
            if event.type == "response.completed":
                break


async def test_terminal_helper_finds_the_end(client: RawClient) -> None:
    events = await client.turn(create("hi"))
    assert terminal(events)["type"] == "response.completed"

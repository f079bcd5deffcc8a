"""§3.5: reasoning models emit a reasoning item before the message."""

from __future__ import annotations

import pytest

from sessions_app.simulator.codec import unseal

from .helpers import RawClient, create, text_of

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("model", ["o3", "o4-mini", "my-reasoner"])
async def test_reasoning_item_comes_first_and_message_is_at_index_one(client: RawClient, model: str) -> None:
    events = await client.turn(create("Say hello", model=model))
    types = [e["type"] for e in events]
    assert types[2:8] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                          "response.reasoning_summary_part.done", "response.output_item.done"]
    reasoning = events[7]["item"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert "encrypted_content" not in reasoning
    assert events[2]["item"] == {"id": reasoning["id"], "type": "reasoning", "summary": []}
    assert events[5]["text"] == reasoning["summary"][0]["text"]
    assert events[8]["type"] == "response.output_item.added" and events[8]["output_index"] == 1
    response = events[-1]["response"]
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    assert response["usage"]["output_tokens"] > response["usage"]["output_tokens_details"]["reasoning_tokens"]
    assert text_of(events).startswith("Hello!")


async def test_encrypted_reasoning_only_when_included(client: RawClient) -> None:
    events = await client.turn(create("hi", model="o3", include=["reasoning.encrypted_content"]))
    item = events[-1]["response"]["output"][0]
    assert item["encrypted_content"].startswith("gAAAAB")
    assert unseal(item["encrypted_content"])["kind"] == "reasoning"


async def test_non_reasoning_models_have_no_reasoning_item(client: RawClient) -> None:
    events = await client.turn(create("hi", model="gpt-4.1"))
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message"]


async def test_reasoning_items_do_not_change_the_item_count(client: RawClient) -> None:
    first = await client.turn(create("one", model="o3"))
    events = await client.turn(create("how many items?", model="o3",
                                      previous_response_id=first[-1]["response"]["id"]))
    assert "I can see 3 context items." in text_of(events)

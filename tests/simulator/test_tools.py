"""TV5: function calls, streamed arguments, and the tool-output round trip."""

from __future__ import annotations

import json

import pytest

from .helpers import RawClient, create, text_of

pytestmark = pytest.mark.asyncio

WEATHER = {"type": "function", "name": "get_weather", "description": "Get weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}, "strict": True}
TIME = {"type": "function", "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]},
                                                        "hours": {"type": "integer"}}}}


async def test_tv5_function_call_round_trip(client: RawClient) -> None:
    events = await client.turn(create("Weather in Paris?", tools=[WEATHER],
                                      tool_choice={"type": "function", "name": "get_weather"}))
    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert set(types[3:-3]) == {"response.function_call_arguments.delta"}
    assert types[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = events[2]["item"]
    assert added["type"] == "function_call" and added["arguments"] == "" and added["status"] == "in_progress"
    assert added["id"].startswith("fc_") and added["call_id"].startswith("call_")
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert arguments == events[-3]["arguments"] == '{"city":"Paris"}'
    response = events[-1]["response"]
    assert response["output"] == [{"id": added["id"], "type": "function_call", "status": "completed",
                                   "call_id": added["call_id"], "name": "get_weather", "arguments": arguments}]
    assert response["tools"] == [WEATHER]
    assert response["tool_choice"] == {"type": "function", "name": "get_weather"}

    follow = await client.turn(create([{"type": "function_call_output", "call_id": added["call_id"],
                                        "output": '{"temp_c":18}'}],
                                      previous_response_id=response["id"], tool_choice="none"))
    assert follow[-1]["type"] == "response.completed"
    assert follow[-1]["response"]["previous_response_id"] == response["id"]
    assert text_of(follow).startswith('The get_weather tool returned {"temp_c":18}.')


async def test_a_tool_mentioned_in_the_text_is_called_automatically(client: RawClient) -> None:
    events = await client.turn(create("What's the weather in New York today?", tools=[WEATHER]))
    assert events[-1]["response"]["output"][0]["arguments"] == '{"city":"New York"}'


async def test_no_call_when_the_text_does_not_ask_for_one(client: RawClient) -> None:
    events = await client.turn(create("Tell me a joke", tools=[WEATHER]))
    assert events[-1]["response"]["output"][0]["type"] == "message"


async def test_tool_directive_forces_a_call_with_its_arguments(client: RawClient) -> None:
    events = await client.turn(create('/tool get_time {"zone": "CET", "hours": 3}', tools=[TIME]))
    call = events[-1]["response"]["output"][0]
    assert call["name"] == "get_time" and json.loads(call["arguments"]) == {"zone": "CET", "hours": 3}


async def test_arguments_follow_the_schema_types(client: RawClient) -> None:
    events = await client.turn(create("get time in CET plus 5 hours", tools=[TIME], tool_choice="required"))
    assert json.loads(events[-1]["response"]["output"][0]["arguments"]) == {"zone": "CET", "hours": 5}


async def test_parallel_calls_get_increasing_output_indexes(client: RawClient) -> None:
    events = await client.turn(create("weather and time please", tools=[WEATHER, TIME]))
    output = events[-1]["response"]["output"]
    assert [item["name"] for item in output] == ["get_weather", "get_time"]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == [0, 1]
    assert len({item["call_id"] for item in output}) == 2

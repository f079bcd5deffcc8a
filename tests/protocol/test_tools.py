"""Function tools as the settings form takes them (protocol/tools.py): each problem names the tool and field."""

from __future__ import annotations

import pytest

from sessions_app.protocol.tools import ToolsInvalid, tool_problems, tools_from_text

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}


def problems_of(text: str) -> list[str]:
    with pytest.raises(ToolsInvalid) as caught:
        tools_from_text(text)
    return caught.value.messages


def test_empty_text_is_no_tools_and_a_valid_list_comes_back_as_given() -> None:
    assert tools_from_text("  \n") == []
    assert tools_from_text('[{"type": "function", "name": "a", "parameters": {"type": "object"}}]') == [
        {"type": "function", "name": "a", "parameters": {"type": "object"}}]
    assert tool_problems([WEATHER]) == []


def test_text_that_is_not_json_says_where_it_breaks() -> None:
    [message] = problems_of('[{"type": "function",}]')
    assert message.startswith("Not valid JSON: ") and "line 1, column 22" in message


def test_a_value_that_is_not_a_list_is_refused() -> None:
    assert problems_of('{"type": "function"}') == [
        "Tools must be a JSON list [ … ] of tool objects, not an object."]


def test_each_problem_names_its_tool_and_field() -> None:
    tools = [
        "search",
        {"type": "function", "parameters": {"type": "object"}},
        {"type": "web_search", "name": "x y", "parameters": "object", "strict": "yes", "colour": 1},
        {"type": "function", "name": "ok", "description": 3, "parameters": {"type": "array", "properties": []}},
    ]
    assert tool_problems(tools) == [
        "Tool 1: must be an object { … }, not a string.",
        'Tool 2: "name" is missing.',
        'Tool 3: "type" must be "function", not "web_search": only function tools can be set here.',
        'Tool 3: "name" may use only letters, digits, "_" and "-", 1 to 64 characters.',
        'Tool 3: "parameters" must be a JSON schema object { … }, not a string.',
        'Tool 3: "strict" must be true or false, not a string.',
        'Tool 3: unknown field "colour" (a function tool has type, name, description, parameters and strict).',
        'Tool 4 ("ok"): "description" must be a string, not a number.',
        'Tool 4 ("ok"): "parameters" must have "type": "object" at the top.',
        'Tool 4 ("ok"): "parameters.properties" must be an object, not a list.',
    ]


def test_a_name_used_twice_is_refused_on_the_second_use() -> None:
    assert tool_problems([WEATHER, {**WEATHER, "description": "again"}]) == [
        'Tool 2 ("get_weather"): the name is already used by tool 1.']


def test_missing_parameters_suggest_a_schema() -> None:
    assert tool_problems([{"type": "function", "name": "noop"}]) == [
        'Tool 1 ("noop"): "parameters" is missing: give a JSON schema such as {"type": "object", "properties": {}}.']


def test_text_the_database_could_not_store_is_refused() -> None:
    [message] = problems_of('[{"type": "function", "name": "a", "parameters": {"type": "object", "x": NaN}}]')
    assert "NaN" in message and message.startswith("The JSON")
    [message] = problems_of('[{"type": "function", "name": "a\\u0000", "parameters": {"type": "object"}}]')
    assert "U+0000" in message

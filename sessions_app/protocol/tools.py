"""Function tools in the shape a `response.create` takes them (`tools`), checked before they are saved.

Rules (the conversation settings form uses them; static/js/tool_checks.js repeats the same checks and the
same messages in the browser, the server's answer is the one that counts):

* `tools` is a JSON list of at most `MAX_TOOLS` objects; empty text means no tools.
* Each tool is `{"type": "function", "name", "description"?, "parameters", "strict"?}`, nothing else.
* `name` matches `NAME_PATTERN` and is unique in the list.
* `parameters` is a JSON schema object whose `"type"` is `"object"` (the API refuses any other top
  level); its `properties`, when present, is an object and its `required` a list of names.
* `description` is a string, `strict` true or false.
* The text must also pass the client-frame limits (protocol/limits.py): the tools travel in every
  create, and the database must be able to store them.

A message names the tool (its position, from 1, and its name when it has a usable one) and the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import ProtocolError
from .limits import decode_frame

__all__ = ["MAX_TOOLS", "NAME_PATTERN", "ToolsInvalid", "tool_problems", "tools_from_text"]

MAX_TOOLS = 128  # the API's limit on function tools per request
NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
FIELDS = ("type", "name", "description", "parameters", "strict")
EXAMPLE_PARAMETERS = '{"type": "object", "properties": {}}'


class ToolsInvalid(ValueError):
    """The tools text is not a valid list of function tools; `messages` says what, tool by tool."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def kind_of(value: Any) -> str:
    """A JSON value's kind as a message names it."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


def tools_from_text(text: str) -> list[dict[str, Any]]:
    """The tools a settings field holds (empty text: none); raises ToolsInvalid."""
    if not text.strip():
        return []
    try:
        json.loads(text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ToolsInvalid([f"Not valid JSON: {detail}{where}."]) from None
    except RecursionError:
        raise ToolsInvalid(["Not valid JSON: nested too deeply."]) from None
    try:
        value = decode_frame(text)
    except ProtocolError as exc:
        raise ToolsInvalid([exc.message.replace("The message", "The JSON", 1)]) from None
    problems = tool_problems(value)
    if problems:
        raise ToolsInvalid(problems)
    return value


def tool_problems(tools: Any) -> list[str]:
    """Every problem of a decoded `tools` value, in order; an empty list means it is valid."""
    if not isinstance(tools, list):
        return [f'Tools must be a JSON list [ … ] of tool objects, not {kind_of(tools)}.']
    if len(tools) > MAX_TOOLS:
        return [f"At most {MAX_TOOLS} tools (this list has {len(tools)})."]
    problems: list[str] = []
    first_use: dict[str, int] = {}
    for number, tool in enumerate(tools, start=1):
        if not isinstance(tool, dict):
            problems.append(f"Tool {number}: must be an object {{ … }}, not {kind_of(tool)}.")
            continue
        name = tool.get("name")
        label = f'Tool {number} ("{name}")' if isinstance(name, str) and NAME_PATTERN.fullmatch(name) else \
            f"Tool {number}"
        problems.extend(f"{label}: {problem}" for problem in _tool_problems(tool))
        if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
            if name in first_use:
                problems.append(f"{label}: the name is already used by tool {first_use[name]}.")
            else:
                first_use[name] = number
    return problems


def _tool_problems(tool: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "type" not in tool:
        problems.append('"type" is missing: only "function" tools can be set here.')
    elif tool["type"] != "function":
        problems.append(f'"type" must be "function", not {_shown(tool["type"])}: only function tools can be '
                        "set here.")
    if "name" not in tool:
        problems.append('"name" is missing.')
    elif not isinstance(tool["name"], str):
        problems.append(f'"name" must be a string, not {kind_of(tool["name"])}.')
    elif not NAME_PATTERN.fullmatch(tool["name"]):
        problems.append('"name" may use only letters, digits, "_" and "-", 1 to 64 characters.')
    if "description" in tool and not isinstance(tool["description"], str):
        problems.append(f'"description" must be a string, not {kind_of(tool["description"])}.')
    if "parameters" not in tool:
        problems.append(f'"parameters" is missing: give a JSON schema such as {EXAMPLE_PARAMETERS}.')
    else:
        problems.extend(_parameters_problems(tool["parameters"]))
    if "strict" in tool and not isinstance(tool["strict"], bool):
        problems.append(f'"strict" must be true or false, not {kind_of(tool["strict"])}.')
    problems.extend(f'unknown field "{key}" (a function tool has type, name, description, parameters and strict).'
                    for key in tool if key not in FIELDS)
    return problems


def _parameters_problems(parameters: Any) -> list[str]:
    if not isinstance(parameters, dict):
        return [f'"parameters" must be a JSON schema object {{ … }}, not {kind_of(parameters)}.']
    problems = []
    if parameters.get("type") != "object":
        problems.append('"parameters" must have "type": "object" at the top.')
    if "properties" in parameters and not isinstance(parameters["properties"], dict):
        problems.append(f'"parameters.properties" must be an object, not {kind_of(parameters["properties"])}.')
    required = parameters.get("required")
    if "required" in parameters and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        problems.append('"parameters.required" must be a list of property names.')
    return problems


def _shown(value: Any) -> str:
    """A value inside a message: strings quoted and short, other values by kind."""
    if isinstance(value, str):
        return f'"{value[:40]}"' if len(value) <= 40 else f'"{value[:40]}…"'
    return kind_of(value)

"""Conversation items: normalise inputs and read their text.

Everything that needs "what did the user say" or "what did the model answer"
(the simulator's model, the recorder, the dashboard) reads items through these
functions, so the many content shapes of the Responses API are handled once:

* `input` may be a string (one user message) or a list of items;
* a message's `content` may be a string or a list of parts (`input_text`,
  `output_text`, `refusal`, `summary_text`, ...);
* an item may omit `type` when it has a `role` (EasyInputMessage), which
  means `message`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "input_items",
    "user_message",
    "item_type",
    "item_text",
    "last_user_text",
    "output_text",
]

TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})


def user_message(text: str) -> dict[str, Any]:
    """The list form of a string input, as the API itself expands it."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def input_items(create: dict[str, Any]) -> list[dict[str, Any]]:
    """The create's `input` as a list of items (a string becomes one user message)."""
    value = create.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [user_message(value)]
    items = []
    for item in value:
        if "type" not in item and "role" in item:
            item = {"type": "message", **item}
        items.append(item)
    return items


def item_type(item: dict[str, Any]) -> str:
    return item.get("type") or ("message" if "role" in item else "")


def _parts_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") in TEXT_PART_TYPES or ("text" in part and "type" not in part):
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "refusal":
            texts.append(str(part.get("refusal", "")))
    return "".join(texts)


def item_text(item: dict[str, Any]) -> str:
    """Human-readable text of any item (message text, tool arguments or output, summary)."""
    kind = item_type(item)
    if kind == "message":
        return _parts_text(item.get("content"))
    if kind in ("function_call", "custom_tool_call"):
        return str(item.get("arguments", item.get("input", "")))
    if kind in ("function_call_output", "custom_tool_call_output"):
        return _parts_text(item.get("output"))
    if kind == "reasoning":
        return "".join(_parts_text(item.get(key)) for key in ("summary", "content"))
    return ""


def last_user_text(items: list[dict[str, Any]]) -> str | None:
    """Text of the last user message, or None when there is none."""
    for item in reversed(items):
        if item_type(item) == "message" and item.get("role") == "user":
            return item_text(item)
    return None


def output_text(response: dict[str, Any]) -> str:
    """All assistant text of a Response object (the SDK's `output_text`)."""
    return "".join(
        item_text(item)
        for item in response.get("output") or []
        if item_type(item) == "message" and item.get("role", "assistant") == "assistant"
    )

"""What in a `response.create` the upstream resolves against the API key's stored data.

Every user of a gateway shares the upstream's key, so the upstream cannot
tell one user's stored responses, items and files from another's: a relay
must check each such reference against what the client's user owns before
it forwards the create. This module only finds them (pure, no I/O):

* response ids: `previous_response_id` and
  `prompt_cache_options.comparison_response_id`;
* item ids: `item_reference` input items (`{"type": "item_reference", "id": …}`);
* references a relay cannot check against its own records, which it must
  refuse: `conversation` (a stored Conversations-API object), `prompt`
  (a stored prompt template), `file_id` in input content, and tools that
  read stored files (`file_search` vector stores, a `code_interpreter`
  container named by id or given `file_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError
from .items import item_type

__all__ = ["References", "references", "unverifiable_reference"]


@dataclass(frozen=True)
class References:
    """The stored ids a create names: `(param, id)` pairs, in the order they appear."""

    response_ids: tuple[tuple[str, str], ...]
    item_ids: tuple[tuple[str, str], ...]

    def __bool__(self) -> bool:
        return bool(self.response_ids or self.item_ids)


def references(create: dict[str, Any]) -> References:
    """The response and item ids of `create` to check (the create itself is already validated)."""
    response_ids: list[tuple[str, str]] = []
    previous = create.get("previous_response_id")
    if isinstance(previous, str) and previous:
        response_ids.append(("previous_response_id", previous))
    options = create.get("prompt_cache_options")
    if isinstance(options, dict):
        compared = options.get("comparison_response_id")
        if isinstance(compared, str) and compared:
            response_ids.append(("prompt_cache_options.comparison_response_id", compared))
    item_ids = [(f"input[{index}].id", str(item.get("id") or "")) for index, item in _input_list(create)
                if item_type(item) == "item_reference"]
    return References(tuple(response_ids), tuple(item_ids))


def unverifiable_reference(create: dict[str, Any]) -> ProtocolError | None:
    """The error for the first reference to stored data that a relay cannot check, or None."""
    if create.get("conversation") is not None:
        return _refused("conversation", "stored conversations are not available through Switchboard; send "
                        "previous_response_id or the input items instead.")
    if create.get("prompt") is not None:
        return _refused("prompt", "stored prompt templates are not available through Switchboard; send the "
                        "instructions and input instead.")
    tools = create.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "file_search":
            return _refused(f"tools[{index}]", "file_search reads the upstream account's stored vector stores, "
                            "which Switchboard cannot check per user.")
        container = tool.get("container")
        if tool.get("type") == "code_interpreter" and (
                isinstance(container, str) or (isinstance(container, dict) and container.get("file_ids"))):
            return _refused(f"tools[{index}].container", "a code_interpreter container named by id, or given "
                            "stored file_ids, reads the upstream account's stored files.")
    for index, item in _input_list(create):
        content = item.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("file_id") is not None:
                return _refused(f"input[{index}].content[{part_index}].file_id",
                                "stored files are not available through Switchboard; send the file's data inline.")
    return None


def _input_list(create: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    value = create.get("input")
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _refused(param: str, why: str) -> ProtocolError:
    return ProtocolError("unsupported_reference", f"Unsupported reference '{param}': {why}", param=param)

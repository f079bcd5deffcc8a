"""Compaction: fold a context into one opaque `compaction` item, and back.

Rules (PROTOCOL.md §5):

* Server-side compaction runs when a create has `context_management`
  `[{"type": "compaction", "compact_threshold": N}]` and the context about to
  be rendered is longer than N tokens (or the user wrote `/compact`).  The
  compaction item then precedes the reply in the output, and the cached
  context becomes `[compaction item, *items generated after it]`.
* The item's `encrypted_content` (see codec.py) carries what the model needs
  later: the number of items summarised, the remembered facts and the user
  messages, so nothing the model relies on is lost.
* `POST /v1/responses/compact` returns a `CompactedResponse`.  Its `output`
  is the single compaction item: SDK 3.57's `ResponseOutputItem` union has no
  user-role message type, so the kept user messages the live API returns
  would not validate; they travel inside the compaction item instead.
"""

from __future__ import annotations

import time
from typing import Any

from sessions_app.protocol import ids

from .codec import seal
from .model import read_context
from .tokens import context_tokens, count_tokens

__all__ = ["compaction_threshold", "should_compact", "compaction_item", "compacted_response"]


def compaction_threshold(create: dict[str, Any]) -> int | None:
    """The create's compact_threshold; 0 means "compaction on, no threshold given"."""
    for entry in create.get("context_management") or []:
        if entry.get("type") == "compaction":
            threshold = entry.get("compact_threshold")
            return int(threshold) if threshold is not None else 0
    return None


# Without an explicit threshold the simulator compacts past this many tokens.
DEFAULT_THRESHOLD = 200_000


def should_compact(tokens: int, threshold: int | None, forced: bool) -> bool:
    if forced:
        return True
    if threshold is None:
        return False
    return tokens > (threshold or DEFAULT_THRESHOLD)


def compaction_item(items: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, Any]:
    view = read_context(items)
    summary = f"Summary of {view.items} items. Facts: {'; '.join(view.facts) or 'none'}."
    payload = {
        "kind": "compaction",
        "items": view.items,
        "facts": list(view.facts),
        "user_messages": list(view.user_messages),
        "summary_tokens": count_tokens(summary),
        "source_tokens": context_tokens(items),
    }
    return {"id": ids.compaction_id(), "type": "compaction", "encrypted_content": seal(payload)}


def compacted_response(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of `POST /v1/responses/compact` for this window."""
    item = compaction_item(items)
    input_tokens = context_tokens(items)
    output_tokens = count_tokens(item["encrypted_content"]) // 8 + 1
    return {
        "id": ids.new_id("resp"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [item],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }

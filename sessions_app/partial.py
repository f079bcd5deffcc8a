"""What had streamed of a response cut short, rebuilt from its frames (pure; off the hot path).

The relay records only completed output items as they stream (`output_item.done`).
When a response is interrupted (shutdown, a dead holder) the hub still has its
frames, so the text streamed so far is kept: each item that was added but not
done becomes that item with the text of its deltas and status `incomplete`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["partial_output"]


def partial_output(frames: list[str], done: dict[int, dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Output items by index: the done ones as they were, the open ones with their streamed text."""
    added: dict[int, dict[str, Any]] = {}
    texts: dict[int, list[str]] = {}
    for frame in frames:
        head = frame[:80]
        if "output_item.added" not in head and "output_text.delta" not in head:
            continue
        event = json.loads(frame)
        index = event.get("output_index")
        if not isinstance(index, int) or index in done:
            continue
        if event.get("type") == "response.output_item.added" and isinstance(event.get("item"), dict):
            added[index] = event["item"]
        elif event.get("type") == "response.output_text.delta":
            texts.setdefault(index, []).append(str(event.get("delta") or ""))
    items = dict(done)
    for index, item in added.items():
        partial = {**item, "status": "incomplete"}
        if item.get("type") == "message":
            text = "".join(texts.get(index, []))
            partial["content"] = [{"type": "output_text", "text": text, "annotations": []}] if text else []
        items[index] = partial
    return tuple(items[i] for i in sorted(items))

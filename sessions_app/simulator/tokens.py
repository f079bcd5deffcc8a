"""A deterministic tokenizer approximation: good enough for usage figures and thresholds.

A "token" is a run of at most four non-space characters with the whitespace
before it (so " hello" is " hell" + "o").  `split_tokens(text)` joins back to
`text` exactly, which is what the streaming code relies on: the deltas of a
reply are its tokens, and `count_tokens(text)` is how many deltas it streams.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sessions_app.protocol.items import item_text, item_type

__all__ = ["split_tokens", "count_tokens", "item_tokens", "context_tokens", "tools_tokens"]

TOKEN_RE = re.compile(r"\s*\S{1,4}|\s+")
ITEM_OVERHEAD = 4  # role/type framing, as chat formats spend a few tokens per message


def split_tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def item_tokens(item: dict[str, Any]) -> int:
    """Tokens an item costs as model input; a compaction item costs its summary, not its blob."""
    if item_type(item) == "compaction":
        from .codec import unseal  # local import: codec is only needed for compaction items

        payload = unseal(item.get("encrypted_content", "")) or {}
        return ITEM_OVERHEAD + int(payload.get("summary_tokens", 0))
    if item_type(item) in ("function_call", "function_call_output"):
        return ITEM_OVERHEAD + count_tokens(item_text(item)) + count_tokens(str(item.get("name", "")))
    return ITEM_OVERHEAD + count_tokens(item_text(item))


def context_tokens(items: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> int:
    return sum(item_tokens(item) for item in items)


def tools_tokens(tools: list[dict[str, Any]] | None) -> int:
    return count_tokens(json.dumps(tools)) if tools else 0

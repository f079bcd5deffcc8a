"""A recovered request's Response objects carry the request fields the client sent, not the replay's.

Rules (docs/protocol.md §3 "Recovering from the upstream's errors"):

* The upstream echoes a create's fields on every Response object of its
  response (`response.created`, `.queued`, `.in_progress`, `.completed`,
  `.failed`, `.incomplete`). A replay (recovery.py) sends other values for
  some of them: `previous_response_id` is dropped. Straight from the upstream
  the client would have seen its own values, so on both faces every Response
  object of a replayed request carries the values the client sent instead.
* Only such a request pays for it: its ticket carries the fields to put back
  (`lanes.Ticket.echo`), and only its Response events, which the relay
  decodes anyway, are encoded again. Every other frame, and every frame of an
  ordinary turn, is forwarded exactly as the upstream sent it.
* The records keep the truth: the request as sent, and the Response the
  upstream returned (the event itself is not changed, a copy is sent).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ECHOED_FIELDS", "echo_of", "echoed_frame"]

# Create fields a Response object repeats (openai 3.57: the fields `Response` shares with the create
# params, plus `store`, which the upstreams echo too). Output-only fields are not here.
ECHOED_FIELDS = (
    "previous_response_id", "instructions", "model", "metadata", "store", "tools", "tool_choice",
    "parallel_tool_calls", "max_output_tokens", "max_tool_calls", "reasoning", "text", "temperature", "top_p",
    "top_logprobs", "truncation", "service_tier", "user", "safety_identifier", "prompt", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "conversation", "background", "moderation", "image",
    "access_programs",
)
_MISSING = object()


def echo_of(requested: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any] | None:
    """The echoed fields whose sent value is not the requested one, with the requested value (None when
    the client left it out, as the Response object then says); None when the echo needs no change."""
    changed = {name: requested.get(name) for name in ECHOED_FIELDS
               if requested.get(name, _MISSING) != sent.get(name, _MISSING)}
    return changed or None


def echoed_frame(frame: str, event: dict[str, Any], echo: dict[str, Any]) -> str:
    """`frame` (a Response event, decoded as `event`) with `echo` on its Response object, in the
    upstream's spacing; the frame itself when it has no Response object."""
    response = event.get("response")
    if not isinstance(response, dict):
        return frame
    copy = {**event, "response": {**response, **echo}}
    if frame.startswith('{"type":'):  # compact, as OpenAI sends; else json.dumps' default spacing
        return json.dumps(copy, separators=(",", ":"))
    return json.dumps(copy)

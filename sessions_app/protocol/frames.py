"""Classify an upstream frame from its first bytes, without parsing it.

Most of a response's frames are deltas (`response.output_text.delta`,
`response.function_call_arguments.delta`, ...). The relay forwards them
verbatim and only needs to know their type and lane, so decoding each one
would be the largest cost per event. `default_lane_delta` recognises the
frames that can skip decoding; anything it is not sure of (another layout,
a named lane, a frame that does not look whole) returns None and takes the
full path, so a wrong guess can only cost time, never correctness.
"""

from __future__ import annotations

import re

__all__ = ["default_lane_delta"]

# Servers put "type" first (OpenAI and our simulator do); a frame that does not is simply decoded.
_DELTA_HEAD = re.compile(r'\{\s*"type"\s*:\s*"(response\.[a-z_.]+\.delta)"')
# Most frames are text deltas, in one of two spellings (compact, or json.dumps' default spacing):
# a prefix test is cheaper than the pattern (0.6 -> 0.3 µs a frame).
TEXT_DELTA = "response.output_text.delta"
_TEXT_DELTA_HEADS = (f'{{"type":"{TEXT_DELTA}",', f'{{"type": "{TEXT_DELTA}", ')


def default_lane_delta(frame: str | bytes) -> str | None:
    """The event type of a default-lane delta frame, or None when the frame must be decoded."""
    # A named lane's frames carry "stream_id" (a literal inside a string value is escaped: \"stream_id\").
    if type(frame) is not str or frame[-1:] != "}" or '"stream_id"' in frame:
        return None
    if frame.startswith(_TEXT_DELTA_HEADS):
        return TEXT_DELTA
    head = _DELTA_HEAD.match(frame)
    return head.group(1) if head is not None else None

"""Directives: slash commands in the user's latest text that script the simulator.

Only the last user message of a create's *new* input is read, so a directive
acts once: continuing a chain does not replay an old `/error`.  Directives
may appear anywhere in the text, several per message (docs/simulator.md).

    /tool NAME {json}   force a function call NAME with these arguments (several: parallel calls)
    /long N             reply with exactly N tokens of filler text
    /slow MS            wait MS milliseconds between deltas
    /error CODE         answer with an `error` event of that code, no response
    /fail               `response.failed` (server_error) after a few deltas
    /incomplete         `response.incomplete` (max_output_tokens), text cut short
    /drop               close the socket abruptly (no close frame) after a few deltas
    /compact            run server-side compaction on this turn
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sessions_app.protocol import errors
from sessions_app.protocol.errors import ProtocolError

__all__ = ["Directives", "directive_error"]

_TOOL_RE = re.compile(r"/tool\s+([A-Za-z0-9_.:\-]+)(?:\s+(\{.*\}))?", re.DOTALL)
_LONG_RE = re.compile(r"/long\s+(\d+)")
_SLOW_RE = re.compile(r"/slow\s+(\d+)")
_ERROR_RE = re.compile(r"/error\s+([A-Za-z0-9_]+)(?:\s+x(\d+)\b)?")
_FLAG_RE = re.compile(r"(?<![\w/])/(fail|incomplete|drop|compact)\b")
MAX_LONG = 100_000


@dataclass(frozen=True)
class Directives:
    tool: str | None = None  # the first /tool (`calls` holds every one, for parallel calls)
    tool_arguments: dict[str, Any] | None = None
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    long: int | None = None
    slow_ms: int | None = None
    error: str | None = None
    error_times: int | None = None  # `/error CODE xN`: only the first N times a socket sees this message
    fail: bool = False
    incomplete: bool = False
    drop: bool = False
    compact: bool = False

    @classmethod
    def parse(cls, text: str | None) -> Directives:
        if not text or "/" not in text:
            return cls()
        # Each `/tool` up to the next one: several make parallel calls, in the order written.
        calls = tuple((match.group(1), _json_object(match.group(2)))
                      for segment in re.split(r"(?=/tool\s)", text)
                      if (match := _TOOL_RE.match(segment)))
        tool, arguments = calls[0] if calls else (None, None)
        flags = {m.group(1) for m in _FLAG_RE.finditer(text)}
        long_match = _LONG_RE.search(text)
        slow_match = _SLOW_RE.search(text)
        error_match = _ERROR_RE.search(text)
        return cls(
            tool=tool,
            tool_arguments=arguments,
            calls=calls,
            long=min(int(long_match.group(1)), MAX_LONG) if long_match else None,
            slow_ms=int(slow_match.group(1)) if slow_match else None,
            error=error_match.group(1) if error_match else None,
            error_times=int(error_match.group(2)) if error_match and error_match.group(2) else None,
            fail="fail" in flags,
            incomplete="incomplete" in flags,
            drop="drop" in flags,
            compact="compact" in flags,
        )


def _json_object(text: str | None) -> dict[str, Any]:
    """The `{json}` of `/tool`; tolerant of trailing text by trying shorter prefixes."""
    if not text:
        return {}
    end = len(text)
    while end > 0:
        try:
            value = json.loads(text[:end])
        except ValueError:
            end = text.rfind("}", 0, end - 1) + 1
            continue
        return value if isinstance(value, dict) else {}
    return {}


def directive_error(code: str, previous_response_id: str | None) -> ProtocolError:
    """The `error` event `/error CODE` stands for (docs/simulator.md lists the codes)."""
    builders = {
        "previous_response_not_found": lambda: errors.previous_response_not_found(
            previous_response_id or "resp_simulated"
        ),
        "websocket_connection_limit_reached": errors.connection_limit_reached,
        "websocket_stream_limit_reached": errors.stream_limit_reached,
        "invalid_stream_id": errors.invalid_stream_id,
        "rate_limit_exceeded": errors.rate_limit_exceeded,
        "server_error": errors.server_error,
    }
    if code in builders:
        return builders[code]()
    return ProtocolError(code, f"Simulated error '{code}' requested by the /error directive.")

"""Server events: which end a request, what a finished response cost, what to do after a failure.

Rules (PROTOCOL.md §3.1, §4, §6, §8):

* A response ends with exactly one terminal event: `response.completed`,
  `response.failed` or `response.incomplete`, each carrying the full Response.
* A create that never started ends with one `error` event instead; an
  `error` is request-scoped when it carries `stream_id` or follows a create
  on the default lane.
* `previous_response_not_found` and `websocket_connection_limit_reached` mean
  the upstream lost its connection-local cache: the caller must replay the
  context (`needs_replay`).
* Close codes 1001, 1005, 1006, 1011, 1012, 1013, 1015 are the ones the SDK
  treats as recoverable (`is_retryable_close`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "TERMINAL_TYPES",
    "RETRYABLE_CLOSE_CODES",
    "REPLAY_ERROR_CODES",
    "is_terminal",
    "ends_request",
    "Usage",
    "Outcome",
    "needs_replay",
    "is_retryable_close",
]

TERMINAL_TYPES = frozenset({"response.completed", "response.failed", "response.incomplete"})
RETRYABLE_CLOSE_CODES = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1015})
REPLAY_ERROR_CODES = frozenset({"previous_response_not_found", "websocket_connection_limit_reached"})


def is_terminal(event_type: str | None) -> bool:
    """True for the three events that end a started response."""
    return event_type in TERMINAL_TYPES


def ends_request(event: dict[str, Any]) -> bool:
    """True when this event is the last one a create will get (terminal or `error`)."""
    return event.get("type") in TERMINAL_TYPES or event.get("type") == "error"


@dataclass(frozen=True)
class Usage:
    """Token accounting of one response (the fields the recorder keeps)."""

    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int

    @classmethod
    def parse(cls, usage: dict[str, Any] | None) -> Usage | None:
        """From a Response's `usage` dict; None when the response reported none."""
        if not isinstance(usage, dict):
            return None
        input_details = usage.get("input_tokens_details") or {}
        output_details = usage.get("output_tokens_details") or {}
        input_tokens = int(usage.get("input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)
        return cls(
            input_tokens=input_tokens,
            cached_tokens=int(input_details.get("cached_tokens") or 0),
            output_tokens=output_tokens,
            reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or input_tokens + output_tokens),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Outcome:
    """What a terminal event says about its response, for the recorder and the relay."""

    response_id: str
    previous_response_id: str | None
    status: str
    stream_id: str | None
    model: str | None
    usage: Usage | None
    output: tuple[dict[str, Any], ...]
    error_code: str | None
    error_message: str | None
    incomplete_reason: str | None

    @classmethod
    def parse(cls, event: dict[str, Any]) -> Outcome:
        """From a terminal event; raises ValueError for any other event."""
        if not is_terminal(event.get("type")):
            raise ValueError(f"not a terminal event: {event.get('type')!r}")
        response = event.get("response") or {}
        error = response.get("error") or {}
        incomplete = response.get("incomplete_details") or {}
        status = response.get("status") or event["type"].removeprefix("response.")
        return cls(
            response_id=response.get("id", ""),
            previous_response_id=response.get("previous_response_id"),
            status=status,
            stream_id=event.get("stream_id"),
            model=response.get("model"),
            usage=Usage.parse(response.get("usage")),
            output=tuple(response.get("output") or ()),
            error_code=error.get("code"),
            error_message=error.get("message"),
            incomplete_reason=incomplete.get("reason"),
        )


def needs_replay(error: dict[str, Any]) -> bool:
    """The upstream lost its connection-local cache: rebuild the context from our records.

    Accepts either an `error` event or its inner `error` object.
    """
    inner = error.get("error") if isinstance(error.get("error"), dict) else error
    return inner.get("code") in REPLAY_ERROR_CODES


def is_retryable_close(code: int | None) -> bool:
    """Abnormal closes the SDK would reconnect after (1000 is final, even after J2)."""
    return code in RETRYABLE_CLOSE_CODES

"""Protocol errors and the exact `error` / `response.steer.failed` events they become.

Rules of this module:

* Code inside Switchboard raises a `ProtocolError`; only the edge (the
  simulator's connection loop, the relay's consumer) calls `to_event()` and
  sends the result.  The exception carries everything the edge needs: code,
  HTTP-like status, param and error type.
* The messages of PROTOCOL.md §6 J1–J4 are reproduced byte for byte by the
  builder functions below; tests compare them with the reference JSON.
* An `error` event omits `stream_id` on the default lane and omits `param`
  when there is none (J2 has no `param` key).

Hierarchy::

    ProtocolError                 -> {"type": "error", ...}
     └── SteerError               -> {"type": "response.steer.failed", ...}
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ProtocolError",
    "SteerError",
    "connection_limit_reached",
    "invalid_json",
    "invalid_number",
    "invalid_unicode",
    "nesting_too_deep",
    "invalid_stream_id",
    "invalid_value",
    "missing_required_parameter",
    "previous_response_not_found",
    "rate_limit_exceeded",
    "server_error",
    "stream_limit_reached",
    "unknown_event_type",
    "unsupported_parameter",
    "error_event",
]

INVALID_REQUEST = "invalid_request_error"


class ProtocolError(Exception):
    """A request-scoped failure that the edge reports as an `error` event.

    The socket stays open after it unless the caller decides otherwise
    (only `websocket_connection_limit_reached` is followed by a close).
    """

    def __init__(
        self,
        code: str | None,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        type: str = INVALID_REQUEST,  # noqa: A002 - mirrors the wire field name
        stream_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.param = param
        self.type = type
        #: The lane the failing request named, when it was known before the failure.
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, param={self.param!r})"

    def to_event(self, stream_id: str | None = None) -> dict[str, Any]:
        """The `error` event of PROTOCOL.md §6; `stream_id` only for a named lane.

        Without an explicit `stream_id`, the lane recorded on the exception is used.
        """
        return error_event(
            code=self.code,
            message=self.message,
            status=self.status,
            param=self.param,
            type=self.type,
            stream_id=stream_id if stream_id is not None else self.stream_id,
        )


class SteerError(ProtocolError):
    """A rejected `response.steer`; reported as `response.steer.failed`, not `error`.

    `previous_response_id` and `input` are echoed back so the client can carry
    the uncommitted input into its next `response.create`.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        previous_response_id: str,
        input: Any,  # noqa: A002 - mirrors the wire field name
        steer_id: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.previous_response_id = previous_response_id
        self.input = input
        self.steer_id = steer_id

    def to_event(self, stream_id: str | None = None, sequence_number: int = 0) -> dict[str, Any]:
        steer: dict[str, Any] = {}
        if self.steer_id is not None:
            steer["id"] = self.steer_id
        steer["previous_response_id"] = self.previous_response_id
        steer["input"] = self.input
        event: dict[str, Any] = {"type": "response.steer.failed", "sequence_number": sequence_number}
        if stream_id is not None:
            event["stream_id"] = stream_id
        event["steer"] = steer
        event["error"] = {"type": INVALID_REQUEST, "code": self.code, "message": self.message}
        return event


def error_event(
    *,
    code: str | None,
    message: str,
    status: int | None = 400,
    param: str | None = None,
    type: str = INVALID_REQUEST,  # noqa: A002
    stream_id: str | None = None,
    sequence_number: int | None = None,
) -> dict[str, Any]:
    """Build an `error` event envelope (key order as in PROTOCOL.md §3.7)."""
    event: dict[str, Any] = {"type": "error"}
    if sequence_number is not None:
        event["sequence_number"] = sequence_number
    if status is not None:
        event["status"] = status
    if stream_id is not None:
        event["stream_id"] = stream_id
    error: dict[str, Any] = {"type": type, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    event["error"] = error
    return event


# -- exact messages of PROTOCOL.md §6 ---------------------------------------------------


def previous_response_not_found(response_id: str) -> ProtocolError:
    """J1: the id is neither in this connection's cache nor hydratable from storage."""
    return ProtocolError(
        "previous_response_not_found",
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
    )


def connection_limit_reached() -> ProtocolError:
    """J2: the socket hit its lifetime limit; the server closes it after sending this."""
    return ProtocolError(
        "websocket_connection_limit_reached",
        "Responses websocket connection limit reached (60 minutes). "
        "Create a new websocket connection to continue.",
    )


def stream_limit_reached() -> ProtocolError:
    """J3: a 33rd distinct named `stream_id` on one connection."""
    return ProtocolError(
        "websocket_stream_limit_reached",
        "This WebSocket connection has reached its maximum number of distinct stream IDs (32). "
        "Reuse an existing stream_id or open a new WebSocket connection.",
        param="stream_id",
    )


def invalid_stream_id() -> ProtocolError:
    """J4: empty, too long, or characters outside [A-Za-z0-9_.-]."""
    return ProtocolError(
        "invalid_stream_id",
        "The 'stream_id' field must be a non-empty string with at most 256 characters "
        "and may only contain letters, numbers, underscores, hyphens, and periods.",
        param="stream_id",
    )


# -- other request errors (wording follows the HTTP API; not confirmed for WS) ------------


def invalid_json(detail: str) -> ProtocolError:
    return ProtocolError(
        "invalid_json",
        f"The message could not be parsed as a JSON object: {detail}",
    )


def invalid_number(literal: str) -> ProtocolError:
    """A number JSON peers cannot share: NaN, ±Infinity, or beyond a double's range (protocol/limits.py)."""
    return ProtocolError(
        "invalid_number",
        f"The message contains the number {literal}, which is not a finite JSON number within the range "
        "of a double.",
    )


def invalid_unicode(what: str) -> ProtocolError:
    """A string holding what neither the database nor the upstream can take (protocol/limits.py)."""
    return ProtocolError(
        "invalid_unicode",
        f"The message contains a string with {what}, which cannot be stored or forwarded.",
    )


def nesting_too_deep(limit: int) -> ProtocolError:
    return ProtocolError(
        "nesting_too_deep",
        f"The message nests arrays and objects more than {limit} levels deep.",
    )


def unknown_event_type(event_type: object) -> ProtocolError:
    shown = repr(event_type)
    if len(shown) > 80:  # the client's value is echoed: keep the message short whatever it sent
        shown = shown[:64] + "…"
    return ProtocolError(
        "unknown_event_type",
        f"Invalid event type {shown}. Supported types: 'response.create', 'response.steer'.",
        param="type",
    )


def unsupported_parameter(param: str, why: str) -> ProtocolError:
    return ProtocolError("unsupported_parameter", f"Unsupported parameter: '{param}'. {why}", param=param)


def invalid_value(param: str, message: str, code: str = "invalid_value") -> ProtocolError:
    return ProtocolError(code, message, param=param)


def missing_required_parameter(param: str) -> ProtocolError:
    return ProtocolError(
        "missing_required_parameter",
        f"Missing required parameter: '{param}'.",
        param=param,
    )


def rate_limit_exceeded() -> ProtocolError:
    """429; `type` is `rate_limit_error`, as in the HTTP API (the SDK accepts any string)."""
    return ProtocolError(
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
        status=429,
        type="rate_limit_error",
    )


def server_error() -> ProtocolError:
    return ProtocolError(
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        status=500,
        type="server_error",
    )

"""Pure Responses-API WebSocket protocol logic: no Django, no Channels, no websockets.

The simulator, the relay and the recorder all read and build protocol JSON
through this package (PROTOCOL.md is the authority it follows):

* `errors`  – `ProtocolError` hierarchy and the exact J1–J4 error events;
* `events`  – parse/validate client frames (`response.create`, `response.steer`);
* `items`   – normalise inputs, read the text of items;
* `outcome` – terminal events, `Usage`, `Outcome`, replay/retry decisions;
* `lanes`   – per-connection FIFO lanes, 16 in flight, 32 named lanes;
* `ids`     – `resp_`, `msg_`, `fc_`, `call_`, `rs_`, `cmp_`, `steer_` ids.
"""

from __future__ import annotations

from .errors import (
    ProtocolError,
    SteerError,
    connection_limit_reached,
    error_event,
    invalid_stream_id,
    previous_response_not_found,
    stream_limit_reached,
)
from .events import (
    ClientEvent,
    CreateEvent,
    SteerEvent,
    parse_client_dict,
    parse_client_event,
    validate_generation,
    validate_stream_id,
)
from .items import input_items, item_text, item_type, last_user_text, output_text, user_message
from .lanes import MAX_IN_FLIGHT, MAX_NAMED_LANES, Lane, LaneTable, Queued, Started
from .outcome import (
    TERMINAL_TYPES,
    Outcome,
    Usage,
    ends_request,
    is_retryable_close,
    is_terminal,
    needs_replay,
)

__all__ = [
    "ProtocolError",
    "SteerError",
    "connection_limit_reached",
    "error_event",
    "invalid_stream_id",
    "previous_response_not_found",
    "stream_limit_reached",
    "ClientEvent",
    "CreateEvent",
    "SteerEvent",
    "parse_client_dict",
    "parse_client_event",
    "validate_generation",
    "validate_stream_id",
    "input_items",
    "item_text",
    "item_type",
    "last_user_text",
    "output_text",
    "user_message",
    "MAX_IN_FLIGHT",
    "MAX_NAMED_LANES",
    "Lane",
    "LaneTable",
    "Queued",
    "Started",
    "TERMINAL_TYPES",
    "Outcome",
    "Usage",
    "ends_request",
    "is_retryable_close",
    "is_terminal",
    "needs_replay",
]

"""Client frames: parse and validate what a client sends on the socket.

Rules (PROTOCOL.md §2, §4.1):

* A frame is one JSON object with a `type` of `response.create` or
  `response.steer`; anything else is an `invalid_request_error`.
* `response.create` must not carry `stream`, `stream_options`, `background`
  or `background_options` (streaming is implicit, background unsupported).
* `stream_id`, when present and not null, is 1–256 chars of `[A-Za-z0-9_.-]`
  (J4 otherwise).  Null or absent means the default lane.
* `metadata`: at most 16 string pairs, keys ≤ 64 chars, values ≤ 512 chars.
* `response.steer` accepts only `type`, `previous_response_id` and `input`;
  its input is a non-empty string or a non-empty list of user messages.

These are the envelope rules every hop enforces.  Limits that belong to the
model (for example `max_output_tokens` ≥ 16) live in `validate_generation`,
which the simulator applies and a relay may skip, letting the upstream decide.
The parsed values keep the decoded dict untouched (`raw`) so a relay can
forward it verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ProtocolError, SteerError
from .limits import decode_frame

__all__ = [
    "CreateEvent",
    "SteerEvent",
    "ClientEvent",
    "parse_client_event",
    "parse_client_dict",
    "validate_stream_id",
    "validate_generation",
    "CLIENT_EVENT_TYPES",
    "FORBIDDEN_CREATE_FIELDS",
    "MIN_OUTPUT_TOKENS",
]

CLIENT_EVENT_TYPES = frozenset({"response.create", "response.steer"})

FORBIDDEN_CREATE_FIELDS: dict[str, str] = {
    "stream": "Streaming is implicit over WebSocket; do not send 'stream'.",
    "stream_options": "Streaming is implicit over WebSocket; do not send 'stream_options'.",
    "background": "Background mode is not supported over WebSocket.",
    "background_options": "Background mode is not supported over WebSocket.",
}

STEER_FIELDS = frozenset({"type", "previous_response_id", "input"})
STREAM_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MIN_OUTPUT_TOKENS = 16


@dataclass(frozen=True)
class CreateEvent:
    """A validated `response.create`; `raw` is the decoded frame, unchanged."""

    raw: dict[str, Any]
    stream_id: str | None
    previous_response_id: str | None

    @property
    def model(self) -> str | None:
        return self.raw.get("model")

    @property
    def store(self) -> bool:
        return bool(self.raw.get("store", False))

    @property
    def generate(self) -> bool:
        """`generate: false` (or a prewarm prompt cache) prepares state without output."""
        options = self.raw.get("prompt_cache_options")
        if isinstance(options, dict) and options.get("prewarm") is True:
            return False
        return self.raw.get("generate", True) is not False

    @property
    def uses_compaction(self) -> bool:
        cm = self.raw.get("context_management") or []
        return any(isinstance(c, dict) and c.get("type") == "compaction" for c in cm)


@dataclass(frozen=True)
class SteerEvent:
    """A validated `response.steer`."""

    raw: dict[str, Any]
    previous_response_id: str
    input: Any  # noqa: A003 - wire name


ClientEvent = CreateEvent | SteerEvent


def parse_client_event(frame: str | bytes) -> ClientEvent:
    """Decode one frame (limits.py: UTF-8, finite numbers, depth, storable strings) and validate it.

    Raises `ProtocolError` (or `SteerError` for a steer)."""
    return parse_client_dict(decode_frame(frame))


def parse_client_dict(data: Any) -> ClientEvent:
    """Validate an already decoded frame; see the module rules."""
    if not isinstance(data, dict):
        raise errors.invalid_json("expected an object")
    event_type = data.get("type")
    if event_type == "response.create":
        return _parse_create(data)
    if event_type == "response.steer":
        return _parse_steer(data)
    if event_type is None:
        raise errors.missing_required_parameter("type")
    raise errors.unknown_event_type(event_type)


def validate_stream_id(value: Any) -> str | None:
    """Return the lane key (None = default lane) or raise J4."""
    if value is None:
        return None
    if not isinstance(value, str) or not STREAM_ID_RE.fullmatch(value):
        raise errors.invalid_stream_id()
    return value


def _parse_create(data: dict[str, Any]) -> CreateEvent:
    # stream_id first: every later error must be able to name the lane.
    stream_id = validate_stream_id(data.get("stream_id"))
    try:
        return _check_create(data, stream_id)
    except ProtocolError as exc:
        exc.stream_id = stream_id
        raise


def _check_create(data: dict[str, Any], stream_id: str | None) -> CreateEvent:
    for field, why in FORBIDDEN_CREATE_FIELDS.items():
        if field in data:
            raise errors.unsupported_parameter(field, why)
    previous = data.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise errors.invalid_value(
            "previous_response_id", "Invalid type for 'previous_response_id': expected a string.", "invalid_type"
        )
    if "input" in data and data["input"] is not None and not isinstance(data["input"], (str, list)):
        raise errors.invalid_value("input", "Invalid type for 'input': expected a string or an array.", "invalid_type")
    if isinstance(data.get("input"), list):
        _check_input_items(data["input"])
    _check_metadata(data.get("metadata"))
    cm = data.get("context_management")
    if cm is not None and (not isinstance(cm, list) or not all(isinstance(c, dict) for c in cm)):
        raise errors.invalid_value("context_management", "Invalid 'context_management': expected an array of objects.")
    return CreateEvent(raw=data, stream_id=stream_id, previous_response_id=previous)


def _check_input_items(items: list[Any]) -> None:
    """Items are objects whose `type` and `role`, when not null, are strings (the recorder reads both)."""
    for item in items:
        if not isinstance(item, dict):
            raise errors.invalid_value("input", "Invalid 'input': every item must be an object.", "invalid_type")
        for key in ("type", "role"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise errors.invalid_value("input", f"Invalid type for 'input[].{key}': expected a string.",
                                           "invalid_type")


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise errors.invalid_value("metadata", "Invalid type for 'metadata': expected an object.", "invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise errors.invalid_value(
            "metadata",
            f"Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_PAIRS} "
            f"properties, but got an object with {len(metadata)} properties instead.",
            "object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise errors.invalid_value(
                "metadata",
                f"Invalid 'metadata': key '{key[:16]}…' is longer than {MAX_METADATA_KEY} characters.",
                "string_above_max_length",
            )
        if not isinstance(value, str):
            raise errors.invalid_value(
                "metadata", f"Invalid type for 'metadata.{key}': expected a string.", "invalid_type"
            )
        if len(value) > MAX_METADATA_VALUE:
            raise errors.invalid_value(
                "metadata",
                f"Invalid 'metadata.{key}': string too long. Expected at most {MAX_METADATA_VALUE} characters.",
                "string_above_max_length",
            )


def _parse_steer(data: dict[str, Any]) -> SteerEvent:
    previous = data.get("previous_response_id")
    if not isinstance(previous, str) or not previous:
        # Without a target id a steer.failed event cannot be built: plain error instead.
        raise errors.missing_required_parameter("previous_response_id")
    if "input" not in data or data["input"] is None:
        raise errors.missing_required_parameter("input")
    steer_input = data["input"]

    def reject(message: str) -> SteerError:
        return SteerError("invalid_input", message, previous_response_id=previous, input=steer_input)

    extra = sorted(set(data) - STEER_FIELDS)
    if extra:
        raise reject(
            f"Unsupported field(s) for response.steer: {', '.join(extra)}. "
            "Only 'type', 'previous_response_id' and 'input' are accepted."
        )
    if isinstance(steer_input, str):
        if not steer_input:
            raise reject("Steering input must not be empty.")
    elif isinstance(steer_input, list):
        if not steer_input:
            raise reject("Steering input must be a non-empty array.")
        for item in steer_input:
            if not isinstance(item, dict) or item.get("role") != "user" or item.get("type", "message") != "message":
                raise reject("Steering accepts only messages with the 'user' role.")
    else:
        raise reject("Steering input must be a string or an array of user messages.")
    return SteerEvent(raw=data, previous_response_id=previous, input=steer_input)


def validate_generation(raw: dict[str, Any]) -> None:
    """Model-side limits of a create body (the upstream's job, not the envelope's)."""
    if "model" not in raw or raw.get("model") in (None, ""):
        raise errors.missing_required_parameter("model")
    if not isinstance(raw["model"], str):
        raise errors.invalid_value("model", "Invalid type for 'model': expected a string.", "invalid_type")
    mot = raw.get("max_output_tokens")
    if mot is not None:
        if not isinstance(mot, int) or isinstance(mot, bool):
            raise errors.invalid_value(
                "max_output_tokens", "Invalid type for 'max_output_tokens': expected an integer.", "invalid_type"
            )
        if mot < MIN_OUTPUT_TOKENS:
            raise errors.invalid_value(
                "max_output_tokens",
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                f"{MIN_OUTPUT_TOKENS}, but got {mot} instead.",
                "integer_below_min_value",
            )
    for entry in raw.get("context_management") or []:
        if entry.get("type") != "compaction":
            raise errors.invalid_value(
                "context_management", "Invalid 'context_management': only 'compaction' is supported."
            )
        threshold = entry.get("compact_threshold")
        if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1):
            raise errors.invalid_value(
                "context_management",
                "Invalid 'compact_threshold': expected a positive integer.",
            )
    tools = raw.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise errors.invalid_value("tools", "Invalid type for 'tools': expected an array of objects.", "invalid_type")

from __future__ import annotations

import pydantic
from openai.types.responses import ResponsesServerEvent

from sessions_app.protocol import errors
from sessions_app.protocol.errors import ProtocolError, SteerError

ADAPTER = pydantic.TypeAdapter(ResponsesServerEvent)

J1 = {"type": "error", "status": 400, "stream_id": "main",
      "error": {"type": "invalid_request_error", "code": "previous_response_not_found",
                "message": "Previous response with id 'resp_abc' not found.", "param": "previous_response_id"}}
J2 = {"type": "error", "error": {"type": "invalid_request_error", "code": "websocket_connection_limit_reached",
      "message": "Responses websocket connection limit reached (60 minutes). Create a new websocket connection "
                 "to continue."}, "status": 400}
J3 = {"type": "error", "status": 400, "stream_id": "agent_33",
      "error": {"type": "invalid_request_error", "code": "websocket_stream_limit_reached",
                "message": "This WebSocket connection has reached its maximum number of distinct stream IDs (32). "
                           "Reuse an existing stream_id or open a new WebSocket connection.",
                "param": "stream_id"}}
J4 = {"type": "error", "status": 400,
      "error": {"type": "invalid_request_error", "code": "invalid_stream_id",
                "message": "The 'stream_id' field must be a non-empty string with at most 256 characters and may "
                           "only contain letters, numbers, underscores, hyphens, and periods.",
                "param": "stream_id"}}


def test_previous_response_not_found_is_exactly_j1() -> None:
    assert errors.previous_response_not_found("resp_abc").to_event(stream_id="main") == J1


def test_j1_on_the_default_lane_has_no_stream_id() -> None:
    event = errors.previous_response_not_found("resp_abc").to_event()
    assert "stream_id" not in event
    assert event["error"] == J1["error"]


def test_connection_limit_reached_is_exactly_j2() -> None:
    assert errors.connection_limit_reached().to_event() == J2


def test_stream_limit_reached_is_exactly_j3() -> None:
    assert errors.stream_limit_reached().to_event(stream_id="agent_33") == J3


def test_invalid_stream_id_is_exactly_j4() -> None:
    assert errors.invalid_stream_id().to_event() == J4


def test_error_events_validate_with_the_sdk() -> None:
    for event in (J1, J2, J3, J4, errors.rate_limit_exceeded().to_event(), errors.server_error().to_event()):
        assert ADAPTER.validate_python(event).type == "error"


def test_rate_limit_is_a_429_rate_limit_error() -> None:
    event = errors.rate_limit_exceeded().to_event(stream_id="a")
    assert event["status"] == 429
    assert event["error"]["type"] == "rate_limit_error"
    assert event["error"]["code"] == "rate_limit_exceeded"
    assert event["stream_id"] == "a"


def test_exception_remembers_its_lane_for_the_edge() -> None:
    exc = ProtocolError("x", "boom", stream_id="lane-1")
    assert exc.to_event()["stream_id"] == "lane-1"
    assert exc.to_event(stream_id="other")["stream_id"] == "other"


def test_steer_error_builds_a_valid_steer_failed_event() -> None:
    exc = SteerError("steering_not_supported", "Steering is not supported for this response.",
                     previous_response_id="resp_001", input="also run tests")
    event = exc.to_event()
    assert event == {
        "type": "response.steer.failed", "sequence_number": 0,
        "steer": {"previous_response_id": "resp_001", "input": "also run tests"},
        "error": {"type": "invalid_request_error", "code": "steering_not_supported",
                  "message": "Steering is not supported for this response."},
    }
    assert ADAPTER.validate_python(event).type == "response.steer.failed"


def test_steer_error_with_an_id_and_a_lane() -> None:
    event = SteerError("response_not_found", "gone", previous_response_id="resp_1", input="x",
                       steer_id="steer_1").to_event(stream_id="a", sequence_number=4)
    assert event["steer"]["id"] == "steer_1"
    assert event["stream_id"] == "a"
    assert event["sequence_number"] == 4
    ADAPTER.validate_python(event)

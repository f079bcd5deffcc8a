from __future__ import annotations

import json

import pytest

from sessions_app.protocol.errors import ProtocolError, SteerError
from sessions_app.protocol.events import (
    CreateEvent,
    SteerEvent,
    parse_client_dict,
    parse_client_event,
    validate_generation,
    validate_stream_id,
)


def create(**fields):
    return {"type": "response.create", "model": "gpt-5.5", **fields}


def error_of(frame) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(json.dumps(frame) if not isinstance(frame, str) else frame)
    return info.value


def test_a_minimal_create_parses_and_keeps_the_raw_frame() -> None:
    frame = create(store=False, input="hi", extra_field={"kept": True})
    event = parse_client_event(json.dumps(frame))
    assert isinstance(event, CreateEvent)
    assert event.raw == frame
    assert event.stream_id is None
    assert event.previous_response_id is None
    assert event.generate is True
    assert event.store is False


def test_stream_id_and_previous_response_id_are_extracted() -> None:
    event = parse_client_dict(create(stream_id="planner", previous_response_id="resp_1"))
    assert event.stream_id == "planner"
    assert event.previous_response_id == "resp_1"


def test_malformed_json_is_an_invalid_request() -> None:
    exc = error_of("{not json")
    assert exc.code == "invalid_json"
    assert exc.type == "invalid_request_error"
    assert exc.status == 400


def test_a_json_array_is_not_an_event() -> None:
    assert error_of("[1, 2]").code == "invalid_json"


def test_unknown_event_types_are_rejected() -> None:
    exc = error_of({"type": "session.update"})
    assert exc.code == "unknown_event_type"
    assert exc.param == "type"


def test_missing_type_is_rejected() -> None:
    assert error_of({"model": "x"}).code == "missing_required_parameter"


@pytest.mark.parametrize("field", ["stream", "stream_options", "background", "background_options"])
def test_http_only_fields_are_rejected_with_their_param(field: str) -> None:
    exc = error_of(create(**{field: True}))
    assert exc.param == field
    assert exc.type == "invalid_request_error"


def test_a_forbidden_field_on_a_named_lane_names_the_lane() -> None:
    exc = error_of(create(stream_id="a", stream=True))
    assert exc.to_event()["stream_id"] == "a"


@pytest.mark.parametrize("bad", ["", "a" * 257, "has space", "sl/ash", "ü", 5])
def test_bad_stream_ids_are_j4(bad) -> None:
    exc = error_of(create(stream_id=bad))
    assert exc.code == "invalid_stream_id"
    assert "stream_id" not in exc.to_event()


@pytest.mark.parametrize("good", ["a", "A-b_c.9", "x" * 256])
def test_good_stream_ids(good: str) -> None:
    assert validate_stream_id(good) == good


def test_null_stream_id_means_the_default_lane() -> None:
    assert parse_client_dict(create(stream_id=None)).stream_id is None


def test_metadata_limits() -> None:
    assert parse_client_dict(create(metadata={f"k{i}": "v" for i in range(16)}))
    assert error_of(create(metadata={f"k{i}": "v" for i in range(17)})).param == "metadata"
    assert error_of(create(metadata={"k" * 65: "v"})).param == "metadata"
    assert error_of(create(metadata={"k": "v" * 513})).param == "metadata"
    assert error_of(create(metadata={"k": 1})).param == "metadata"


def test_input_must_be_a_string_or_a_list_of_objects() -> None:
    assert error_of(create(input=5)).param == "input"
    assert error_of(create(input=["x"])).param == "input"


def test_generate_false_and_prewarm_mean_no_output() -> None:
    assert parse_client_dict(create(generate=False)).generate is False
    assert parse_client_dict(create(prompt_cache_options={"prewarm": True})).generate is False


def test_uses_compaction() -> None:
    event = parse_client_dict(create(context_management=[{"type": "compaction", "compact_threshold": 10}]))
    assert event.uses_compaction


def test_a_valid_steer() -> None:
    event = parse_client_dict({"type": "response.steer", "previous_response_id": "resp_1", "input": "more"})
    assert isinstance(event, SteerEvent)
    assert event.previous_response_id == "resp_1"
    assert event.input == "more"


def test_steer_with_stream_id_is_invalid_input() -> None:
    with pytest.raises(SteerError) as info:
        parse_client_dict({"type": "response.steer", "previous_response_id": "resp_1", "input": "x",
                           "stream_id": "a"})
    assert info.value.code == "invalid_input"
    assert info.value.to_event()["steer"] == {"previous_response_id": "resp_1", "input": "x"}


def test_steer_accepts_only_user_messages() -> None:
    with pytest.raises(SteerError):
        parse_client_dict({"type": "response.steer", "previous_response_id": "resp_1",
                           "input": [{"type": "message", "role": "assistant", "content": "x"}]})
    with pytest.raises(SteerError):
        parse_client_dict({"type": "response.steer", "previous_response_id": "resp_1", "input": []})


def test_steer_without_target_is_a_plain_error() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_dict({"type": "response.steer", "input": "x"})
    assert not isinstance(info.value, SteerError)
    assert info.value.param == "previous_response_id"


def test_generation_limits() -> None:
    validate_generation(create(max_output_tokens=16))
    for bad in (-1, 0, 15):
        with pytest.raises(ProtocolError) as info:
            validate_generation(create(max_output_tokens=bad))
        assert info.value.param == "max_output_tokens"
        assert info.value.code == "integer_below_min_value"
    with pytest.raises(ProtocolError) as info:
        validate_generation({"type": "response.create"})
    assert info.value.param == "model"
    with pytest.raises(ProtocolError):
        validate_generation(create(context_management=[{"type": "other"}]))

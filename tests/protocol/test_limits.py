"""Client frames are decoded within limits every hop can parse, store and forward (protocol/limits.py)."""

from __future__ import annotations

import json

import pytest

from sessions_app.protocol.errors import ProtocolError
from sessions_app.protocol.events import CreateEvent, parse_client_event
from sessions_app.protocol.limits import MAX_DEPTH, decode_frame


def refused(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(frame)
    error = caught.value
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", None)
    return error


def nested(depth: int) -> str:
    """A create whose input nests `depth` levels in all (the event object is level 1)."""
    inner = "[" * (depth - 3) + "]" * (depth - 3)  # levels 4..depth
    return '{"type": "response.create", "input": [{"type": "message", "content": ' + inner + "}]}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1.5E+400"])
def test_a_non_finite_number_is_refused(literal):
    error = refused('{"type": "response.create", "input": "hi", "temperature": ' + literal + "}")
    assert error.code == "invalid_number" and literal in error.message


@pytest.mark.parametrize("digits", [310, 400, 4301, 100_000])
def test_an_integer_beyond_a_doubles_range_is_refused_without_pythons_own_limit(digits):
    error = refused('{"type": "response.create", "input": "hi", "max_output_tokens": 1' + "0" * (digits - 1) + "}")
    assert error.code == "invalid_number" and len(error.message) < 200


@pytest.mark.parametrize("literal", ["9" * 300 + "e10", "1" * 200 + ".5e200", "1e0999"])
def test_a_number_that_overflows_through_its_digits_and_exponent_together_is_refused(literal):
    assert refused('{"type": "response.create", "input": "hi", "x": ' + literal + "}").code == "invalid_number"


def test_large_but_finite_numbers_pass():
    event = parse_client_event(json.dumps({"type": "response.create", "input": "hi", "seed": 2**64,
                                           "x": 1.7e308, "y": -(10**307), "z": 1e-999}))
    assert event.raw["seed"] == 2**64 and event.raw["z"] == 0.0


def test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused():
    assert isinstance(parse_client_event(nested(MAX_DEPTH)), CreateEvent)
    assert refused(nested(MAX_DEPTH + 1)).code == "nesting_too_deep"


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_nesting_deeper_than_the_decoder_recurses_is_refused_the_same_way(depth):
    assert refused("[" * depth + "]" * depth).code == "nesting_too_deep"
    assert refused('{"a":' * depth + "1" + "}" * depth).code == "nesting_too_deep"


def test_depth_is_measured_without_recursion():
    # Deep enough to pass the pre-screen, shallow enough for json.loads: the walk must catch it.
    assert decode_frame("[" * MAX_DEPTH + "]" * MAX_DEPTH) == eval("[" * (MAX_DEPTH - 1) + "[]" + "]" * (MAX_DEPTH - 1))  # noqa: S307
    with pytest.raises(ProtocolError) as caught:
        decode_frame("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert caught.value.code == "nesting_too_deep"


@pytest.mark.parametrize("text", [r'"\ud800"', r'"a\udfffb"', r'"\u0000"', '"\ud800"'])
def test_a_string_the_database_cannot_store_is_refused(text):
    frame = '{"type": "response.create", "input": ' + text + "}"
    assert refused(frame).code == "invalid_unicode"


def test_keys_are_checked_too():
    assert refused(r'{"type": "response.create", "input": "hi", "metadata": {"k\ud83d": "v"}}').code == \
        "invalid_unicode"


def test_a_surrogate_pair_is_one_character_and_passes():
    event = parse_client_event(r'{"type": "response.create", "input": "smile \ud83d\ude00"}')
    assert event.raw["input"] == "smile \U0001f600"


def test_a_binary_frame_must_be_utf8():
    assert refused(b'{"type": "response.create", "input": "\xff"}').code == "invalid_json"
    assert refused('{"type": "response.create"}'.encode("utf-16")).code == "invalid_json"
    event = parse_client_event('{"type": "response.create", "input": "é"}'.encode())
    assert event.raw["input"] == "é"


@pytest.mark.parametrize("field", ["type", "role"])
def test_an_input_item_with_a_non_string_type_or_role_is_refused(field):
    frame = json.dumps({"type": "response.create", "input": [{"type": "message", "role": "user", field: {"x": 1}}]})
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(frame)
    assert (caught.value.code, caught.value.param) == ("invalid_type", "input")


def test_an_unknown_event_type_is_echoed_short():
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(json.dumps({"type": "x" * 100_000}))
    assert caught.value.code == "unknown_event_type" and len(caught.value.message) < 200

from __future__ import annotations

import json

import pytest

from sessions_app.protocol.frames import forward_only_kind


def test_a_default_lane_text_delta_is_recognised_without_decoding():
    frame = json.dumps({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1",
                        "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []})
    assert forward_only_kind(frame) == "response.output_text.delta"
    compact = frame.replace(": ", ":").replace(", ", ",")
    assert forward_only_kind(compact) == "response.output_text.delta"


@pytest.mark.parametrize("kind", [
    "response.function_call_arguments.delta", "response.reasoning_summary_text.delta",
    "response.output_item.added", "response.content_part.added", "response.content_part.done",
    "response.output_text.done",
])
def test_other_deltas_and_part_markers_are_recognised_too(kind):
    frame = json.dumps({"type": kind, "sequence_number": 3, "item_id": "fc_1", "output_index": 0})
    assert forward_only_kind(frame) == kind
    assert forward_only_kind(frame.replace(": ", ":").replace(", ", ",")) == kind


@pytest.mark.parametrize("kind", [
    # the relay acts on these: lifecycle, the finished item, errors, steering
    "response.created", "response.in_progress", "response.queued", "response.completed", "response.failed",
    "response.incomplete", "response.output_item.done", "error", "response.steer.accepted",
    "response.steer.failed", "response.output_text.delta_extra",
])
def test_events_the_relay_acts_on_are_decoded(kind):
    assert forward_only_kind(json.dumps({"type": kind, "response": {"id": "resp_1"}})) is None


def test_frames_that_need_decoding_are_left_alone():
    named = json.dumps({"type": "response.output_text.delta", "stream_id": "a", "delta": "x"})
    named_marker = json.dumps({"type": "response.content_part.added", "stream_id": "a"})
    type_not_first = json.dumps({"sequence_number": 1, "type": "response.output_text.delta", "delta": "x"})
    truncated = '{"type":"response.output_text.delta","delta":"x"'
    for frame in (named, named_marker, type_not_first, truncated, "", b'{"type":"response.output_text.delta"}'):
        assert forward_only_kind(frame) is None


def test_a_delta_whose_text_mentions_stream_id_still_takes_the_fast_path():
    frame = json.dumps({"type": "response.output_text.delta", "delta": 'say "stream_id"'})
    assert '"stream_id"' not in frame  # json escapes the quotes inside the value
    assert forward_only_kind(frame) == "response.output_text.delta"

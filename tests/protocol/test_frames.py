from __future__ import annotations

import json

from sessions_app.protocol.frames import default_lane_delta


def test_a_default_lane_text_delta_is_recognised_without_decoding():
    frame = json.dumps({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1",
                        "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []})
    assert default_lane_delta(frame) == "response.output_text.delta"
    compact = frame.replace(": ", ":").replace(", ", ",")
    assert default_lane_delta(compact) == "response.output_text.delta"


def test_other_deltas_are_recognised_too():
    frame = json.dumps({"type": "response.function_call_arguments.delta", "sequence_number": 3, "item_id": "fc_1",
                        "output_index": 0, "delta": "{\"city\":"})
    assert default_lane_delta(frame) == "response.function_call_arguments.delta"


def test_frames_that_need_decoding_are_left_alone():
    named = json.dumps({"type": "response.output_text.delta", "stream_id": "a", "delta": "x"})
    not_a_delta = json.dumps({"type": "response.completed", "response": {"id": "resp_1"}})
    type_not_first = json.dumps({"sequence_number": 1, "type": "response.output_text.delta", "delta": "x"})
    truncated = '{"type":"response.output_text.delta","delta":"x"'
    for frame in (named, not_a_delta, type_not_first, truncated, b'{"type":"response.output_text.delta"}'):
        assert default_lane_delta(frame) is None


def test_a_delta_whose_text_mentions_stream_id_still_takes_the_fast_path():
    frame = json.dumps({"type": "response.output_text.delta", "delta": 'say "stream_id"'})
    assert '"stream_id"' not in frame  # json escapes the quotes inside the value
    assert default_lane_delta(frame) == "response.output_text.delta"

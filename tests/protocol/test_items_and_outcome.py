from __future__ import annotations

from sessions_app.protocol import ids
from sessions_app.protocol.items import input_items, item_text, last_user_text, output_text
from sessions_app.protocol.outcome import (
    Outcome,
    Usage,
    ends_request,
    is_retryable_close,
    is_terminal,
    needs_replay,
)


def test_string_input_becomes_one_user_message() -> None:
    assert input_items({"input": "hi"}) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]


def test_easy_messages_get_a_type() -> None:
    assert input_items({"input": [{"role": "user", "content": "x"}]}) == [
        {"type": "message", "role": "user", "content": "x"}
    ]
    assert input_items({}) == []


def test_item_text_reads_every_shape() -> None:
    assert item_text({"type": "message", "role": "user", "content": "plain"}) == "plain"
    assert item_text({"type": "message", "role": "assistant",
                      "content": [{"type": "output_text", "text": "a", "annotations": []},
                                  {"type": "refusal", "refusal": "b"}]}) == "ab"
    assert item_text({"type": "function_call", "arguments": "{}", "name": "f", "call_id": "c"}) == "{}"
    assert item_text({"type": "function_call_output", "call_id": "c", "output": "42"}) == "42"
    assert item_text({"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}]}) == "s"


def test_last_user_text() -> None:
    items = input_items({"input": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "x"},
                                   {"role": "user", "content": "two"}]})
    assert last_user_text(items) == "two"
    assert last_user_text([]) is None


def test_output_text_of_a_response() -> None:
    response = {"output": [{"type": "reasoning", "summary": []},
                           {"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "Hi", "annotations": []}]}]}
    assert output_text(response) == "Hi"


def test_terminal_types() -> None:
    assert is_terminal("response.completed") and is_terminal("response.failed") and is_terminal("response.incomplete")
    assert not is_terminal("response.output_text.delta")
    assert ends_request({"type": "error"}) and not ends_request({"type": "response.created"})


USAGE = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
         "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 19}


def test_usage_parse_and_back() -> None:
    usage = Usage.parse(USAGE)
    assert usage == Usage(input_tokens=12, cached_tokens=3, output_tokens=7, reasoning_tokens=2, total_tokens=19)
    assert usage.to_json() == USAGE
    assert Usage.parse(None) is None


def test_outcome_of_a_terminal_event() -> None:
    event = {"type": "response.incomplete", "sequence_number": 9, "stream_id": "a",
             "response": {"id": "resp_2", "previous_response_id": "resp_1", "status": "incomplete", "model": "m",
                          "output": [], "usage": USAGE, "incomplete_details": {"reason": "steered"}, "error": None}}
    outcome = Outcome.parse(event)
    assert outcome.response_id == "resp_2"
    assert outcome.previous_response_id == "resp_1"
    assert outcome.status == "incomplete"
    assert outcome.stream_id == "a"
    assert outcome.incomplete_reason == "steered"
    assert outcome.usage.total_tokens == 19


def test_replay_and_retry_decisions() -> None:
    assert needs_replay({"type": "error", "error": {"code": "previous_response_not_found"}})
    assert needs_replay({"code": "websocket_connection_limit_reached"})
    assert not needs_replay({"type": "error", "error": {"code": "rate_limit_exceeded"}})
    assert all(is_retryable_close(c) for c in (1001, 1005, 1006, 1011, 1012, 1013, 1015))
    assert not is_retryable_close(1000) and not is_retryable_close(None)


def test_ids_have_their_prefixes() -> None:
    assert ids.response_id().startswith("resp_")
    assert ids.message_id().startswith("msg_")
    assert ids.function_call_id().startswith("fc_")
    assert ids.call_id().startswith("call_")
    assert ids.reasoning_id().startswith("rs_")
    assert ids.compaction_id().startswith("cmp_")
    assert ids.steer_id().startswith("steer_")
    assert ids.response_id() != ids.response_id()

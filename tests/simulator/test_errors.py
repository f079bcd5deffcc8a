"""TV3, TV4 and request-scoped errors: the socket stays open after each."""

from __future__ import annotations

import pytest

from .helpers import RawClient, create, text_of

pytestmark = pytest.mark.asyncio

J1_ERROR = {"type": "invalid_request_error", "code": "previous_response_not_found",
            "message": "Previous response with id 'resp_abc' not found.", "param": "previous_response_id"}


async def assert_still_usable(client: RawClient) -> None:
    events = await client.turn(create("still there?"))
    assert events[-1]["type"] == "response.completed"


async def test_tv3_unknown_previous_id_is_exactly_j1_and_the_socket_stays_open(client: RawClient) -> None:
    events = await client.turn(create("hi", previous_response_id="resp_abc"))
    assert events == [{"type": "error", "status": 400, "error": J1_ERROR}]
    await assert_still_usable(client)


async def test_tv3_on_a_named_lane_the_error_names_the_lane(client: RawClient) -> None:
    events = await client.turn(create("hi", previous_response_id="resp_abc", stream_id="main"))
    assert events == [{"type": "error", "status": 400, "stream_id": "main", "error": J1_ERROR}]


async def test_tv4_failed_same_lane_continuation_evicts_the_parent(client: RawClient) -> None:
    r1 = (await client.turn(create("first")))[-1]["response"]["id"]
    bad = await client.turn(create("x", previous_response_id=r1, max_output_tokens=-1))
    assert len(bad) == 1 and bad[0]["type"] == "error" and bad[0]["status"] == 400
    assert bad[0]["error"]["param"] == "max_output_tokens"
    assert bad[0]["error"]["type"] == "invalid_request_error"
    retry = await client.turn(create("retry", previous_response_id=r1))
    assert retry == [{"type": "error", "status": 400, "error": {
        "type": "invalid_request_error", "code": "previous_response_not_found",
        "message": f"Previous response with id '{r1}' not found.", "param": "previous_response_id"}}]


async def test_a_failed_cross_lane_fork_keeps_the_shared_parent(client: RawClient) -> None:
    r1 = (await client.turn(create("first", stream_id="a")))[-1]["response"]["id"]
    bad = await client.turn(create("x", previous_response_id=r1, stream_id="b", max_output_tokens=3))
    assert bad[0]["type"] == "error" and bad[0]["stream_id"] == "b"
    ok = await client.turn(create("again", previous_response_id=r1, stream_id="a"))
    assert ok[-1]["type"] == "response.completed"


async def test_response_failed_on_a_continuation_evicts_the_parent(client: RawClient) -> None:
    r1 = (await client.turn(create("first")))[-1]["response"]["id"]
    failed = await client.turn(create("/fail", previous_response_id=r1))
    assert failed[-1]["type"] == "response.failed"
    again = await client.turn(create("x", previous_response_id=r1))
    assert again[0]["error"]["code"] == "previous_response_not_found"


async def test_malformed_json_gets_an_error_event(client: RawClient) -> None:
    await client.send("{nope")
    event = await client.recv()
    assert event["type"] == "error" and event["error"]["type"] == "invalid_request_error"
    assert event["error"]["code"] == "invalid_json"
    await assert_still_usable(client)


async def test_unknown_event_type_gets_an_invalid_request_error(client: RawClient) -> None:
    await client.send({"type": "session.update"})
    event = await client.recv()
    assert event["error"]["type"] == "invalid_request_error" and event["error"]["param"] == "type"
    await assert_still_usable(client)


@pytest.mark.parametrize("field", ["stream", "background"])
async def test_stream_and_background_are_rejected(client: RawClient, field: str) -> None:
    events = await client.turn(create("x", **{field: True}))
    assert events[0]["type"] == "error" and events[0]["error"]["param"] == field
    await assert_still_usable(client)


async def test_missing_model_is_rejected(client: RawClient) -> None:
    await client.send({"type": "response.create", "input": "x"})
    event = await client.recv()
    assert event["error"]["code"] == "missing_required_parameter" and event["error"]["param"] == "model"


async def test_binary_frames_are_rejected(client: RawClient) -> None:
    await client.ws.send(b"\x00\x01")
    assert (await client.recv())["type"] == "error"
    await assert_still_usable(client)


@pytest.mark.parametrize(("code", "status", "error_type"), [
    ("rate_limit_exceeded", 429, "rate_limit_error"),
    ("server_error", 500, "server_error"),
    ("previous_response_not_found", 400, "invalid_request_error"),
    ("context_length_exceeded", 400, "invalid_request_error"),
])
async def test_error_directive_answers_with_that_error(client: RawClient, code: str, status: int,
                                                      error_type: str) -> None:
    events = await client.turn(create(f"please /error {code}", stream_id="l"))
    assert len(events) == 1
    assert events[0]["error"]["code"] == code
    assert events[0]["status"] == status and events[0]["error"]["type"] == error_type
    assert events[0]["stream_id"] == "l"
    assert text_of(await client.turn(create("ok")))

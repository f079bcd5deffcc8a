"""A bad client frame gets one `error` event, leaves no traceback, and the socket stays usable.

Both faces: the browser socket (through its conversation hub) and the gateway (`/v1/responses`).
What a flood of bad frames writes is bounded: one `ErrorEvent` per socket and code, with a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import pytest_asyncio

from sessions_app.models import ApiToken, ErrorEvent, ResponseRecord
from tests.relay.conftest import Socket, db, eventually, final

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024
ANSWERS = {"error", "response.steer.failed"}
CREATE = '{"type": "response.create", "input": "hi", '


def tracebacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


async def answer(socket: Socket, within: float = 10.0) -> dict[str, Any]:
    """The socket's answer to a refused frame (switchboard.* control events skipped)."""
    return (await socket.until(lambda e: e["type"] in ANSWERS, within))[-1]


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


@pytest_asyncio.fixture(params=["browser", "gateway"])
async def client(request, profile, user, token, conversation_of, open_browser, open_gateway) -> Socket:
    """A socket on either face, owned by `user`."""
    if request.param == "browser":
        conversation = await conversation_of(user)
        socket = await open_browser(user, conversation.pk)
    else:
        socket = await open_gateway(token)
    socket.face = request.param
    return socket


async def send_raw(socket: Socket, *, text: str | None = None, data: bytes | None = None) -> None:
    await socket.communicator.send_to(text_data=text, bytes_data=data)


# (frame as text or bytes, code, status)
BAD_FRAMES: dict[str, tuple[str | bytes, str, int]] = {
    "over the relay's limit": (CREATE + '"x": "' + "y" * (2 * MIB) + '"}', "frame_too_large", 413),
    "over the limit in multi-byte characters": (CREATE + '"x": "' + "é" * (MIB // 2 + 10) + '"}',
                                                "frame_too_large", 413),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "nesting_too_deep", 400),
    "nested 65 deep": (CREATE + '"x": ' + "[" * 64 + "]" * 64 + "}", "nesting_too_deep", 400),
    "NaN": (CREATE + '"temperature": NaN}', "invalid_number", 400),
    "Infinity": (CREATE + '"temperature": Infinity}', "invalid_number", 400),
    "-Infinity": (CREATE + '"temperature": -Infinity}', "invalid_number", 400),
    "1e999": (CREATE + '"temperature": 1e999}', "invalid_number", 400),
    "-1e999": (CREATE + '"temperature": -1e999}', "invalid_number", 400),
    "a 400-digit integer": (CREATE + '"max_output_tokens": 1' + "0" * 399 + "}", "invalid_number", 400),
    "a 5,000-digit integer": (CREATE + '"max_output_tokens": 1' + "0" * 4999 + "}", "invalid_number", 400),
    "an escaped lone surrogate": ('{"type": "response.create", "input": "a\\ud800b"}', "invalid_unicode", 400),
    "a raw lone surrogate": ('{"type": "response.create", "input": "a\ud800b"}', "invalid_unicode", 400),
    "a surrogate in a key": ('{"type": "response.create", "input": "hi", "metadata": {"\\udc00": "v"}}',
                             "invalid_unicode", 400),
    "a NUL character": ('{"type": "response.create", "input": "a\\u0000b"}', "invalid_unicode", 400),
    "binary, not UTF-8": (b'{"type": "response.create", "input": "\xff\xfe"}', "invalid_json", 400),
    "binary UTF-16": ('{"type": "response.create", "input": "hi"}'.encode("utf-16"), "invalid_json", 400),
    "binary with a BOM": (b"\xef\xbb\xbf" + b'{"type": "response.create", "input": "hi"}', "invalid_json", 400),
    "an item type that is an object": (json.dumps({"type": "response.create", "input": [{"type": {"a": 1}}]}),
                                       "invalid_type", 400),
    "a role that is a list": (json.dumps({"type": "response.create", "input": [{"role": ["user"], "content": "x"}]}),
                              "invalid_type", 400),
    "a model that is a number": (json.dumps({"type": "response.create", "input": "hi", "model": 5}),
                                 "invalid_type", 400),
    "a huge unknown type": (json.dumps({"type": "z" * 500_000}), "unknown_event_type", 400),
    "a type that is an object": (json.dumps({"type": {"nested": [1, 2, 3]}}), "unknown_event_type", 400),
    "metadata that is a list": (json.dumps({"type": "response.create", "input": "hi", "metadata": [1]}),
                                "invalid_type", 400),
    "a steer without a target": (json.dumps({"type": "response.steer", "input": "x"}),
                                 "missing_required_parameter", 400),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_a_bad_frame_gets_its_error_and_the_socket_stays_usable(name, client, caplog):
    frame, code, status = BAD_FRAMES[name]
    if isinstance(frame, bytes):
        await send_raw(client, data=frame)
    else:
        await send_raw(client, text=frame)
    error = await answer(client)
    assert error["type"] == "error"
    assert (error["error"]["code"], error["status"]) == (code, status), error
    assert error["error"]["type"] == "invalid_request_error"
    assert len(json.dumps(error)) < 1000  # nothing of the frame is echoed at length
    assert final(await client.turn("still here?"))["type"] == "response.completed"
    assert not tracebacks(caplog)
    await client.close()
    rows = await eventually(lambda: list(ErrorEvent.objects.filter(code=code)))
    assert [(r.source, r.count) for r in rows] == [("client", 1)]
    # Nothing refused was recorded as a request: only the final turn.
    assert await db(ResponseRecord.objects.count)() == 1


async def test_a_gateway_create_naming_a_conversation_that_is_not_a_uuid_is_not_found(profile, token, open_gateway,
                                                                                      caplog):
    socket = await open_gateway(token)
    await socket.send({"type": "response.create", "input": "hi", "metadata": {"switchboard_conversation": "nope"}})
    error = await answer(socket)
    assert (error["error"]["code"], error["status"]) == ("conversation_not_found", 404)
    assert final(await socket.turn("still here?"))["type"] == "response.completed"
    assert not tracebacks(caplog)


async def test_a_thousand_garbage_frames_write_a_bounded_number_of_rows(client, caplog):
    kinds = ["{garbage", CREATE + '"t": NaN}', json.dumps({"type": "nope"})]
    for i in range(1000):
        await send_raw(client, text=kinds[i % 3])
    answers = [await answer(client) for _ in range(1000)]
    assert {a["error"]["code"] for a in answers} == {"invalid_json", "invalid_number", "unknown_event_type"}
    assert final(await client.turn("still here?"))["type"] == "response.completed"
    await client.close()

    def counted():
        rows = list(ErrorEvent.objects.filter(source=ErrorEvent.Source.CLIENT))
        return rows if sum(r.count for r in rows) == 1000 else None

    rows = await eventually(counted)
    assert rows, list(ErrorEvent.objects.values_list("code", "count"))
    assert len(rows) == 3
    assert {r.code: r.count for r in rows} == {"invalid_json": 334, "invalid_number": 333, "unknown_event_type": 333}
    assert all(r.last_seen_at is not None and r.last_seen_at >= r.created_at for r in rows)
    assert not tracebacks(caplog)


async def test_counts_reach_the_row_while_the_socket_stays_open(client):
    for _ in range(5):
        await send_raw(client, text="{garbage")
        await answer(client)

    def counted():
        row = ErrorEvent.objects.filter(code="invalid_json").first()
        return row if row is not None and row.count == 5 else None

    row = await eventually(counted, within=5)  # flushed within about a second, without closing
    assert row is not None and row.raw["error"]["code"] == "invalid_json"
    assert final(await client.turn("still here?"))["type"] == "response.completed"


async def test_a_viewers_refusals_are_aggregated_too(profile, user, staff_user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    viewer = await open_browser(staff_user, conversation.pk)
    for _ in range(20):
        await viewer.send({"type": "response.create", "input": "let me in"})
        assert (await answer(viewer))["error"]["code"] == "read_only"
    await viewer.close()
    rows = await eventually(lambda: [r for r in ErrorEvent.objects.filter(code="read_only") if r.count == 20])
    assert len(rows) == 1 and await db(ErrorEvent.objects.count)() == 1


async def test_relay_errors_stay_one_row_each(client, sim):
    for _ in range(3):
        error = final(await client.turn("/error server_error"))
        assert error["type"] == "error"
    assert final(await client.turn("still here?"))["type"] == "response.completed"
    await client.close()
    rows = await eventually(lambda: list(ErrorEvent.objects.filter(source=ErrorEvent.Source.UPSTREAM)))
    await asyncio.sleep(0.2)
    rows = await db(lambda: list(ErrorEvent.objects.filter(source=ErrorEvent.Source.UPSTREAM)))()
    assert len(rows) == 3 and all(r.count == 1 for r in rows)

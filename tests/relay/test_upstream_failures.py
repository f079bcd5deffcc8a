"""Upstream errors, drops, the connection limit, unreachable and refusing upstreams, protocol violations."""

from __future__ import annotations

import asyncio
import socket as sockets

import pytest
from websockets.asyncio.server import serve

from sessions_app.models import ErrorEvent, ResponseRecord, UpstreamConnection

from .conftest import db, final, types

pytestmark = pytest.mark.django_db(transaction=True)


def rows(conversation):
    def read():
        return (
            list(ResponseRecord.objects.filter(conversation=conversation).order_by("sent_at", "pk")),
            list(ErrorEvent.objects.filter(conversation=conversation).order_by("created_at", "pk")),
            list(UpstreamConnection.objects.filter(conversation=conversation).order_by("opened_at", "pk")),
        )

    return db(read)()


async def point_profile_at(profile, url: str, key: str | None = None) -> None:
    def update():
        profile.websocket_url = url
        if key is not None:
            profile.set_api_key(key)
        profile.save()

    await db(update)()


@pytest.mark.parametrize("code", [
    "previous_response_not_found", "websocket_stream_limit_reached", "invalid_stream_id", "rate_limit_exceeded",
    "server_error", "websocket_connection_limit_reached",
])
async def test_each_documented_upstream_error_is_relayed_and_recorded(
    code, profile, user, conversation_of, open_browser
):
    # The two "cache is gone" codes, and rate limits on the browser face, are recovered from by default
    # (tests/resilience/, tests/relay/test_stop.py): relayed only without.
    conversation = await conversation_of(user)
    if code in ("previous_response_not_found", "websocket_connection_limit_reached", "rate_limit_exceeded"):
        await db(type(conversation).objects.filter(pk=conversation.pk).update)(recovery_enabled=False)
    socket = await open_browser(user, conversation.pk)
    events = await socket.turn(f"please /error {code}")
    error = final(events)
    assert error["type"] == "error" and error["error"]["code"] == code
    assert "response.created" not in types(events)
    if code == "websocket_connection_limit_reached":
        closed = await socket.until(lambda e: e["type"] == "switchboard.upstream_closed")
        assert closed[-1] == {"type": "switchboard.upstream_closed", "reason": "connection_limit", "code": 1000}
    again = await socket.turn("still there?")  # the socket stays usable
    assert final(again)["type"] == "response.completed"
    await socket.close()

    records, errors, connections = await rows(conversation)
    assert [r.status for r in records] == ["failed", "completed"]
    [row] = errors
    assert (row.source, row.code, row.response_id, row.status) == ("upstream", code, records[0].pk, error["status"])
    assert row.raw == error
    if code == "websocket_connection_limit_reached":
        assert [c.close_reason for c in connections] == ["connection_limit", "client_left"]


async def test_an_unknown_previous_response_is_refused_as_the_upstream_would(profile, user, conversation_of,
                                                                              open_browser):
    """The relay checks every id against the user's records (tests/security/test_ownership.py) and answers
    an unknown one with the upstream's own error, before anything is recorded or sent."""
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    error = final(await socket.turn("hi", previous_response_id="resp_unknown", stream_id="main"))
    assert error["error"]["code"] == "previous_response_not_found" and error["stream_id"] == "main"
    await socket.close()
    records, [row], connections = await rows(conversation)
    assert records == [] and connections == []
    assert (row.source, row.code, row.stream_id) == ("client", "previous_response_not_found", "main")


async def test_failed_and_incomplete_responses_are_recorded(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    assert final(await socket.turn("/fail"))["type"] == "response.failed"
    assert final(await socket.turn("tell me more /incomplete"))["type"] == "response.incomplete"
    await socket.close()
    (failed, incomplete), errors, _ = await rows(conversation)
    assert failed.status == "failed" and failed.total_tokens is not None
    assert incomplete.status == "incomplete" and incomplete.incomplete_reason == "max_output_tokens"
    assert [(e.source, e.code, e.response_id) for e in errors] == [("upstream", "server_error", failed.pk)]


async def test_a_drop_mid_response_fails_it_tells_the_client_and_the_next_turn_reconnects(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    events = await socket.turn("tell me a story /drop")
    assert "response.output_text.delta" in types(events)
    error = final(events)
    assert error["error"]["code"] == "upstream_disconnected" and error["status"] == 502
    closed = await socket.until(lambda e: e["type"] == "switchboard.upstream_closed")
    assert closed[-1] == {"type": "switchboard.upstream_closed", "reason": "upstream_error", "code": 1006}
    status = await socket.until(lambda e: e["type"] == "switchboard.status")
    assert status[-1]["status"] == "failed" and status[-1]["upstream"] == "disconnected"
    assert final(await socket.turn("again"))["type"] == "response.completed"
    await socket.close()

    (dropped, after), errors, connections = await rows(conversation)
    assert dropped.status == "failed" and dropped.response_id and dropped.first_text_at is not None
    assert after.status == "completed" and after.connection_id != dropped.connection_id
    assert [(e.source, e.code, e.response_id) for e in errors] == [("relay", "upstream_disconnected", dropped.pk)]
    assert [(c.close_reason, c.close_code) for c in connections] == [("upstream_error", 1006), ("client_left", 1000)]


@pytest.mark.parametrize("simulator_config", [{"connection_limit_seconds": 1.0}])
async def test_the_connection_limit_closes_the_upstream_and_the_next_turn_is_resent_on_a_new_one(
    simulator_config, profile, user, conversation_of, open_browser
):
    # Issue #5: the client no longer sees websocket_connection_limit_reached; the turn is resent.
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    assert final(await socket.turn("one"))["type"] == "response.completed"
    await asyncio.sleep(1.1)
    limited = await socket.turn("two")
    assert final(limited)["type"] == "response.completed" and "error" not in types(limited)
    assert "switchboard.upstream_closed" in types(limited) and "switchboard.recovered" in types(limited)
    await socket.close()

    records, errors, connections = await rows(conversation)
    assert [r.status for r in records] == ["completed", "failed", "completed"]
    assert records[1].response_payload == {"superseded_by": "recovery"}
    assert [c.close_reason for c in connections] == ["connection_limit", "client_left"]
    assert [(e.code, e.response_id) for e in errors] == [("websocket_connection_limit_reached", records[1].pk)]


def free_port() -> int:
    with sockets.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_upstream_is_an_error_event_and_a_row(profile, user, conversation_of, open_browser):
    await point_profile_at(profile, f"ws://127.0.0.1:{free_port()}/v1/responses")
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    error = final(await socket.turn("hi"))
    assert error["error"]["code"] == "upstream_unavailable" and error["status"] == 503
    await socket.close()
    [record], [row], [connection] = await rows(conversation)
    assert record.status == "failed"
    assert (row.source, row.code, row.response_id) == ("relay", "upstream_unavailable", record.pk)
    assert connection.close_reason == "handshake_failed"


async def test_a_wrong_key_is_a_rejected_handshake(profile, user, conversation_of, open_browser, sim):
    await point_profile_at(profile, sim.url, key="sk-wrong-key-000000")
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    error = final(await socket.turn("hi"))
    assert (error["error"]["code"], error["status"]) == ("upstream_rejected", 502)
    assert "401" in error["error"]["message"]
    await socket.close()
    [record], [row], [connection] = await rows(conversation)
    assert row.code == "upstream_rejected" and connection.close_reason == "handshake_failed"
    assert connection.close_code == 401


@pytest.mark.parametrize("status", [403, 429])
async def test_refused_handshakes_are_reported(status, profile, user, conversation_of, open_browser):
    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0,
                     process_request=lambda conn, req: conn.respond(status, "no\n")) as server:
        port = server.sockets[0].getsockname()[1]
        await point_profile_at(profile, f"ws://127.0.0.1:{port}/v1/responses")
        conversation = await conversation_of(user)
        socket = await open_browser(user, conversation.pk)
        error = final(await socket.turn("hi"))
        await socket.close()
    assert error["error"]["code"] == "upstream_rejected"
    assert error["status"] == (429 if status == 429 else 502)


async def test_an_upstream_protocol_violation_fails_the_response_and_closes_that_socket(
    profile, user, conversation_of, open_browser
):
    async def garbage(ws):
        await ws.recv()
        await ws.send("this is not json")
        await ws.wait_closed()

    async with serve(garbage, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        await point_profile_at(profile, f"ws://127.0.0.1:{port}/v1/responses")
        conversation = await conversation_of(user)
        socket = await open_browser(user, conversation.pk)
        await socket.send({"type": "response.create", "input": "hi"})
        events = await socket.until(lambda e: e["type"] == "switchboard.upstream_closed")
        await socket.close()
    # One error for the request it ended (tests/resilience/test_bad_upstreams.py: every kind of bad frame).
    errors = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert errors == ["upstream_protocol_error"]
    [record], rows_, [connection] = await rows(conversation)
    assert record.status == "failed" and connection.close_reason == "upstream_error"
    assert connection.close_text == "upstream_protocol_error"
    assert [(e.source, e.code, e.response_id) for e in rows_] == [("upstream", "upstream_protocol_error", None),
                                                                  ("relay", "upstream_protocol_error", record.pk)]
    assert rows_[0].raw == {"frame": "this is not json"}


async def test_continuing_on_a_new_upstream_socket_replays_the_context_from_records(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("remember: orca"))
    assert final(await socket.turn("/drop", previous_response_id=first["response"]["id"]))["type"] == "error"
    # The upstream cache died with its socket; the relay sends the recorded context instead.
    events = await socket.turn("what did I ask you to remember?", previous_response_id=first["response"]["id"])
    assert final(events)["type"] == "response.completed"
    assert "You asked me to remember: orca." in "".join(
        e["delta"] for e in events if e["type"] == "response.output_text.delta")
    await socket.close()
    records, _, _ = await rows(conversation)
    replay = records[-1]
    assert replay.origin == "recovery_replay" and replay.parent_id == records[0].pk
    assert replay.previous_response_id == "" and "previous_response_id" not in replay.request_payload
    assert [i["type"] for i in replay.request_payload["input"]] == ["message", "message", "message"]


async def test_without_recovery_a_stale_continuation_gets_the_upstreams_error(
    profile, user, conversation_of, open_browser
):
    conversation = await conversation_of(user)

    def no_recovery():
        conversation.recovery_enabled = False
        conversation.save()

    await db(no_recovery)()
    socket = await open_browser(user, conversation.pk)
    first = final(await socket.turn("hello"))
    await socket.close()
    socket = await open_browser(user, conversation.pk)  # a new client socket: a new upstream socket
    error = final(await socket.turn("again", previous_response_id=first["response"]["id"]))
    assert error["error"]["code"] == "previous_response_not_found"


async def test_refused_handshakes_retried_at_once_do_not_count_as_held_upstream_sockets(
        profile, user, open_gateway):
    """A refused handshake's row is ended before the client hears of it: a client retrying at once is told
    the upstream refused again, not that it holds too many upstream sockets (rows whose end was still
    queued counted as held)."""
    from sessions_app.models import ApiToken, UserLimits

    await point_profile_at(profile, profile.websocket_url, key="sk-wrong-key-000000")
    await db(lambda: UserLimits.objects.create(user=user, max_upstream_sockets=2))()
    socket = await open_gateway(await db(lambda: ApiToken.issue(user=user)[1])())
    codes = [final(await socket.turn("hi", model="gpt-5.5"))["error"]["code"] for _ in range(6)]
    await socket.close()
    assert codes == ["upstream_rejected"] * 6
    assert await db(lambda: UpstreamConnection.objects.filter(closed_at__isnull=True).count())() == 0

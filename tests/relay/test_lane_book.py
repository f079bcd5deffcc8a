"""relay_lanes.LaneBook and the other pure pieces of the relay (no sockets, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from sessions_app.compaction import start_from_window
from sessions_app.relay.lanes import LaneBook, Ticket
from sessions_app.upstream import UpstreamTarget, auth_headers, compact_url


def ticket(pk, lane=None, previous=None, kind="create"):
    return Ticket(record_pk=pk, kind=kind, stream_id=lane, previous_response_id=previous, sent_at=datetime.now(UTC))


def created(response_id, lane=None, previous=None):
    event = {"type": "response.created", "response": {"id": response_id, "previous_response_id": previous}}
    return {**event, "stream_id": lane} if lane else event


def completed(response_id, lane=None):
    event = {"type": "response.completed", "response": {"id": response_id}}
    return {**event, "stream_id": lane} if lane else event


def test_the_oldest_waiting_create_of_a_lane_owns_its_next_response():
    book = LaneBook()
    first, second, other = ticket(1), ticket(2), ticket(3, "b")
    for t in (first, second, other):
        book.add_create(t)
    assert book.route(created("resp_b", "b")).ticket is other
    assert book.route(created("resp_1")).ticket is first
    assert book.route({"type": "response.output_text.delta", "delta": "x"}).ticket is first
    assert book.route({"type": "response.output_text.delta", "stream_id": "b"}).ticket is other
    routed = book.route(completed("resp_1"))
    assert routed.ticket is first and routed.ended
    assert book.route(created("resp_2")).ticket is second
    assert book.seen == {"resp_b": (3, "b"), "resp_1": (1, None), "resp_2": (2, None)}


def test_an_error_ends_the_oldest_waiting_create_of_its_lane_only():
    book = LaneBook()
    running, waiting = ticket(1, "a"), ticket(2, "a")
    book.add_create(running)
    book.add_create(waiting)
    book.route(created("resp_1", "a"))
    routed = book.route({"type": "error", "stream_id": "a", "error": {"code": "previous_response_not_found"}})
    assert routed.ticket is waiting and routed.ended
    # Nothing waits on the default lane: a connection-level error ends nothing.
    assert book.route({"type": "error", "error": {"code": "server_error"}}).ended is False
    assert book.busy and book.open_tickets() == [running]


def test_a_steer_owns_the_successor_that_continues_the_steered_response():
    book = LaneBook()
    book.add_create(ticket(1))
    book.route(created("resp_1"))
    steer = ticket(2, previous="resp_1", kind="steer")
    book.add_steer(steer)
    book.add_create(queued := ticket(3))
    book.route({"type": "response.steer.accepted", "steer": {"id": "steer_1", "previous_response_id": "resp_1"}})
    assert steer.steer_accepted
    book.route({"type": "response.incomplete", "response": {"id": "resp_1"}})
    assert book.route(created("resp_2", previous="resp_1")).ticket is steer
    assert book.route(created("resp_3", previous="resp_2")).ticket is queued


def test_a_failed_steer_ends_and_an_unowned_response_is_still_tracked():
    book = LaneBook()
    steer = ticket(1, previous="resp_x", kind="steer")
    book.add_steer(steer)
    routed = book.route({"type": "response.steer.failed", "steer": {"previous_response_id": "resp_x"},
                         "error": {"code": "response_not_found"}})
    assert routed.ticket is steer and routed.ended
    stray = book.route(created("resp_9", "z"))
    assert stray.bound and stray.ticket.record_pk is None and stray.ticket.kind == "discovered"
    assert [t.response_id for t in book.clear()] == ["resp_9"] and not book.busy


def test_a_stray_terminal_of_an_unknown_id_does_not_hide_the_running_response():
    book = LaneBook()
    running = ticket(1)
    book.add_create(running)
    assert book.route(created("resp_1")).ticket is running
    stray = book.route(completed("resp_ghost"))
    assert stray.ended and stray.ticket.kind == "discovered"
    assert book.route({"type": "response.output_text.delta", "delta": "x"}).ticket is running
    assert book.busy and book.clear() == [running]  # a drop now still ends it


def test_auth_headers_per_style_and_a_target_never_shows_them():
    assert auth_headers(auth_style="bearer", api_key="sk-1", extra={"OpenAI-Project": "p"}) == {
        "OpenAI-Project": "p", "Authorization": "Bearer sk-1"}
    assert auth_headers(auth_style="azure_api_key", api_key="k") == {"api-key": "k"}
    assert auth_headers(auth_style="none", api_key="k") == {}
    target = UpstreamTarget(url="wss://x/v1/responses", headers={"Authorization": "Bearer sk-secret"})
    assert "sk-secret" not in repr(target)


def test_the_compact_url_follows_the_socket_url():
    assert compact_url("wss://api.openai.com/v1/responses") == "https://api.openai.com/v1/responses/compact"
    assert compact_url("ws://127.0.0.1:8765/v1/responses?model=x") == "http://127.0.0.1:8765/v1/responses/compact?model=x"


def test_a_window_starts_a_new_chain():
    window = [{"type": "compaction", "encrypted_content": "gAAAAB"}]
    create = {"type": "response.create", "previous_response_id": "resp_1", "input": "next"}
    assert start_from_window(create, window) == {
        "type": "response.create",
        "input": [window[0], {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "next"}]}],
    }

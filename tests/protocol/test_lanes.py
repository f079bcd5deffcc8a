from __future__ import annotations

import pytest

from sessions_app.protocol.errors import ProtocolError
from sessions_app.protocol.lanes import Lane, LaneTable, Queued, Started


def test_first_create_on_a_lane_starts() -> None:
    lanes = LaneTable()
    assert lanes.submit("a", "t1") == Started("a")
    assert lanes.state("a") is Lane.IN_FLIGHT
    assert lanes.state(None) is Lane.IDLE


def test_second_create_on_a_busy_lane_waits_its_turn() -> None:
    lanes = LaneTable()
    lanes.submit("a", "t1")
    assert lanes.submit("a", "t2") == Queued("a", position=1)
    assert lanes.submit("a", "t3") == Queued("a", position=2)
    started = lanes.finish("a")
    assert [s.ticket for s in started] == ["t2"]
    assert [s.ticket for s in lanes.finish("a")] == ["t3"]
    assert lanes.finish("a") == ()
    assert lanes.state("a") is Lane.IDLE


def test_lanes_run_concurrently_and_the_default_lane_is_none() -> None:
    lanes = LaneTable()
    assert isinstance(lanes.submit(None, 1), Started)
    assert isinstance(lanes.submit("a", 2), Started)
    assert isinstance(lanes.submit("b", 3), Started)
    assert lanes.in_flight == 3
    assert lanes.named_lanes == {"a", "b"}


def test_at_most_sixteen_in_flight_then_first_come_first_served() -> None:
    lanes = LaneTable()
    for i in range(16):
        assert isinstance(lanes.submit(f"l{i}", i), Started)
    assert lanes.submit("l16", 16) == Queued("l16", position=1)
    assert lanes.submit("l17", 17) == Queued("l17", position=1)
    assert lanes.in_flight == 16 and lanes.queued == 2
    assert [s.ticket for s in lanes.finish("l3")] == [16]
    assert [s.ticket for s in lanes.finish("l4")] == [17]
    assert lanes.in_flight == 16


def test_a_freed_slot_goes_to_the_oldest_waiting_request() -> None:
    lanes = LaneTable(max_in_flight=2)
    lanes.submit("a", "a1")
    lanes.submit("b", "b1")
    lanes.submit("c", "c1")  # waits for capacity
    lanes.submit("a", "a2")  # waits for lane a (and capacity)
    assert [s.ticket for s in lanes.finish("a")] == ["c1"]
    assert [s.ticket for s in lanes.finish("b")] == ["a2"]


def test_thirty_third_named_lane_is_refused_with_j3() -> None:
    lanes = LaneTable()
    for i in range(32):
        lanes.submit(f"agent_{i + 1}")
        lanes.finish(f"agent_{i + 1}")
    with pytest.raises(ProtocolError) as info:
        lanes.submit("agent_33")
    assert info.value.code == "websocket_stream_limit_reached"
    assert info.value.to_event()["stream_id"] == "agent_33"
    # Reusing a known lane and the default lane are still fine.
    assert isinstance(lanes.submit("agent_1"), Started)
    assert isinstance(lanes.submit(None), Started)


def test_finish_on_an_idle_lane_is_a_bug() -> None:
    with pytest.raises(KeyError):
        LaneTable().finish("a")


def test_observe_moves_lanes_on_events_that_end_a_request() -> None:
    lanes = LaneTable()
    lanes.submit("a", "a1")
    lanes.submit("a", "a2")
    assert lanes.observe({"type": "response.output_text.delta", "stream_id": "a"}) == ()
    assert [s.ticket for s in lanes.observe({"type": "response.completed", "stream_id": "a"})] == ["a2"]
    assert lanes.observe({"type": "error", "stream_id": "a"}) == ()
    assert lanes.state("a") is Lane.IDLE
    # A connection-level error on an idle lane changes nothing.
    assert lanes.observe({"type": "error"}) == ()


def test_drain_forgets_queued_requests() -> None:
    lanes = LaneTable()
    lanes.submit("a", 1)
    lanes.submit("a", 2)
    lanes.submit("a", 3)
    assert lanes.drain() == [2, 3]
    assert lanes.finish("a") == ()

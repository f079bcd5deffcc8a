"""Live fan-out on the configured channel layer (in-memory, or Redis when REDIS_URL is set):
nobody watching costs nothing, and a watcher arriving mid-response gets it whole."""

from __future__ import annotations

import asyncio
import uuid

from sessions_app.live import fanout


async def _until(check, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_unwatched_publisher_sends_nothing_and_a_new_watcher_gets_the_backlog_first():
    layer = fanout.layer()
    conversation = uuid.uuid4()
    in_flight: list[str] = []
    publisher = fanout.Publisher(conversation, layer, backlog=lambda: list(in_flight))
    for frame in ("a", "b"):
        in_flight.append(frame)
        publisher.publish(frame)
    await _until(lambda: not publisher.watched)  # the first check: no members
    in_flight.append("c")
    publisher.publish("c")
    assert publisher._outbox == [] and publisher._timer is None  # unwatched: nothing queued, nothing scheduled

    received: list[str] = []

    async def deliver(frames: list[str]) -> None:
        received.extend(frames)

    async def on_gap() -> None:
        raise AssertionError("no batch may be missing")

    subscriber = fanout.Subscriber(conversation, layer, deliver=deliver, on_gap=on_gap)
    await subscriber.start()  # asks this process's publishers at once
    await _until(lambda: publisher.watched)
    publisher.publish("d")
    await _until(lambda: received == ["a", "b", "c", "d"])
    await subscriber.stop()
    await publisher.close()


async def test_a_hubs_own_subscriber_does_not_count_as_a_watcher():
    layer = fanout.layer()
    conversation = uuid.uuid4()
    publisher = fanout.Publisher(conversation, layer)

    async def ignore(*args) -> None:
        return None

    own = fanout.Subscriber(conversation, layer, deliver=ignore, on_gap=ignore, skip_origin=publisher.origin)
    await own.start()
    publisher.own_channel = own.channel
    publisher.publish("x")
    await _until(lambda: not publisher.watched)
    group = fanout.group_name(conversation)
    assert (await fanout.group_members(layer, [group]))[group] == {own.channel}  # a member, but its own
    await own.stop()
    await publisher.close()


async def test_one_check_per_loop_covers_every_publisher(monkeypatch):
    layer = fanout.layer()
    asked: list[list[str]] = []
    real = fanout.group_members

    async def counted(channel_layer, groups):
        asked.append(list(groups))
        return await real(channel_layer, groups)

    monkeypatch.setattr(fanout, "group_members", counted)
    conversations = [uuid.uuid4() for _ in range(5)]
    publishers = [fanout.Publisher(conversation, layer) for conversation in conversations]
    for publisher in publishers:
        publisher.publish("x")
    await _until(lambda: not any(p.watched for p in publishers))
    assert len(asked) <= 2 and set(asked[-1]) == {fanout.group_name(c) for c in conversations}

    async def ignore(*args) -> None:
        return None

    watcher = fanout.Subscriber(conversations[2], layer, deliver=ignore, on_gap=ignore)
    await watcher.start()  # has the check run at once: only that conversation's publisher is watched
    await _until(lambda: publishers[2].watched)
    assert [p.watched for p in publishers] == [False, False, True, False, False]
    await watcher.stop()
    for publisher in publishers:
        await publisher.close()

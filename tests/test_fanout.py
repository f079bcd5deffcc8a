"""Live fan-out on the configured channel layer (in-memory, or Redis when REDIS_URL is set):
nobody watching costs nothing, and a watcher arriving mid-response gets it whole. And on a private Redis
killed and started again: subscribers pause and resume, publishing never raises, two warnings in all."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid

import pytest

from sessions_app.live import fanout
from sessions_app.live.layer_health import Backoff, health
from sessions_app.live.subscriber import Subscriber


async def _until(check, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _watched_whole(conversation, layer, publisher, then: str, expected: list[str]) -> None:
    """A watcher starting in this process has `publisher` watched; it gets `expected` after `then` is published,
    with no batch missing."""
    received: list[str] = []

    async def deliver(frames: list[str]) -> None:
        received.extend(frames)

    async def on_gap() -> None:
        raise AssertionError("no batch may be missing")

    subscriber = Subscriber(conversation, layer, deliver=deliver, on_gap=on_gap)
    await subscriber.start()  # asks this process's publishers at once
    await _until(lambda: publisher.watched)
    publisher.publish(then)
    await _until(lambda: received == expected)
    await subscriber.stop()


def _counted_checks(monkeypatch) -> list[list[str]]:
    """The groups of every check of who watches, from now on (the real check, counted)."""
    asked: list[list[str]] = []
    real = fanout.group_members

    async def counted(channel_layer, groups):
        asked.append(list(groups))
        return await real(channel_layer, groups)

    monkeypatch.setattr(fanout, "group_members", counted)
    return asked


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

    await _watched_whole(conversation, layer, publisher, "d", ["a", "b", "c", "d"])
    await publisher.close()


async def test_a_new_conversations_publisher_starts_unwatched_and_asks_nothing_of_its_own(monkeypatch):
    """Nobody can know a new conversation's id yet: its publisher sends nothing and waits for the next round's
    check. A watcher that appears (here, in this process) still gets the response whole."""
    layer = fanout.layer()
    asked = _counted_checks(monkeypatch)
    older = fanout.Publisher(uuid.uuid4(), layer)
    older.publish("x")  # the loop's watch is running, and has checked
    await _until(lambda: not older.watched)
    checks = len(asked)

    conversation = uuid.uuid4()
    in_flight: list[str] = []
    publisher = fanout.publisher_for(conversation, lambda: list(in_flight), new=True)
    for frame in ("a", "b"):
        in_flight.append(frame)
        publisher.publish(frame)
    assert not publisher.watched and publisher._outbox == [] and publisher._timer is None
    await asyncio.sleep(0.2)
    assert len(asked) == checks  # no check of its own: the next round's (WATCH_CHECK_SECONDS) takes it

    await _watched_whole(conversation, layer, publisher, "c", ["a", "b", "c"])
    await publisher.close()
    await older.close()


async def test_a_hubs_own_subscriber_does_not_count_as_a_watcher():
    layer = fanout.layer()
    conversation = uuid.uuid4()
    publisher = fanout.Publisher(conversation, layer)

    async def ignore(*args) -> None:
        return None

    own = Subscriber(conversation, layer, deliver=ignore, on_gap=ignore, skip_origin=publisher.origin)
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
    asked = _counted_checks(monkeypatch)
    conversations = [uuid.uuid4() for _ in range(5)]
    publishers = [fanout.Publisher(conversation, layer) for conversation in conversations]
    for publisher in publishers:
        publisher.publish("x")
    await _until(lambda: not any(p.watched for p in publishers))
    assert len(asked) <= 2 and set(asked[-1]) == {fanout.group_name(c) for c in conversations}

    async def ignore(*args) -> None:
        return None

    watcher = Subscriber(conversations[2], layer, deliver=ignore, on_gap=ignore)
    await watcher.start()  # has the check run at once: only that conversation's publisher is watched
    await _until(lambda: publishers[2].watched)
    assert [p.watched for p in publishers] == [False, False, True, False, False]
    await watcher.stop()
    for publisher in publishers:
        await publisher.close()


# -- a layer outage: a private Redis killed and started again on its port ---------------------------

@pytest.fixture
def redis_layer(tmp_path):
    """A channels_redis layer on a private redis-server (never the shared one), and that server."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    from channels_redis.core import RedisChannelLayer

    from tests.resilience.test_redis_outage import PrivateRedis

    redis = PrivateRedis(tmp_path)
    redis.start()
    health.down, health.since, health.failures = False, None, 0
    try:
        yield RedisChannelLayer(hosts=[{"address": redis.url, "socket_timeout": None}]), redis
    finally:
        redis.kill()
        health.down, health.since, health.failures = False, None, 0


async def test_a_subscriber_pauses_through_an_outage_and_resumes_in_its_group_again(redis_layer, caplog):
    layer, redis = redis_layer
    conversation = uuid.uuid4()
    received: list[str] = []
    states: list[str] = []

    async def deliver(frames: list[str]) -> None:
        received.extend(frames)

    async def on_gap() -> None:
        states.append("gap")

    async def paused() -> None:
        states.append("paused")

    async def resumed() -> None:
        states.append("resumed")

    subscriber = Subscriber(conversation, layer, deliver=deliver, on_gap=on_gap, on_pause=paused,
                            on_resume=resumed)
    publisher = fanout.Publisher(conversation, layer)
    with caplog.at_level(logging.WARNING, logger="sessions_app.fanout"):
        await subscriber.start()
        publisher.publish("before")
        await _until(lambda: received == ["before"], within=15)

        redis.kill()
        await _until(lambda: states == ["paused"], within=15)
        for _ in range(200):  # publishing into a dead layer never raises, and never piles up
            publisher.publish("during")
        await asyncio.sleep(0.1)
        assert len(publisher._batches) <= 5 and len(publisher._outbox) <= fanout.MAX_BATCH

        redis.start()  # empty: the group is forgotten, the subscriber must join it again
        await _until(lambda: states == ["paused", "resumed"], within=20)
        await _until(lambda: publisher.watched, within=20)
        publisher.publish("after")
        await _until(lambda: received[-1:] == ["after"], within=15)
    await subscriber.stop()
    await publisher.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessions_app.fanout"]
    assert [w.split(" (")[0].split(" after")[0] for w in warnings] == ["Channel layer unavailable",
                                                                       "Channel layer back"], warnings
    assert not any(r.exc_info for r in caplog.records)


def test_backoff_doubles_up_to_its_cap_and_starts_over_when_reset():
    backoff = Backoff(first=0.25, cap=1.0)
    assert [backoff.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.25

"""Group commit of the user's input (recording_groups.Groups), with a write function that records
what it was handed: which creates went out together, and in what order."""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.recording.groups import Groups


class Refused(Exception):
    pass


class Database:
    """Writes groups one at a time, each after `delay`; a statement "bad" is refused, alone or in a group."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.groups: list[list[str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def write_many(self, statements: list[str]) -> list[object]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            self.groups.append(list(statements))
            if "bad" in statements and len(statements) > 1:
                raise Refused("the group's commit")
            return [Refused(s) if s == "bad" else f"written {s}" for s in statements]
        finally:
            self.in_flight -= 1


async def test_a_lone_create_is_written_at_once_and_alone():
    database = Database()
    groups = Groups(database.write_many)
    assert await groups.write("a") == "written a"
    assert await groups.write("b") == "written b"
    assert database.groups == [["a"], ["b"]]


async def test_creates_arriving_during_a_write_go_out_together_next():
    database = Database()
    groups = Groups(database.write_many)
    first = asyncio.ensure_future(groups.write("a"))
    await asyncio.sleep(0)  # "a" is in flight
    rest = [asyncio.ensure_future(groups.write(name)) for name in ("b", "c", "d")]
    assert await asyncio.gather(first, *rest) == ["written a", "written b", "written c", "written d"]
    assert database.groups == [["a"], ["b", "c", "d"]]
    assert database.most_in_flight == 1


async def test_a_refused_create_fails_alone():
    database = Database()
    groups = Groups(database.write_many)
    first = asyncio.ensure_future(groups.write("a"))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(groups.write(name)) for name in ("b", "bad", "c")]
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[:2] == ["written a", "written b"] and results[3] == "written c"
    assert isinstance(results[2], Refused)
    assert database.groups == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]  # the group, then one by one


async def test_a_cancelled_first_create_does_not_strand_the_creates_behind_it():
    database = Database(delay=0.05)
    groups = Groups(database.write_many)
    first = asyncio.ensure_future(groups.write("a"))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(groups.write(name)) for name in ("b", "c")]
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(asyncio.gather(*rest), 2) == ["written b", "written c"]
    assert await asyncio.wait_for(groups.write("d"), 2) == "written d"  # and the groups still run


async def test_a_queued_row_goes_out_with_or_before_what_is_written_after_it():
    """Idle: the queued row goes out at once, the writes behind it next. Busy: they all join the next group
    together. When that group fails, each is written again alone, the queued one first."""
    database = Database()
    groups = Groups(database.write_many)
    queued = groups.queue("conversation")
    assert await asyncio.gather(queued, groups.write("request"), groups.write("upstream")) == [
        "written conversation", "written request", "written upstream"]
    assert database.groups == [["conversation"], ["request", "upstream"]]

    database.groups.clear()
    busy = asyncio.ensure_future(groups.write("other socket's"))
    await asyncio.sleep(0)
    queued = groups.queue("conversation")
    results = await asyncio.gather(busy, queued, groups.write("bad"), groups.write("request"), return_exceptions=True)
    assert results[:2] == ["written other socket's", "written conversation"]
    assert isinstance(results[2], Refused) and results[3] == "written request"
    assert database.groups == [["other socket's"], ["conversation", "bad", "request"],
                               ["conversation"], ["bad"], ["request"]]

"""The usual create goes upstream while its input commits; nothing of its response reaches the client before the
commit (relay/overlap.py). The database is really held: SQLite's write lock, or on PostgreSQL a row lock on the
conversation, which the new record's foreign-key check waits for. The failure path (the database stops after
the send) is tests/resilience/test_recording_outage.py's, on a private PostgreSQL cluster.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from sessions_app.models import ApiToken, ResponseRecord, UpstreamConnection
from tests.held_database import HeldDatabase

from .conftest import db, eventually, final, text_of

pytestmark = pytest.mark.django_db(transaction=True)


def RecordBlock(conversation_id) -> HeldDatabase:  # noqa: N802 (reads as the context manager it returns)
    """Keeps a new response record of `conversation_id` from committing until the block ends."""
    from django.db import connection

    return HeldDatabase(connection.settings_dict, conversation_id=conversation_id)


async def until(check, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_a_continuation_is_sent_before_its_record_commits_and_relayed_only_after(profile, user, sim,
                                                                                      open_gateway):
    _, token = await db(ApiToken.issue)(user=user, name="overlap")
    gateway = await open_gateway(token)
    first = final(await gateway.turn("remember: orca", model="gpt-5.5", store=False))
    conversation_id = await db(lambda: ResponseRecord.objects.get(response_id=first["response"]["id"])
                               .conversation_id)()
    received = len(sim.received_frames)

    async with RecordBlock(conversation_id):
        await gateway.send({"type": "response.create", "model": "gpt-5.5", "store": False,
                            "previous_response_id": first["response"]["id"],
                            "input": "what did I ask you to remember?"})
        await until(lambda: len(sim.received_frames) > received)  # upstream has it; its record cannot commit yet
        # The simulator answers at full speed: the whole response is waiting in the relay, none of it relayed.
        assert await gateway.communicator.receive_nothing(timeout=0.5)
        assert not await db(ResponseRecord.objects.filter(previous_response_id=first["response"]["id"]).exists)()

    events = await gateway.until(lambda e: e["type"] in ("response.completed", "error"))
    assert [e["type"] for e in events][:2] == ["response.created", "response.in_progress"]
    assert final(events)["type"] == "response.completed"
    assert "You asked me to remember: orca." in text_of(events)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # nothing lost while held

    second = await db(lambda: ResponseRecord.objects.get(previous_response_id=first["response"]["id"]))()
    assert second.status == "completed" and second.response_id == final(events)["response"]["id"]
    # One upstream socket carried both: the continuation used its cache, no replay and no resend.
    assert await db(UpstreamConnection.objects.filter(conversation_id=conversation_id).count)() == 1
    assert second.origin == "user" and second.connection_id is not None


@pytest.fixture
def bad_profile(transactional_db):
    """The default profile pointed at a scripted upstream (tests/resilience/bad_upstream.py)."""
    from sessions_app.services import default_profile_sync
    from tests.resilience.bad_upstream import BadUpstream

    with BadUpstream() as bad:
        profile = default_profile_sync()
        profile.websocket_url = bad.url("/ok")
        profile.save()
        yield profile


async def test_a_socket_that_closes_before_answering_ends_the_request_once_its_record_exists(bad_profile, user,
                                                                                            open_gateway):
    async def unvalidated(until: str) -> dict:  # the scripted upstream's events are minimal, not the SDK's shape
        while True:
            event = json.loads((await gateway.communicator.receive_output(10))["text"])
            if event["type"] == until:
                return event

    _, token = await db(ApiToken.issue)(user=user, name="overlap")
    gateway = await open_gateway(token)
    await gateway.send({"type": "response.create", "model": "gpt-5.5", "store": False, "input": "hello"})
    first = await unvalidated("response.completed")
    conversation_id = await db(lambda: ResponseRecord.objects.get(response_id=first["response"]["id"])
                               .conversation_id)()

    async with RecordBlock(conversation_id):
        await gateway.send({"type": "response.create", "model": "gpt-5.5", "store": False,
                            "previous_response_id": first["response"]["id"], "input": "hangup please"})
        assert await gateway.communicator.receive_nothing(timeout=0.5)  # closed upstream; the record is not in yet
    error = await unvalidated("error")
    assert error["error"]["code"] == "upstream_disconnected", error

    def settled():
        rows = list(ResponseRecord.objects.filter(conversation_id=conversation_id).order_by("pk")
                    .values_list("previous_response_id", "status"))
        return rows if all(status not in ("queued", "in_progress") for _, status in rows) else None

    records = await eventually(settled)
    # The request's own record ends failed; no stray record is made for it, none is left queued.
    assert records == [("", "completed"), (first["response"]["id"], "failed")]

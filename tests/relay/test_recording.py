"""The recorder: input committed before it leaves, batches off the hot path, loud overflow."""

from __future__ import annotations

import json
import logging

import pytest
from websockets.asyncio.server import serve

from sessions_app.models import ErrorEvent, Item, ResponseRecord
from sessions_app.recording import ConversationState, Recorder, Writer

from .conftest import db, final

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_users_input_is_committed_before_it_is_sent_upstream(profile, user, conversation_of,
                                                                      open_browser):
    seen_in_db_on_arrival = []

    async def upstream(ws):
        frame = json.loads(await ws.recv())
        text = frame["input"]
        seen_in_db_on_arrival.append(await db(lambda: Item.objects.filter(direction="input", text=text).exists())())
        await ws.close()  # and then die: the input must survive this

    async with serve(upstream, "127.0.0.1", 0) as server:
        def point():
            profile.websocket_url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/responses"
            profile.save()

        await db(point)()
        conversation = await conversation_of(user)
        socket = await open_browser(user, conversation.pk)
        error = final(await socket.turn("a precious thought"))
        await socket.close()
    assert seen_in_db_on_arrival == [True]
    assert error["error"]["code"] == "upstream_disconnected"
    record = await db(lambda: ResponseRecord.objects.get(conversation=conversation))()
    assert record.status == "failed" and record.request_payload["input"] == "a precious thought"


async def test_an_overflowing_queue_is_logged_recorded_and_reported(user, conversation_of, caplog):
    conversation = await conversation_of(user)
    told = []

    async def on_overflow():
        told.append(True)

    recorder = Recorder(writer=Writer(max_pending=2), on_overflow=on_overflow)
    recorder.conversation_id = conversation.pk
    # No await between adds: the writer cannot drain, so the third and fourth ops overflow.
    for status in ("streaming", "idle", "streaming", "idle"):
        recorder.add(ConversationState(conversation.pk, status))
    await recorder.close()
    assert recorder.dropped == 2 and told == [True]
    assert sum("Recorder queue full" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR) == 2
    [row] = await db(lambda: list(ErrorEvent.objects.filter(conversation=conversation)))()
    assert (row.source, row.code) == ("relay", "recording_overflow")
    # What fitted in the queue was written, in order.
    await db(conversation.refresh_from_db)()
    assert conversation.status == "idle"


async def test_ops_are_written_in_batches(user, conversation_of):
    conversation = await conversation_of(user)
    recorder = Recorder(writer=Writer(batch_size=50))
    for i in range(120):
        recorder.add(ConversationState(conversation.pk, "idle", latest_response_id=f"resp_{i}"))
    await recorder.flush()
    await db(conversation.refresh_from_db)()
    assert conversation.latest_response_id == "resp_119"
    await recorder.close()


def read_status_elsewhere(record_pk: int) -> str:
    """Read from a thread of its own: the recorder's thread is the one that is blocked."""
    from django.db import connection

    try:
        return ResponseRecord.objects.get(pk=record_pk).status
    finally:
        connection.close()


async def test_a_blocked_database_does_not_slow_the_stream(profile, user, conversation_of, open_browser):
    import asyncio
    import threading

    from django.db import connection, transaction
    from django.db.models import F

    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk)
    await socket.send({"type": "response.create", "input": "/long 40 /slow 5"})
    started = await socket.until(lambda e: e["type"] == "response.output_text.delta")
    record_pk = await db(lambda: ResponseRecord.objects.get(conversation=conversation).pk)()
    locked, release = threading.Event(), threading.Event()

    def hold_a_write_lock():
        try:
            with transaction.atomic():  # SQLite: the database write lock; PostgreSQL: the record's row lock
                ResponseRecord.objects.filter(pk=record_pk).update(events_received=F("events_received"))
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_write_lock)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 10)
        rest = await socket.until(lambda e: e["type"] == "response.completed", within=10)
        # The whole stream arrived while the recorder was still stuck behind the lock.
        assert await asyncio.to_thread(read_status_elsewhere, record_pk) != "completed"
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 10)
    deltas = [e for e in started + rest if e["type"] == "response.output_text.delta"]
    assert len(deltas) == 40
    await socket.close()
    record = await db(lambda: ResponseRecord.objects.get(pk=record_pk))()
    assert record.status == "completed" and record.events_received == len(
        [e for e in started + rest if not e["type"].startswith("switchboard.")])

"""The recorder: input committed before it leaves, batches off the hot path, loud overflow."""

from __future__ import annotations

import json
import logging

import pytest
from django.utils import timezone
from websockets.asyncio.server import serve

from sessions_app.models import ErrorEvent, Item, ResponseRecord, UpstreamConnection
from sessions_app.recording.recorder import ConnectionFailed, ConversationState, Recorder, Writer

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


async def test_an_upstream_socket_that_never_opened_is_recorded_as_its_owners(user, conversation_of):
    """The row written when the handshake failed and its own row could not be (relay/link.py) names the
    conversation's owner, as every upstream row does: the user's sockets are counted by it (relay/limits.py)."""
    conversation = await conversation_of(user)
    recorder = Recorder()
    recorder.add(ConnectionFailed(conversation_id=conversation.pk, owner_id=user.pk, profile_id=None,
                                  url="ws://refused", close_code=401, close_text="no", at=timezone.now()))
    await recorder.close()
    row = await db(lambda: UpstreamConnection.objects.get(conversation=conversation))()
    assert (row.owner_id, row.close_reason, row.closed_at is not None) == (user.pk, "handshake_failed", True)


async def test_a_first_turns_socket_is_written_with_its_response_in_one_statement(user, conversation_of):
    from datetime import timedelta

    from django.utils import timezone

    from sessions_app.models import UpstreamConnection
    from sessions_app.recording.ops import Sent, Started, batch_statements
    from sessions_app.recording.recorder import Finished

    conversation = await conversation_of(user)
    recorder = Recorder()
    written = await recorder.write_request(_create(conversation))
    upstream = await db(lambda: UpstreamConnection.objects.create(conversation=conversation, url="ws://u"))()
    sent_at = timezone.now() - timedelta(seconds=1)
    sent = Sent(written.record_pk, upstream.pk, sent_at)
    started = Started(written.record_pk, "resp_s1", "in_progress", timezone.now())
    finished = Finished(conversation_id=conversation.pk, record_pk=written.record_pk, status="completed",
                        response_id="resp_s1", events_received=3)
    # One UPDATE of the record, whichever came first (the reader may see response.created before the send returns).
    for ops in ([sent, started], [started, sent], [sent, started, finished]):
        statements = await db(batch_statements)(ops)
        assert len(statements) == 1 and "sent_at" in statements[0][0] and "response_id" in statements[0][0]
    # Two sends of one record (a resend on a new socket) stay in their order: the last one wins.
    later = Sent(written.record_pk, upstream.pk, sent_at + timedelta(milliseconds=500))
    assert len(await db(batch_statements)([finished, sent, later])) == 3
    for op in (sent, started, finished):
        recorder.add(op)
    await recorder.flush()
    record = await db(lambda: ResponseRecord.objects.get(pk=written.record_pk))()
    assert (record.connection_id, record.sent_at, record.response_id, record.status) == (
        upstream.pk, sent_at, "resp_s1", "completed")
    await recorder.close()


async def test_an_op_the_database_refuses_is_dropped_alone_and_logged(user, conversation_of, caplog):
    import uuid

    from sessions_app.recording.recorder import ErrorRow

    conversation = await conversation_of(user)
    recorder = Recorder(writer=Writer(batch_size=50))
    recorder.add(ConversationState(conversation.pk, "streaming", latest_response_id="resp_before"))
    # A conversation that does not exist: the foreign key refuses the row, and with it the batch.
    recorder.add(ErrorRow(source="upstream", code="orphan", message="m", conversation_id=uuid.uuid4()))
    recorder.add(ConversationState(conversation.pk, "idle"))
    await recorder.flush()
    await db(conversation.refresh_from_db)()
    assert (conversation.status, conversation.latest_response_id) == ("idle", "resp_before")
    assert recorder.writer.dropped == 1
    assert not await db(lambda: ErrorEvent.objects.filter(code="orphan").exists())()
    assert any("could not write a ErrorRow record" in r.getMessage() for r in caplog.records)
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


# -- the per-turn write's fast paths (sync: they run on the recorder's threads in the relay) --------


def _create(conversation, parent=None, text="hello", **fields):
    from sessions_app.recording.recorder import RequestRow

    previous = parent.response_id if parent else None
    payload = {"type": "response.create", "model": "gpt-test", "input": text,
               **({"previous_response_id": previous} if previous else {})}
    return RequestRow(conversation_id=conversation.pk, stream_id=None, previous_response_id=previous,
                      parent_pk=parent.pk if parent else None, parent_forks=False if parent else None,
                      origin="user", model="gpt-test", payload=payload, use_compacted_window=True, **fields)


def _finished(record_pk: int, response_id: str) -> ResponseRecord:
    ResponseRecord.objects.filter(pk=record_pk).update(response_id=response_id, status="completed")
    return ResponseRecord.objects.get(pk=record_pk)


def test_a_continuing_create_is_one_statement_on_postgresql_and_few_on_sqlite(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sessions_app.recording.recorder import _write_request
    from sessions_app.services import conversation_create

    conversation = conversation_create(owner=user, title="t")
    first = _finished(_write_request(_create(conversation)).record_pk, "resp_a")
    with CaptureQueriesContext(connection) as queries:
        written = _write_request(_create(conversation, first, text="and then"))
    # PostgreSQL: one autocommit statement. SQLite: BEGIN, compaction check, 2 INSERTs, COMMIT.
    assert len(queries) == (1 if connection.vendor == "postgresql" else 5)
    record = ResponseRecord.objects.get(pk=written.record_pk)
    assert (record.parent_id, record.previous_response_id, record.status, record.origin, record.model) == (
        first.pk, "resp_a", "queued", "user", "gpt-test")
    assert record.request_payload["input"] == "and then" and record.sent_at is not None
    [item] = Item.objects.filter(response=record)
    assert (item.direction, item.position, item.item_type, item.role, item.text) == (
        "input", 0, "message", "user", "and then")


def test_a_pending_standalone_compaction_is_applied_once_even_when_the_parent_is_known(user):
    from sessions_app.models import CompactionEvent
    from sessions_app.recording.recorder import _write_request
    from sessions_app.services import conversation_create

    conversation = conversation_create(owner=user, title="t")
    base = _finished(_write_request(_create(conversation)).record_pk, "resp_base")
    window = [{"type": "compaction", "id": "cmp_1", "encrypted_content": "xyz"}]
    CompactionEvent.objects.create(conversation=conversation, response=base, kind="standalone",
                                   compacted_output=window)
    written = _write_request(_create(conversation, base, text="next"))
    assert written.previous_response_id is None and written.parent_pk == base.pk
    assert written.payload["input"][0] == window[0] and len(written.payload["input"]) == 2
    record = ResponseRecord.objects.get(pk=written.record_pk)
    assert record.previous_response_id == "" and record.parent_id == base.pk
    # The compaction is consumed: the next create continues normally.
    child = _finished(written.record_pk, "resp_child")
    again = _write_request(_create(conversation, child, text="after"))
    assert again.previous_response_id == "resp_child" and again.payload["input"] == "after"


def test_a_known_forking_parent_is_recorded_as_a_fork(user):
    from dataclasses import replace

    from sessions_app.recording.recorder import _write_request
    from sessions_app.services import conversation_create

    conversation = conversation_create(owner=user, title="t")
    first = _finished(_write_request(_create(conversation)).record_pk, "resp_f")
    written = _write_request(replace(_create(conversation, first), parent_forks=True))
    assert ResponseRecord.objects.get(pk=written.record_pk).origin == "fork"


def test_sqlite_runs_in_wal_mode_with_normal_sync():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


async def test_the_recorders_threads_keep_their_connection_between_writes(user, conversation_of):
    import threading

    from django.db import connections

    from sessions_app.recording.recorder import _db

    conversation = await conversation_of(user)
    recorder = Recorder()
    seen = []

    def which_connection():
        seen.append((threading.get_ident(), id(connections["default"].connection)))

    first = await recorder.write_request(_create(conversation))
    for _ in range(20):
        await _db(which_connection)
    per_thread = {}
    for thread, raw in seen:
        per_thread.setdefault(thread, set()).add(raw)
    assert all(len(raws) == 1 for raws in per_thread.values())  # no reconnect per call
    assert first.record_pk
    await recorder.close()


# -- PostgreSQL: the usual create written from the event loop (recording_pg.py) ----------------


def _postgresql_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")


async def test_on_postgresql_the_usual_create_is_committed_from_the_event_loop(user, conversation_of):
    import threading

    from sessions_app.recording import pg as recording_pg
    from sessions_app.recording.recorder import RequestRow

    _postgresql_only()
    conversation = await conversation_of(user)
    recorder = Recorder()
    first = await recorder.write_request(_create(conversation))
    parent = await db(_finished)(first.record_pk, "resp_loop")
    threads = set()
    original = recording_pg._execute

    async def spy(connection, prepared, statement):
        threads.add(threading.get_ident())
        return await original(connection, prepared, statement)

    recording_pg._execute = spy
    try:
        written = await recorder.write_request(_create(conversation, parent, text="from the loop"))
        # A title makes it a transaction with a lookup: the recorder's threads, not the loop.
        titled = await recorder.write_request(RequestRow(**{**_create(conversation).__dict__, "title": "x"}))
    finally:
        recording_pg._execute = original
    assert threads == {threading.get_ident()}  # the statement ran on this loop's thread, once
    record = await db(lambda: ResponseRecord.objects.get(pk=written.record_pk))()  # another connection sees it
    assert (record.parent_id, record.previous_response_id, record.request_payload["input"]) == (
        parent.pk, "resp_loop", "from the loop")
    assert await db(lambda: Item.objects.get(response_id=written.record_pk, direction="input").text)() == (
        "from the loop")
    assert titled.record_pk > written.record_pk
    await recorder.close()


async def test_on_postgresql_a_cut_idle_input_connection_is_replaced_once(user, conversation_of, monkeypatch):
    from django.db import connection

    from sessions_app.recording import pg as recording_pg

    _postgresql_only()
    conversation = await conversation_of(user)
    recorder = Recorder()
    first = await recorder.write_request(_create(conversation))
    parent = await db(_finished)(first.record_pk, "resp_cut")
    await recorder.write_request(_create(conversation, parent, text="warm"))  # the pool has a connection now
    [pool] = [p for p in recording_pg._ALL if p.idle]
    pids = [c.info.backend_pid for c, _ in pool.idle]

    def cut():  # what a database restart does to an idle connection
        with connection.cursor() as cursor:
            for pid in pids:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await db(cut)()
    monkeypatch.setattr(recording_pg, "IDLE_CHECK_SECONDS", 0.0)
    written = await recorder.write_request(_create(conversation, parent, text="after the cut"))
    assert await db(lambda: ResponseRecord.objects.get(pk=written.record_pk).request_payload["input"])() == (
        "after the cut")
    assert all(c.info.backend_pid not in pids for c, _ in pool.idle)
    await recorder.close()


async def test_on_postgresql_plain_batches_are_written_from_the_event_loop(user, conversation_of, monkeypatch):
    from django.utils import timezone

    from sessions_app.recording import writer as recording
    from sessions_app.recording.recorder import ErrorRow, Finished, Started

    _postgresql_only()
    conversation = await conversation_of(user)
    recorder = Recorder()
    written = await recorder.write_request(_create(conversation))
    on_threads = []
    original = recording._db

    async def spy(function, *args):
        on_threads.append(function.__name__)
        return await original(function, *args)

    monkeypatch.setattr(recording, "_db", spy)
    now = timezone.now()
    message = {"type": "message", "id": "msg_b", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "batched", "annotations": []}]}
    recorder.add(Started(written.record_pk, "resp_b1", "in_progress", now))
    recorder.add(Finished(conversation_id=conversation.pk, record_pk=written.record_pk, status="completed",
                          response_id="resp_b1", output=(message,), first_event_at=now, completed_at=now,
                          events_received=9))
    recorder.add(ConversationState(conversation.pk, "idle", "resp_b1"))
    recorder.add(ErrorRow(source="upstream", code="some_code", message="m", conversation_id=conversation.pk))
    await recorder.flush()
    assert on_threads == []  # one transaction from the loop
    record = await db(lambda: ResponseRecord.objects.get(pk=written.record_pk))()
    assert (record.status, record.response_id, record.events_received) == ("completed", "resp_b1", 9)
    assert await db(lambda: Item.objects.get(response=record, direction="output").text)() == "batched"
    state = await db(lambda: type(conversation).objects.values_list("status", "latest_response_id")
                     .get(pk=conversation.pk))()
    assert state == ("idle", "resp_b1")
    assert await db(lambda: ErrorEvent.objects.filter(conversation=conversation, code="some_code").count())() == 1
    # An op that needs the ORM (a response the upstream started on its own) takes a recorder thread.
    recorder.add(Finished(conversation_id=conversation.pk, record_pk=None, status="completed",
                          response_id="resp_b2", previous_response_id="resp_b1"))
    await recorder.flush()
    assert on_threads == ["apply_batch"]
    assert await db(lambda: ResponseRecord.objects.get(response_id="resp_b2").parent_id)() == record.pk
    await recorder.close()


def test_on_sqlite_the_usual_create_is_one_short_transaction_on_the_raw_connection(user):
    from django.db import connection

    from sessions_app.recording import sqlite as recording_sqlite
    from sessions_app.recording.input import at_once_statement
    from sessions_app.recording.recorder import _write_request
    from sessions_app.services import conversation_create

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    conversation = conversation_create(owner=user, title="t")
    first = _finished(_write_request(_create(conversation)).record_pk, "resp_s")
    statements: list[str] = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(statements.append)
    try:
        written = recording_sqlite.write_at_once(at_once_statement(_create(conversation, first, text="raw")))
    finally:
        connection.connection.set_trace_callback(None)
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    record = ResponseRecord.objects.get(pk=written.record_pk)
    assert (record.parent_id, record.previous_response_id, record.status, record.request_payload["input"]) == (
        first.pk, "resp_s", "queued", "raw")
    [item] = Item.objects.filter(response=record)
    assert (item.direction, item.position, item.item_type, item.text, item.raw["content"]) == (
        "input", 0, "message", "raw", [{"type": "input_text", "text": "raw"}])
    # A pending standalone compaction: nothing written, the caller takes the general path.
    from sessions_app.models import CompactionEvent

    CompactionEvent.objects.create(conversation=conversation, response=record, kind="standalone",
                                   compacted_output=[{"type": "compaction", "id": "cmp_s", "encrypted_content": "x"}])
    before = ResponseRecord.objects.count()
    assert recording_sqlite.write_at_once(at_once_statement(_create(conversation, record, text="no"))) is None
    assert ResponseRecord.objects.count() == before


async def test_on_sqlite_concurrent_creates_share_a_commit_and_a_refused_one_fails_alone(user, conversation_of,
                                                                                          monkeypatch):
    import asyncio
    import uuid
    from dataclasses import replace

    from django.db import connection

    from sessions_app.recording import sqlite as recording_sqlite

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    conversation = await conversation_of(user)
    groups = []
    original = recording_sqlite.write_many_at_once

    def spy(statements):
        groups.append(len(statements))
        return original(statements)

    monkeypatch.setattr(recording_sqlite, "write_many_at_once", spy)
    recorder = Recorder()
    rows = [_create(conversation, text=f"n{i}") for i in range(8)]
    orphan = replace(_create(conversation, text="orphan"), conversation_id=uuid.uuid4())  # refused at COMMIT
    results = await asyncio.gather(*(recorder.write_request(row) for row in [*rows[:4], orphan, *rows[4:]]),
                                   return_exceptions=True)
    assert isinstance(results[4], Exception)
    written = [r for r in results if not isinstance(r, Exception)]
    assert len({w.record_pk for w in written}) == 8
    texts = await db(lambda: sorted(ResponseRecord.objects.filter(conversation=conversation)
                                    .values_list("request_payload__input", flat=True)))()
    assert texts == sorted(f"n{i}" for i in range(8))
    assert max(groups) > 1  # they shared a transaction (the one with the orphan was split up again)
    await recorder.close()

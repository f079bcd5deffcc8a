"""Micro-benchmark of `Recorder.write_request`, the relay's per-turn critical path.

The relay awaits this write (the user's input, committed) before it sends a create upstream, so
its latency is added to every turn's time-to-first-delta. This script measures that latency as
the relay sees it (from the event loop: a thread hop on SQLite, the loop's own round trip on PostgreSQL;
queries, commit) on SQLite and PostgreSQL.

    .venv/bin/python bench/write_request.py                 # both databases, ~20 s
    .venv/bin/python bench/write_request.py --ways sqlite   # one of them
    .venv/bin/python bench/write_request.py --turns 1000    # more samples

Scenarios, each a chain of creates continuing the previous one, the way the relay writes them
(parent known from the stream, not forking, a connection already open):

* `serial`: one socket, one create at a time: the 1-chain bench's situation.
* `50 sockets`: 50 chains writing concurrently: the 50-connection bench's situation.
* `serial, busy loop`: one chain while the event loop is kept busy (CPU in 2 ms slices, as the
  relay's loop is under load): the write's thread must win the GIL back from it. Capped at
  20 s; `n` shows how many writes finished (the last one counted at the cap).
* `serial + batches`: one chain while the shared batch writer applies a Finished op with 200-delta
  output and a ConversationState for every create (what the streams back produce), so the
  input write competes with the batches as it does in the relay.

Each configuration runs in a child process (one process cannot configure Django for two
databases): SQLite on a file in a temporary SWITCHBOARD_VAR_DIR, PostgreSQL on a throwaway
database `switchboard_wrbench_<pid>` (created and dropped; `BENCH_POSTGRES_URL` overrides the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from db_children import per_database

ROOT = Path(__file__).resolve().parent.parent
BUSY_CAP_SECONDS = 20.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


# -- child: one database ------------------------------------------------------------------


def child(turns: int) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from sessions_app.models import ResponseRecord
    from sessions_app.recording import recorder as recording
    from sessions_app.recording import sqlite as recording_sqlite
    from sessions_app.recording.input import at_once_statement
    from sessions_app.recording.recorder import ConversationState, Finished, Recorder, RequestRow
    from sessions_app.services import conversation_create

    call_command("migrate", interactive=False, verbosity=0)
    user = get_user_model().objects.create_user(username="wrbench")

    def new_conversation():
        return conversation_create(owner=user, title="bench", model="gpt-bench", created_via="gateway").pk

    def row(conversation_id, parent_pk, k):
        return RequestRow(
            conversation_id=conversation_id, stream_id=None, previous_response_id=f"resp_{parent_pk}" if parent_pk
            else None, parent_pk=parent_pk, parent_forks=False if parent_pk else None, origin="user",
            model="gpt-bench", payload={"type": "response.create", "model": "gpt-bench", "input": f"/long 200 #{k}",
                                        "store": False, **({"previous_response_id": f"resp_{parent_pk}"}
                                                           if parent_pk else {})},
            use_compacted_window=True, connection_pk=None,
        )

    output = ({"type": "message", "id": "msg_x", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "lorem " * 200, "annotations": []}]},)

    async def chain(recorder, conversation_id, n, samples, with_batches=False):
        parent = None
        for k in range(n):
            started = time.perf_counter()
            written = await recorder.write_request(row(conversation_id, parent, k))
            samples.append((time.perf_counter() - started) * 1e6)
            parent = written.record_pk
            if with_batches:
                now = timezone.now()
                recorder.add(Finished(conversation_id=conversation_id, record_pk=parent, status="completed",
                                      response_id=f"resp_{parent}", model="gpt-bench",
                                      payload={"id": f"resp_{parent}", "output": list(output)}, output=output,
                                      first_event_at=now, first_text_at=now, completed_at=now, events_received=208))
                recorder.add(ConversationState(conversation_id, "idle", latest_response_id=f"resp_{parent}"))
                await asyncio.sleep(0.005)  # the turn streams: the writer gets a batch in meanwhile

    conversations = [new_conversation() for _ in range(54)]

    async def run() -> dict:
        results = {}
        recorder = Recorder()
        warm: list[float] = []
        await chain(recorder, conversations[0], 30, warm)

        serial: list[float] = []
        await chain(recorder, conversations[1], turns, serial)
        results["serial"] = serial

        many: list[float] = []
        ids = conversations[2:52]
        await asyncio.gather(*(chain(Recorder(), cid, max(10, turns // 50), many) for cid in ids))
        results["50 sockets"] = many

        busy: list[float] = []
        stop = asyncio.Event()

        async def spin():  # a busy event loop, as the relay's at load: CPU in 2 ms slices
            while not stop.is_set():
                deadline = time.perf_counter() + 0.002
                while time.perf_counter() < deadline:
                    pass
                await asyncio.sleep(0)

        spinner = asyncio.get_running_loop().create_task(spin())
        try:  # capped: with the default 5 ms GIL switch interval the input thread can starve here
            await asyncio.wait_for(chain(recorder, conversations[53], turns, busy), BUSY_CAP_SECONDS)
        except TimeoutError:
            busy.append(BUSY_CAP_SECONDS * 1e6)  # the write still waiting, counted at the cap
        stop.set()
        await spinner
        results["serial, busy loop"] = busy

        mixed: list[float] = []
        await chain(recorder, conversations[52], turns, mixed, with_batches=True)
        await recorder.close()
        results["serial + batches"] = mixed
        return results

    results = asyncio.run(run())
    # Statements per continuing create, counted on this thread, as the relay sends them: PostgreSQL's one
    # statement (the same SQL the loop runs, here through Django's cursor); on SQLite the raw connection's
    # (recording_sqlite.py), which Django's query capture does not see.
    conversation_id = new_conversation()
    first = recording._write_request(row(conversation_id, None, 0))
    following = row(conversation_id, first.record_pk, 1)
    if connection.vendor == "sqlite":
        statements: list[str] = []
        connection.ensure_connection()
        connection.connection.set_trace_callback(statements.append)
        try:
            recording_sqlite.write_at_once(at_once_statement(following))
        finally:
            connection.connection.set_trace_callback(None)
    else:
        with CaptureQueriesContext(connection) as queries:
            recording._write_request(following)
        statements = [q["sql"] for q in queries.captured_queries]
    stored = ResponseRecord.objects.count()
    return {
        "vendor": connection.vendor,
        "statements": [sql[:90] for sql in statements],
        "stored": stored,
        "scenarios": {name: {"n": len(v), "p50": percentile(v, 0.5), "p95": percentile(v, 0.95),
                             "mean": sum(v) / len(v)} for name, v in results.items()},
    }


# -- parent --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ways", default="sqlite,postgresql")
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.turns)))
        return 0
    try:
        reports = per_database(__file__, args.ways.split(","), args.turns, "wrbench")
    except ValueError as exc:
        parser.error(str(exc))
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"{'database':<12} {'scenario':<18} {'n':>5} {'p50 µs':>9} {'p95 µs':>9} {'mean µs':>9}")
    for way, report in reports.items():
        for name, s in report["scenarios"].items():
            print(f"{way:<12} {name:<18} {s['n']:>5} {s['p50']:>9.0f} {s['p95']:>9.0f} {s['mean']:>9.0f}")
    for way, report in reports.items():
        print(f"\n{way}: {len(report['statements'])} statements per continuing create:")
        for sql in report["statements"]:
            print(f"  {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

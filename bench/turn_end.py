"""Micro-benchmark: what a turn's end costs the recorder, written alone (the hold) or with other turns' ends.

Since a response's last event waits until its record is committed (relay/stream.py `_deliver_held`), each
turn at the chain load ends with a batch of its own: its `Finished` op (a 200-delta reply) and the
conversation's `ConversationState`. Before, the writer's 50 ms linger gathered about four turns per batch.
This script writes the same ops both ways through the real `Recorder` and prints the CPU per turn of this
process (loop and recorder threads, user + system) and, on PostgreSQL, of its backends, so the per-batch
cost shows as the difference between the two ways (ratio: one per batch / four per batch, same run).

    .venv/bin/python bench/turn_end.py                 # both databases, ~30 s
    .venv/bin/python bench/turn_end.py --ways sqlite --turns 2000

Each database runs in a child process (SQLite on a temporary file, PostgreSQL on a throwaway database),
the ways interleaved twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

from db_children import per_database

ROOT = Path(__file__).resolve().parent.parent
WAYS = (("one per batch", 1), ("four per batch", 4))


def child(turns: int) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    import cpu
    import psycopg
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from sessions_app.recording import ConversationState, Finished, Recorder, RequestRow
    from sessions_app.services import conversation_create

    call_command("migrate", interactive=False, verbosity=0)
    user = get_user_model().objects.create_user(username="turnend")
    conversation_id = conversation_create(owner=user, title="bench", model="gpt-bench", created_via="gateway").pk
    backends = None
    if connection.vendor == "postgresql":
        reader = psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1), autocommit=True)
        backends = cpu.DatabaseBackends(reader)
    output = ({"type": "message", "id": "msg_x", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "lorem " * 200, "annotations": []}]},)

    async def run() -> dict:
        recorder = Recorder()
        records = []
        for k in range(turns):
            written = await recorder.write_request(RequestRow(
                conversation_id=conversation_id, stream_id=None, previous_response_id=None, parent_pk=None,
                origin="user", model="gpt-bench", payload={"type": "response.create", "input": f"turn {k}"},
                connection_pk=None))
            records.append(written.record_pk)

        def end(record_pk: int) -> None:
            now = timezone.now()
            recorder.add(Finished(conversation_id=conversation_id, record_pk=record_pk, status="completed",
                                  response_id=f"resp_{record_pk}", model="gpt-bench", output=output,
                                  payload={"id": f"resp_{record_pk}", "output": list(output)}, first_event_at=now,
                                  first_text_at=now, completed_at=now, events_received=208))
            recorder.add(ConversationState(conversation_id, "idle", latest_response_id=f"resp_{record_pk}"))

        figures: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in WAYS}
        share = turns // (2 * len(WAYS))
        for part, (name, per_batch) in enumerate(WAYS * 2):
            chosen = records[part * share:(part + 1) * share]
            before, spent_before = resource.getrusage(resource.RUSAGE_SELF), backends.seconds() if backends else {}
            for i in range(0, len(chosen), per_batch):
                for record_pk in chosen[i:i + per_batch]:
                    end(record_pk)
                await recorder.written(5)
            after = resource.getrusage(resource.RUSAGE_SELF)
            own = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / len(chosen) * 1e6
            database = cpu.spent(spent_before, backends.seconds()) / len(chosen) * 1e6 if backends else 0.0
            figures[name].append((own, database))
        await recorder.close()
        return {name: [sum(x) / len(runs) for x in zip(*runs, strict=True)] for name, runs in figures.items()}

    return {"vendor": connection.vendor, "ways": asyncio.run(run())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ways", default="sqlite,postgresql")
    parser.add_argument("--turns", type=int, default=1600)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.turns)))
        return 0
    started = time.monotonic()
    try:
        reports = per_database(__file__, args.ways.split(","), args.turns, "turnend")
    except ValueError as exc:
        parser.error(str(exc))
    print(f"took {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
    print(f"{'database':<12} {'turn ends':<16} {'process µs/turn':>16} {'database µs/turn':>17}")
    for way, report in reports.items():
        for name, (own, database) in report["ways"].items():
            print(f"{way:<12} {name:<16} {own:>16.0f} {database:>17.0f}")
        one, four = report["ways"]["one per batch"], report["ways"]["four per batch"]
        print(f"{way:<12} {'ratio one/four':<16} {one[0] / four[0]:>15.2f}× "
              f"{(one[1] / four[1]) if four[1] else 0:>16.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())

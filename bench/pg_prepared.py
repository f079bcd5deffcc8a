"""Micro-benchmark of recording/pg.py's simple queries with and without their shapes prepared (pgprepared.py).

Every new gateway socket sends, as one simple query each, guarded INSERTs after the user's row lock (its
admission, its upstream socket's row) and the recorder's batches of UPDATEs. This script sends that mix
from one event loop: the upstream row's guarded INSERT with its lock, then a batch of two conversation
UPDATEs and the row's DELETE (so the guard counts the same rows every time). Rounds alternate between
`SWITCHBOARD_PG_PREPARE` on and off, on new connections each round, and print per iteration the CPU of
the PostgreSQL backends that served it, this process's CPU and the wall time, with the ratio of on to off.

    .venv/bin/python bench/pg_prepared.py                      # 5 rounds each of 2000 iterations
    .venv/bin/python bench/pg_prepared.py --rounds 3 --n 500   # quicker

It runs on a throwaway database `switchboard_prepbench_<pid>` (`BENCH_POSTGRES_URL` overrides the server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

from throwaway_pg import throwaway_database

ROOT = Path(__file__).resolve().parent.parent


def backend_seconds(pids: list[int]) -> float:
    """User + system CPU of these PostgreSQL backends (they run on this machine), in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def one_round(n: int, user, conversation) -> dict[str, float]:
    from django.utils import timezone

    from sessions_app.models import Conversation, UpstreamConnection
    from sessions_app.models.statements import delete_statement, lock_user_row, update_statement
    from sessions_app.recording import pg
    from sessions_app.recording.input import connection_row, row_insert
    from sessions_app.relay import limits

    async def iteration() -> None:
        guard = limits.upstream_sockets_guard(user_pk=user.pk, limit=1000)
        row = row_insert(connection_row(conversation.pk, user.pk, None, "ws://upstream.bench/v1/responses"),
                         guard=guard, lock=lock_user_row(user.pk))
        pk = await pg.execute_at_once(row)
        await pg.execute_batch([
            update_statement(Conversation, conversation.pk, {"status": "active", "updated_at": timezone.now()}),
            update_statement(Conversation, conversation.pk, {"status": "idle", "latest_response_id": f"resp_{pk}"}),
            delete_statement(UpstreamConnection, pk),
        ])

    pg.close_all()
    for _ in range(20):  # a connection, and every shape seen twice
        await iteration()
    pids = [connection.info.backend_pid for pool in pg._ALL for connection in pool.every]
    backend, cpu, wall = backend_seconds(pids), time.process_time(), time.perf_counter()
    for _ in range(n):
        await iteration()
    return {"backend_us": (backend_seconds(pids) - backend) / n * 1e6, "process_us": (time.process_time() - cpu) / n * 1e6,
            "wall_us": (time.perf_counter() - wall) / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each way, interleaved")
    args = parser.parse_args()
    with throwaway_database("switchboard_prepbench") as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from sessions_app.recording import pg
        from sessions_app.services import conversation_create

        call_command("migrate", interactive=False, verbosity=0)
        user = get_user_model().objects.create_user(username="prepbench")
        conversation = conversation_create(owner=user, title="bench", model="gpt-bench", created_via="gateway")
        figures: dict[str, list[dict[str, float]]] = {"prepared": [], "plain": []}

        async def run() -> None:
            for _ in range(args.rounds):
                for way in figures:
                    settings.SWITCHBOARD_PG_PREPARE = way == "prepared"
                    figures[way].append(await one_round(args.n, user, conversation))
            pg.close_all()

        asyncio.run(run())
    print(f"{args.rounds} rounds x {args.n} iterations (guarded INSERT after its lock; a batch of 3), "
          "median µs per iteration:")
    print(f"{'way':<10}{'PG backend':>12}{'this process':>14}{'wall':>10}")
    medians = {way: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
               for way, rounds in figures.items()}
    for way, m in medians.items():
        print(f"{way:<10}{m['backend_us']:>12.0f}{m['process_us']:>14.0f}{m['wall_us']:>10.0f}")
    ratio = {key: medians["prepared"][key] / medians["plain"][key] for key in medians["plain"]}
    print(f"{'ratio':<10}{ratio['backend_us']:>12.2f}{ratio['process_us']:>14.2f}{ratio['wall_us']:>10.2f}")


if __name__ == "__main__":
    main()

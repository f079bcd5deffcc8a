"""Micro-benchmark: recording/pg.py's per-loop pool against psycopg_pool's `AsyncConnectionPool`.

Issue 16 asked for psycopg-pool in place of the hand-written pool "if it is no slower". Both pools here
hand out autocommit connections opened with Django's parameters (up to `POOL_SIZE` per loop) for the same
use, `SELECT 1` and its row, so the difference is what each pool costs per checkout and return. Each way
runs in its own process on uvloop (as Daphne does), with 1 task and with 50 concurrent tasks (a busy
relay's first turns and batches), in interleaved rounds; printed are the medians of CPU per use (this
process), wall time per use and the latency p50 / p99, and the library's ratio to ours.

    .venv/bin/python bench/pg_pool.py                 # 5 rounds, 2000 uses a task alone, 100 each of 50
    .venv/bin/python bench/pg_pool.py --rounds 3      # quicker

The server is BENCH_POSTGRES_URL's (default: the local one, user postgres); nothing is written.
psycopg-pool is a development requirement only (requirements-dev.txt): Switchboard does not use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from throwaway_pg import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
SQL = "SELECT 1"
LOADS = {1: 2000, 50: 100}  # tasks: uses per task


async def measure(way: str, tasks: int, uses: int) -> dict[str, float]:
    latencies: list[float] = []
    if way == "ours":
        from sessions_app.recording import pg

        pool = pg._pool()

        async def run(connection, _prepared):
            cursor = await connection.execute(SQL)
            return await cursor.fetchone()

        async def use() -> None:
            started = time.perf_counter()
            await pool._use(run)
            latencies.append(time.perf_counter() - started)
    else:
        from django.db import DEFAULT_DB_ALIAS, connections
        from psycopg_pool import AsyncConnectionPool

        from sessions_app.recording.pg import POOL_SIZE

        params = dict(connections[DEFAULT_DB_ALIAS].get_connection_params())
        params.pop("cursor_factory", None)
        library = AsyncConnectionPool(kwargs={**params, "autocommit": True}, min_size=0, max_size=POOL_SIZE,
                                      open=False, num_workers=1)
        await library.open()

        async def use() -> None:
            started = time.perf_counter()
            async with library.connection() as connection:
                cursor = await connection.execute(SQL)
                await cursor.fetchone()
            latencies.append(time.perf_counter() - started)

    async def task() -> None:
        for _ in range(uses):
            await use()

    await asyncio.gather(*[task() for _ in range(tasks)])  # warm: every connection the load needs is open
    latencies.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[task() for _ in range(tasks)])
    n = tasks * uses
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    return {"cpu_us": cpu / n * 1e6, "wall_us": wall / n * 1e6, "p50_ms": latencies[n // 2] * 1e3,
            "p99_ms": latencies[int(n * 0.99)] * 1e3}


def child(way: str) -> None:
    os.environ["DATABASE_URL"] = POSTGRES_ADMIN_URL.replace("postgresql://", "postgres://", 1)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(ROOT))
    import django
    import uvloop

    django.setup()
    figures = {tasks: uvloop.run(measure(way, tasks, uses)) for tasks, uses in LOADS.items()}
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each way, interleaved")
    parser.add_argument("--way", choices=["ours", "library"], help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.way:
        return child(args.way)
    rounds: dict[str, list[dict]] = {"ours": [], "library": []}
    for _ in range(args.rounds):
        for way in rounds:
            out = subprocess.run([sys.executable, __file__, "--way", way], check=True, capture_output=True, text=True)
            rounds[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.rounds} rounds of each way, interleaved; `{SQL}` per use; medians")
    print(f"{'way':<10}{'tasks':>6}{'CPU µs/use':>12}{'wall µs/use':>13}{'p50 ms':>9}{'p99 ms':>9}")
    medians = {way: {tasks: {key: statistics.median(r[str(tasks)][key] for r in runs) for key in runs[0][str(tasks)]}
                     for tasks in LOADS} for way, runs in rounds.items()}
    for tasks in LOADS:
        for way in rounds:
            m = medians[way][tasks]
            print(f"{way:<10}{tasks:>6}{m['cpu_us']:>12.1f}{m['wall_us']:>13.1f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}")
        ratio = {key: medians["library"][tasks][key] / medians["ours"][tasks][key] for key in medians["ours"][tasks]}
        print(f"{'ratio':<10}{tasks:>6}{ratio['cpu_us']:>12.2f}{ratio['wall_us']:>13.2f}{ratio['p50_ms']:>9.2f}"
              f"{ratio['p99_ms']:>9.2f}")


if __name__ == "__main__":
    main()

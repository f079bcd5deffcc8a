"""Relay benchmark: what Switchboard's gateway costs next to the simplest ways to relay.

One command drives chains of continued turns (`previous_response_id`) against the
simulator at full speed, four ways, interleaved and repeated:

* direct            the client talks to the simulator;
* bare relay        a `websockets` server that copies frames both ways (bench/passthrough.py);
* minimal consumer  a Channels consumer on Daphne that only forwards frames (bench/minimal_consumer.py):
                    the framework's own ceiling;
* switchboard       the gateway socket `/v1/responses` on Daphne with recording on,
                    on PostgreSQL (+ Redis channel layer) and on SQLite (in-memory layer);
* floors (opt-in)   the minimal consumer plus only an awaited thread hop or input commit before each
                    send (bench/floor_consumer.py): what the issue's rules alone cost at each load.

    .venv/bin/python bench/relay.py                 # full run (1×50 and 50×10 turns of 200 deltas, 3 repeats)
    .venv/bin/python bench/relay.py --loads chain --chain-turns 500   # a chain long enough to resolve its CPU ratio
    .venv/bin/python bench/relay.py --quick         # smoke run (1×10 and 10×3, 1 repeat)
    .venv/bin/python bench/relay.py --json out.json --repeats 5
    .venv/bin/python bench/relay.py --ways minimal,floor-thread,floor-sqlite,floor-postgresql,sqlite,postgresql

Every process (simulator, relays, Daphnes) is a subprocess on a free loopback port;
the client is this process. Each socket is opened and runs one untimed first turn
before the clock starts (where each way pays its one-off costs: Switchboard opens
its upstream socket and conversation lazily), so the figures are those of chains
in steady state; that first turn's TTFD is reported apart.
After each Switchboard run the script waits for the recorder to catch up (the
"rec. lag" column) so its writes never land in the next way's measurement, and
at the end it compares the output text stored in each database with what the
clients received, response by response.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cpu  # noqa: E402
import psycopg  # noqa: E402
from relay_report import build_report, print_report  # noqa: E402
from relay_setup import (  # noqa: E402
    StoredDatabase,
    children_output_to,
    django_env,
    last_record_id,
    minimal_consumer_process,
    passthrough_process,
    postgres_database,
    redis_ping,
    service_answers,
    sqlite_database,
    switchboard_prepare,
    verify,
    wait_for_recorder,
)
from throwaway_pg import POSTGRES_ADMIN_URL, throwaway_database  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from tests.live import daphne_process, free_port, simulator_process  # noqa: E402

MODEL = "gpt-5.5"
DELTA = "response.output_text.delta"
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


# --- loads and ways -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    key: str
    connections: int
    turns: int
    deltas: int

    @property
    def title(self) -> str:
        return f"{self.connections} connection{'s' * (self.connections > 1)} × {self.turns} turns × {self.deltas} deltas"


@dataclass(frozen=True)
class Way:
    name: str
    url: str
    pid: int  # the relay process (for direct: the simulator), whose CPU time each run measures
    headers: dict[str, str] = field(default_factory=dict)
    database: StoredDatabase | None = None
    floor: bool = False  # bench/floor_consumer.py: compared with the baselines like Switchboard


# --- one measured run ---------------------------------------------------------------------------------------------

class TurnFailed(Exception):
    pass


@dataclass
class Sample:
    """One load driven once through one way."""

    wall_s: float
    turns: int
    events: int
    ttfd_ms: list[float]
    turn_ms: list[float]
    cold_ttfd_ms: list[float] = field(default_factory=list)
    relay_cpu_s: float = 0.0  # the relay's process tree (bench/cpu.py), from the clock's start until the
    #                           recorder has caught up, so the recording a way owes is in its figure
    database_cpu_s: float = 0.0  # PostgreSQL backends of the way's database
    redis_cpu_s: float = 0.0  # the private redis-server
    client_cpu_s: float = 0.0
    recording_lag_s: float | None = None

    @property
    def figures(self) -> dict[str, float]:
        return {
            "turns_per_s": self.turns / self.wall_s,
            "events_per_s": self.events / self.wall_s,
            "ttfd_p50_ms": percentile(self.ttfd_ms, 50),
            "ttfd_p95_ms": percentile(self.ttfd_ms, 95),
            "turn_p50_ms": percentile(self.turn_ms, 50),
            "turn_p95_ms": percentile(self.turn_ms, 95),
            "cold_ttfd_p50_ms": percentile(self.cold_ttfd_ms, 50),
            "relay_cpu_us_per_event": self.relay_cpu_s / self.events * 1e6,
            "database_cpu_us_per_event": self.database_cpu_s / self.events * 1e6,
            "redis_cpu_us_per_event": self.redis_cpu_s / self.events * 1e6,
            "all_cpu_us_per_event": (self.relay_cpu_s + self.database_cpu_s + self.redis_cpu_s) / self.events * 1e6,
            "relay_cpu_percent": self.relay_cpu_s / self.wall_s * 100,
            "client_cpu_percent": self.client_cpu_s / self.wall_s * 100,
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported latency is one that happened)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def run_turn(ws: ClientConnection, k: int, deltas: int, previous: str | None,
                   received: dict[str, str]) -> tuple[str, int, float, float]:
    """One turn: send a create, read to its terminal event; (response id, events, TTFD ms, turn ms)."""
    create = {"type": "response.create", "model": MODEL, "store": False, "input": f"/long {deltas} turn {k}"}
    if previous:
        create["previous_response_id"] = previous
    sent = time.perf_counter()
    await ws.send(json.dumps(create))
    first = None
    parts: list[str] = []
    events = 0
    while True:
        event = json.loads(await ws.recv())
        events += 1
        kind = event.get("type")
        if kind == DELTA:
            if first is None:
                first = time.perf_counter()
            parts.append(event["delta"])
        elif kind in TERMINAL:
            done = time.perf_counter()
            break
        elif kind == "error":
            raise TurnFailed(f"error event on turn {k}: {event.get('error')}")
    response = event["response"]
    if kind != "response.completed" or first is None:
        raise TurnFailed(f"turn {k} ended {kind} ({response.get('status')}) with {len(parts)} deltas")
    received[response["id"]] = "".join(parts)
    return response["id"], events, (first - sent) * 1000, (done - sent) * 1000


async def run_chain(ws: ClientConnection, load: Load, previous: str, received: dict[str, str]) -> tuple[int, list, list]:
    """`load.turns` continued turns on one socket; each waits for the previous one's terminal event."""
    events = 0
    ttfd: list[float] = []
    turn: list[float] = []
    for k in range(1, load.turns + 1):
        previous, count, first_ms, turn_ms = await run_turn(ws, k, load.deltas, previous, received)
        events += count
        ttfd.append(first_ms)
        turn.append(turn_ms)
    return events, ttfd, turn


async def drive(way: Way, load: Load, received: dict[str, str], limit_s: float,
                on_clock_start: Callable[[], None] = lambda: None) -> Sample:
    """Open every connection and run its first turn, then start the clock and run all chains concurrently.

    The first turn of a socket is not timed with the rest: it is where each way pays its one-off costs
    (Switchboard opens its upstream socket and its conversation lazily, the other relays on connect).
    Its TTFD is kept apart as `cold_ttfd_ms`; the figures are those of a chain in steady state.
    """
    async def open_and_prime() -> tuple[ClientConnection, str, float]:
        ws = await connect(way.url, additional_headers=way.headers, compression=None, max_size=None,
                           open_timeout=30)
        sockets.append(ws)
        response_id, _, first_ms, _ = await run_turn(ws, 0, load.deltas, None, received)
        return ws, response_id, first_ms

    sockets: list[ClientConnection] = []
    try:
        async with asyncio.timeout(limit_s):
            primed = await asyncio.gather(*(open_and_prime() for _ in range(load.connections)))
            on_clock_start()
            start, cpu_start = time.perf_counter(), time.process_time()
            results = await asyncio.gather(*(run_chain(ws, load, previous, received) for ws, previous, _ in primed))
            wall, client_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return Sample(
        wall_s=wall,
        turns=load.connections * load.turns,
        events=sum(r[0] for r in results),
        ttfd_ms=[x for r in results for x in r[1]],
        turn_ms=[x for r in results for x in r[2]],
        cold_ttfd_ms=[first_ms for _, _, first_ms in primed],
        client_cpu_s=client_cpu,
    )


# --- processes ----------------------------------------------------------------------------------------------------


# --- the run ------------------------------------------------------------------------------------------------------

WAY_KEYS = ("direct", "bare", "minimal", "postgresql", "sqlite")
# Opt-in (--ways): the minimal consumer plus only an input write before each send (bench/floor_consumer.py).
FLOOR_KEYS = ("floor-thread", "floor-sqlite", "floor-postgresql")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1×10 and 10×3 turns, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each load per way (default 3; quick 1)")
    parser.add_argument("--deltas", type=int, default=200, help="output_text deltas per turn (default 200)")
    parser.add_argument("--chain-turns", type=int, default=50,
                        help="turns of the chain load (default 50; a run lasts under a second, more resolves its ratio)")
    parser.add_argument("--loads", default="chain,concurrent", help="which loads to run (default both)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--ways", default=",".join(WAY_KEYS),
                        help=f"comma-separated subset of {','.join(WAY_KEYS)} (default: all), or of the "
                             f"floors {','.join(FLOOR_KEYS)} (bench/floor_consumer.py; only when named)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take before it fails")
    parser.add_argument("--redis-url", default="private",
                        help="channel layer of the PostgreSQL run: 'private' (default) starts a redis-server of the "
                             "benchmark's own, whose CPU is counted; a URL uses that one (its CPU is not counted); "
                             "'' = in-memory layer, as the SQLite run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        loads = [Load("chain", 1, 10, args.deltas), Load("concurrent", 10, 3, args.deltas)]
    else:
        loads = [Load("chain", 1, args.chain_turns, args.deltas), Load("concurrent", 50, 10, args.deltas)]
    if args.loads != "chain,concurrent":
        loads = [load for load in loads if load.key in args.loads.split(",")]
    wanted = [key.strip() for key in args.ways.split(",") if key.strip()]
    unknown = set(wanted) - set(WAY_KEYS) - set(FLOOR_KEYS)
    if unknown:
        sys.exit(f"unknown ways: {', '.join(sorted(unknown))}")

    began = time.perf_counter()
    notes: list[str] = []
    server_log = Path(tempfile.gettempdir()) / f"switchboard-bench-{os.getpid()}.log"
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        with children_output_to(server_log):
            ways = start_ways(stack, Path(tmp), wanted, notes, args.redis_url)
        samples, failures = measure(ways, loads, repeats, args.timeout)
        verification = {way.name: verify(way.database) for way in ways if way.database is not None}

    crashes = server_log.read_text(errors="replace").count("Exception inside application")
    notes.append(f"server output (Daphne, relays, simulator): {server_log}"
                 + (f" — {crashes} 'Exception inside application' in it" if crashes else ""))
    report = build_report(ways, loads, repeats, samples, failures, verification, notes,
                          elapsed=time.perf_counter() - began)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nfigures written to {args.json}")
    # Missing the targets is a finding, not an error; failed runs and lost records are errors.
    complete = all(result.get("text_equal") for result in verification.values())
    return 0 if not failures and complete else 1


def start_ways(stack: ExitStack, tmp: Path, wanted: list[str], notes: list[str], redis_url: str) -> list[Way]:
    """Start the simulator and every relay asked for; their lifetimes end with `stack`."""
    simulator = stack.enter_context(simulator_process())
    upstream_base = simulator.url.rsplit("/v1/", 1)[0]
    ways: list[Way] = []
    if "direct" in wanted:
        ways.append(Way("direct", simulator.url, simulator.process.pid))
    if "bare" in wanted:
        ways.append(Way("bare relay", *stack.enter_context(passthrough_process(upstream_base))))
    minimal_env = django_env(tmp / "minimal", simulator.url)
    if "minimal" in wanted:
        ways.append(Way("minimal consumer", *stack.enter_context(minimal_consumer_process(simulator.url, minimal_env))))
    for key in FLOOR_KEYS:
        if key in wanted:
            floor = start_floor(stack, key.removeprefix("floor-"), simulator.url, minimal_env, tmp, notes)
            if floor is not None:
                ways.append(floor)
    for kind in ("postgresql", "sqlite"):
        if kind not in wanted:
            continue
        base_env = django_env(tmp / kind, simulator.url)
        if kind == "postgresql":
            if not service_answers(lambda: psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()):
                notes.append(f"PostgreSQL at {POSTGRES_ADMIN_URL} did not answer: skipped")
                continue
            redis_pid = None
            if redis_url == "private":
                private = stack.enter_context(cpu.private_redis(free_port()))
                if private is None:
                    notes.append("no redis-server on this machine: skipped PostgreSQL + Redis")
                    continue
                redis_url, redis_pid = private
            if redis_url and not service_answers(lambda url=redis_url: redis_ping(url)):
                notes.append(f"Redis at {redis_url} did not answer: skipped PostgreSQL + Redis")
                continue
            database = stack.enter_context(postgres_database(base_env, redis_url, redis_pid))
        else:
            database = stack.enter_context(sqlite_database(base_env, tmp / kind))
        try:
            token = switchboard_prepare(database.env)
            daphne = stack.enter_context(daphne_process(database.settings_dict, database.env))
        except Exception as exc:
            notes.append(f"switchboard ({database.kind}) did not start: {exc}")
            continue
        ways.append(Way(f"switchboard ({database.kind})", f"{daphne.ws_url}/v1/responses", daphne.process.pid,
                        {"Authorization": f"Bearer {token}"}, database))
    return ways


def start_floor(stack: ExitStack, kind: str, upstream_url: str, env: dict[str, str], tmp: Path,
                notes: list[str]) -> Way | None:
    """The minimal consumer that writes each client frame before it sends it (bench/floor_consumer.py)."""
    database = ""
    if kind == "sqlite":
        database = str(tmp / "floor.sqlite3")
        with sqlite3.connect(database, isolation_level=None) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, body TEXT)")
    elif kind == "postgresql":
        if not service_answers(lambda: psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()):
            notes.append(f"PostgreSQL at {POSTGRES_ADMIN_URL} did not answer: skipped floor-postgresql")
            return None
        database = stack.enter_context(throwaway_database("switchboard_floor"))
        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body text)")
    floor_env = {**env, "BENCH_FLOOR": kind, "BENCH_FLOOR_DATABASE": database}
    url, pid = stack.enter_context(minimal_consumer_process(upstream_url, floor_env, "bench.floor_consumer"))
    return Way("floor: thread hop" if kind == "thread" else f"floor: {kind} commit", url, pid, floor=True)


def measure(ways: list[Way], loads: list[Load], repeats: int, timeout: float):
    """Warm every way up, then run every load on every way, `repeats` times, interleaved.

    The order of ways rotates each repeat so no way always runs right after the
    same neighbour (this machine is noisy and its noise is not uniform in time).
    A failed run is reported and left out of the medians; the way keeps its
    place in the next repeats.
    """
    samples: dict[tuple[str, str], list[Sample]] = {}
    failures: dict[str, list[str]] = {}
    received_elsewhere: dict[str, str] = {}

    def run_once(way: Way, load: Load, label: str) -> Sample | None:
        received = way.database.received if way.database else received_elsewhere
        since = last_record_id(way.database) if way.database else 0
        before: dict[str, float | dict] = {}

        def readings() -> dict[str, float | dict]:
            database = way.database
            return {"relay": cpu.tree_seconds(way.pid),
                    "backends": database.backends.seconds() if database and database.backends else {},
                    "redis": cpu.seconds(database.redis_pid) if database and database.redis_pid else 0.0}

        try:
            sample = asyncio.run(drive(way, load, received, timeout, lambda: before.update(readings())))
        except Exception as exc:
            failures.setdefault(way.name, []).append(f"{label}: {exc!r}")
            print(f"  {label:<21} {way.name:<28} FAILED: {exc!r}", file=sys.stderr, flush=True)
            if way.database:
                wait_for_recorder(way.database, 0, since, timeout=10)
            return None
        if way.database:
            sample.recording_lag_s = wait_for_recorder(way.database, sample.turns + len(sample.cold_ttfd_ms), since)
        after = readings()
        sample.relay_cpu_s = after["relay"] - before["relay"]
        sample.database_cpu_s = cpu.spent(before["backends"], after["backends"])
        sample.redis_cpu_s = after["redis"] - before["redis"]
        return sample

    for way in ways:
        run_once(way, Load("warm-up", 4, 3, loads[0].deltas), "warm-up")
    for repeat in range(repeats):
        shift = repeat % max(1, len(ways))
        for load in loads:
            for way in ways[shift:] + ways[:shift]:
                sample = run_once(way, load, f"run {repeat + 1}/{repeats} {load.key}")
                if sample is None:
                    continue
                samples.setdefault((way.name, load.key), []).append(sample)
                figures = sample.figures
                lag = "" if not way.database else (
                    f", rec. lag {sample.recording_lag_s:.2f}s" if sample.recording_lag_s is not None
                    else ", recorder did not catch up")
                print(f"  run {repeat + 1}/{repeats} {load.key:<13} {way.name:<28} "
                      f"{figures['events_per_s']:>7.0f} events/s, TTFD p50 {figures['ttfd_p50_ms']:7.2f} ms, "
                      f"CPU relay {figures['relay_cpu_percent']:3.0f}% client {figures['client_cpu_percent']:3.0f}%{lag}",
                      file=sys.stderr, flush=True)
    return samples, failures


# --- report -------------------------------------------------------------------------------------------------------


if __name__ == "__main__":
    sys.exit(main())

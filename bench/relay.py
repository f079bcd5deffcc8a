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
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import cpu  # noqa: E402
import psycopg  # noqa: E402
from throwaway_pg import POSTGRES_ADMIN_URL, throwaway_database  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from tests.live import BIN, daphne_process, free_port, simulator_process, stop, wait_for_port  # noqa: E402

MODEL = "gpt-5.5"
DELTA = "response.output_text.delta"
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
# Targets from the capacity issue: CPU per relayed event against the minimal Channels consumer's, at every
# load: the relay's process tree on SQLite; with PostgreSQL (and Redis), their CPU counted too.
TARGET_CPU_RATIO = {"sqlite": 1.10, "postgresql": 1.20}


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


@dataclass
class StoredDatabase:
    """A Switchboard database the benchmark writes to, and how to count what the recorder has stored."""

    kind: str  # "postgresql" | "sqlite"
    env: dict[str, str]
    settings_dict: dict
    count_stored: Callable[[int], int]  # stored responses whose record id is above the argument
    received: dict[str, str] = field(default_factory=dict)  # response id → text the client got
    backends: cpu.DatabaseBackends | None = None  # PostgreSQL: whose CPU is the database's own
    redis_pid: int | None = None  # the benchmark's private redis-server, whose CPU is the layer's


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


def stored_count(database: StoredDatabase, since: int = 0) -> int:
    try:
        return database.count_stored(since)
    except (psycopg.Error, sqlite3.Error):
        return -1  # locked, or not there yet


def last_record_id(database: StoredDatabase) -> int:
    try:
        return database.count_stored(-1)
    except (psycopg.Error, sqlite3.Error):
        return 0


def wait_for_recorder(database: StoredDatabase, expected: int, since: int,
                      timeout: float = 120.0) -> float | None:
    """Seconds until the database holds `expected` completed responses with a record id above `since`
    (this run's), or None on timeout. Counting only this run's keeps each poll as cheap in the last
    run as in the first (counting every stored response scanned all their items: the figure grew by
    0.3 s a run on PostgreSQL while the recorder's queue was already empty)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if stored_count(database, since) >= expected:
            return time.perf_counter() - start
        time.sleep(0.02)
    return None


# --- processes ----------------------------------------------------------------------------------------------------

@contextmanager
def children_output_to(log: Path) -> Iterator[None]:
    """Processes started inside write their stdout and stderr to `log` (access logs, banners, tracebacks).

    The report stays readable; the log is kept and named at the end so a crash can be read.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, sink):
            os.close(fd)


@contextmanager
def passthrough_process(upstream_base: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "passthrough.py"), "--port", str(port), "--upstream", upstream_base], cwd=ROOT
    )
    try:
        wait_for_port(port, process)
        yield f"ws://127.0.0.1:{port}/v1/responses", process.pid
    finally:
        stop(process)


@contextmanager
def minimal_consumer_process(upstream_url: str, env: dict[str, str],
                             module: str = "bench.minimal_consumer") -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), f"{module}:application"],
        cwd=ROOT, env={**os.environ, **env, "BENCH_UPSTREAM_URL": upstream_url},
    )
    try:
        wait_for_port(port, process)
        yield f"ws://127.0.0.1:{port}/v1/responses", process.pid
    finally:
        stop(process)


def django_env(var_dir: Path, simulator_url: str) -> dict[str, str]:
    """Production-shaped settings (DEBUG off: no query log), the simulator as the default upstream."""
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SWITCHBOARD_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "OPENAI_API_KEY": "",
        "OPENAI_WEBSOCKET_URL": simulator_url,
        "REDIS_URL": "",
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }


def switchboard_prepare(env: dict[str, str]) -> str:
    """Migrate, sync the default profile onto the simulator, and return a fresh personal token."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "switchboard_db.py"), "prepare"], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"preparing the database failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["token"]


def switchboard_dump(database: StoredDatabase) -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, str(BENCH / "switchboard_db.py"), "dump"], cwd=ROOT, env={**os.environ, **database.env},
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"reading the database failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Raw SQL on purpose: this process never configures Django (two databases in one run).
# A response counts as stored once its record is completed and its output item is written.
STORED_SQL = (
    "SELECT COUNT(*) FROM sessions_app_responserecord r WHERE r.id > {} AND r.status = 'completed' AND EXISTS "
    "(SELECT 1 FROM sessions_app_item i WHERE i.response_id = r.id AND i.direction = 'output')"
)
LAST_ID_SQL = "SELECT COALESCE(MAX(id), 0) FROM sessions_app_responserecord"


def _count(execute, since: int) -> int:
    """`since` -1: the highest record id; else the stored responses with a record id above it."""
    return execute(LAST_ID_SQL if since < 0 else STORED_SQL.format(int(since))).fetchone()[0]


@contextmanager
def postgres_database(base_env: dict[str, str], redis_url: str, redis_pid: int | None) -> Iterator[StoredDatabase]:
    with throwaway_database("switchboard_bench") as url, psycopg.connect(url, autocommit=True) as reader:
        def count_stored(since: int) -> int:
            return _count(reader.execute, since)

        info = reader.info
        settings_dict = {"ENGINE": "django.db.backends.postgresql", "NAME": info.dbname, "USER": info.user,
                         "PASSWORD": info.password or "", "HOST": info.host, "PORT": info.port}
        env = {**base_env, "DATABASE_URL": url.replace("postgresql://", "postgres://", 1), "REDIS_URL": redis_url}
        yield StoredDatabase("postgresql" if redis_url else "pg, no redis", env, settings_dict, count_stored,
                             backends=cpu.DatabaseBackends(reader), redis_pid=redis_pid)


@contextmanager
def sqlite_database(base_env: dict[str, str], var_dir: Path) -> Iterator[StoredDatabase]:
    path = var_dir / "switchboard-bench.sqlite3"
    env = {**base_env, "DATABASE_URL": f"sqlite:///{path}"}
    reader: sqlite3.Connection | None = None

    def count_stored(since: int) -> int:
        nonlocal reader
        if reader is None:
            reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)
        return _count(reader.execute, since)

    try:
        yield StoredDatabase("sqlite", env, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}, count_stored)
    finally:
        if reader is not None:
            reader.close()


def service_answers(check: Callable[[], object]) -> bool:
    try:
        check()
    except Exception:
        return False
    return True


def redis_ping(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_connect_timeout=1).ping()


# --- the run ------------------------------------------------------------------------------------------------------

WAY_KEYS = ("direct", "bare", "minimal", "postgresql", "sqlite")
# Opt-in (--ways): the minimal consumer plus only an input write before each send (bench/floor_consumer.py).
FLOOR_KEYS = ("floor-thread", "floor-sqlite", "floor-postgresql")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1×10 and 10×3 turns, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each load per way (default 3; quick 1)")
    parser.add_argument("--deltas", type=int, default=200, help="output_text deltas per turn (default 200)")
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
        loads = [Load("chain", 1, 50, args.deltas), Load("concurrent", 50, 10, args.deltas)]
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


def verify(database: StoredDatabase) -> dict:
    """Compare the output text each stored response holds with what the clients received."""
    try:
        stored = switchboard_dump(database)
    except Exception as exc:
        return {"error": str(exc)}
    missing = [rid for rid in database.received if rid not in stored]
    mismatched = [rid for rid, text in database.received.items() if rid in stored and stored[rid]["text"] != text]
    return {
        "received": len(database.received),
        "stored": len(stored),
        "stored_completed": sum(1 for row in stored.values() if row["status"] == "completed"),
        "missing": len(missing),
        "mismatched": len(mismatched),
        "text_equal": not missing and not mismatched,
        "examples": (missing + mismatched)[:5],
    }


# --- report -------------------------------------------------------------------------------------------------------

def median_figures(runs: list[Sample], recorded: bool) -> dict[str, float | None]:
    per_run = [run.figures for run in runs]
    figures: dict[str, float | None] = {key: statistics.median(f[key] for f in per_run) for key in per_run[0]}
    if recorded:
        lags = [run.recording_lag_s for run in runs if run.recording_lag_s is not None]
        figures["recording_lag_s"] = statistics.median(lags) if lags else None
        figures["recorder_timeouts"] = sum(1 for run in runs if run.recording_lag_s is None)
    return figures


def build_report(ways, loads, repeats, samples, failures, verification, notes, elapsed) -> dict:
    report = {"repeats": repeats, "elapsed_s": elapsed, "notes": notes, "failures": failures,
              "loads": [], "verification": verification}
    for load in loads:
        entry = {**asdict(load), "title": load.title, "ways": {}, "comparisons": {}}
        for way in ways:
            runs = samples.get((way.name, load.key))
            if runs:
                entry["ways"][way.name] = {"median": median_figures(runs, recorded=way.database is not None),
                                           "runs": [{**run.figures, "recording_lag_s": run.recording_lag_s,
                                                     "wall_s": run.wall_s, "events": run.events} for run in runs]}
        for way in ways:
            if not (way.database or way.floor) or way.name not in entry["ways"]:
                continue
            ours = entry["ways"][way.name]["median"]
            comparison = {}
            # Switchboard is also compared with the floor of its database: what it costs beyond the rules.
            own_floor = f"floor: {way.database.kind} commit" if way.database else None
            for baseline in ("direct", "bare relay", "minimal consumer", own_floor):
                if baseline in entry["ways"]:
                    theirs = entry["ways"][baseline]["median"]
                    comparison[baseline] = {
                        "cpu_ratio": ours["all_cpu_us_per_event"] / theirs["relay_cpu_us_per_event"],
                        "events_ratio": ours["events_per_s"] / theirs["events_per_s"],
                        "ttfd_p50_delta_ms": ours["ttfd_p50_ms"] - theirs["ttfd_p50_ms"],
                        "turn_p50_delta_ms": ours["turn_p50_ms"] - theirs["turn_p50_ms"],
                    }
            if "minimal consumer" in comparison:
                target = comparison["minimal consumer"]
                kind = way.database.kind if way.database else None
                if kind in TARGET_CPU_RATIO:
                    target["cpu_target"] = TARGET_CPU_RATIO[kind]
                    target["pass_cpu"] = target["cpu_ratio"] <= TARGET_CPU_RATIO[kind]
            entry["comparisons"][way.name] = comparison
        report["loads"].append(entry)
    return report


def print_report(report: dict) -> None:
    columns = [("turns/s", "turns_per_s", "{:.1f}"), ("events/s", "events_per_s", "{:.0f}"),
               ("TTFD p50", "ttfd_p50_ms", "{:.2f}"), ("TTFD p95", "ttfd_p95_ms", "{:.2f}"),
               ("turn p50", "turn_p50_ms", "{:.2f}"), ("turn p95", "turn_p95_ms", "{:.2f}"),
               ("1st TTFD", "cold_ttfd_p50_ms", "{:.2f}"), ("CPU µs/ev", "relay_cpu_us_per_event", "{:.1f}"), ("+PG µs/ev", "database_cpu_us_per_event", "{:.1f}"),
               ("+Redis", "redis_cpu_us_per_event", "{:.1f}"), ("CPU %", "relay_cpu_percent", "{:.0f}")]
    print(f"\nRelay benchmark: median of {report['repeats']} interleaved run(s) per load and way; took "
          f"{report['elapsed_s']:.0f} s.\nLatencies in ms, from sending response.create; each socket's first turn is "
          "untimed (1st TTFD: its p50).\nCPU per relayed event (user + system, bench/cpu.py), from the clock's start "
          "until the recorder has caught up: the relay's process tree (direct: the simulator's); +PG: the\n"
          "PostgreSQL backends of the way's database; +Redis: the benchmark's private redis-server. CPU/event × compares "
          "all three with the minimal consumer's.")
    for note in report["notes"]:
        print(f"note: {note}")
    for way, reasons in report["failures"].items():
        for reason in reasons:
            print(f"FAILED: {way}: {reason}")
    for load in report["loads"]:
        print(f"\n== {load['key']}: {load['title']}")
        print(f"{'way':<28}" + "".join(f"{title:>10}" for title, _, _ in columns) + f"{'rec. lag':>10}")
        for name, way in load["ways"].items():
            median = way["median"]
            lag = median.get("recording_lag_s")
            lag_text = "" if "recording_lag_s" not in median else f"{lag:.2f}s" if lag is not None else "timeout"
            print(f"{name:<28}" + "".join(f"{fmt.format(median[key]):>10}" for _, key, fmt in columns)
                  + f"{lag_text:>10}")
        for name, comparison in load["comparisons"].items():
            print(f"{name} vs:")
            for baseline, figures in comparison.items():
                line = (f"  {baseline:<20} CPU/event ×{figures['cpu_ratio']:.2f}   events/s ×{figures['events_ratio']:.3f}   "
                        f"Δ TTFD p50 {figures['ttfd_p50_delta_ms']:+.2f} ms   "
                        f"Δ turn p50 {figures['turn_p50_delta_ms']:+.2f} ms")
                if "pass_cpu" in figures:
                    line += f"   target CPU/event ≤ ×{figures['cpu_target']:.2f}: {'PASS' if figures['pass_cpu'] else 'FAIL'}"
                print(line)
    if report["verification"]:
        print("\n== database verification (stored output text vs what the clients received)")
        for name, result in report["verification"].items():
            if "error" in result:
                print(f"{name}: could not read the database: {result['error']}")
                continue
            print(f"{name}: responses received {result['received']}, stored {result['stored']} "
                  f"(completed {result['stored_completed']}), output text equal: "
                  f"{'yes' if result['text_equal'] else 'no'}, missing {result['missing']}, "
                  f"mismatched {result['mismatched']}"
                  + (f" (e.g. {', '.join(result['examples'])})" if result["examples"] else ""))


if __name__ == "__main__":
    sys.exit(main())

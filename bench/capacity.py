"""Capacity benchmark: how many paced conversations one (or two) Daphne processes relay within the latency target.

The simulator streams at a human pace (50 tokens/s). N conversations open over `--ramp` seconds, each runs
`--turns` chained turns (`previous_response_id`) of `--tokens` deltas, once straight to the simulator ("direct")
and once through Switchboard's gateway socket (`/v1/responses`, a personal API token, recording on), interleaved
round by round. What Switchboard ADDS at the same N (its median of rounds minus direct's) is the figure:

    continuation TTFD p50 / p99   sending response.create (turn 2+) → its first output_text delta
    inter-delta gap p99           between two deltas of one response (nominally 1000 / rate ms)
    first turn TTFD p50 / p99     the same for turn 1 (Switchboard opens its upstream and conversation here)

The latency target (issue 16): added continuation TTFD p99 ≤ 10 ms and added gap p99 ≤ 10 ms, with
no failed conversation. The report names the largest N holding it for 1 and for 2 processes.

    .venv/bin/python bench/capacity.py                                    # full run: N 50..500, 3 rounds
    .venv/bin/python bench/capacity.py --n 50,150 --rounds 1 --db sqlite  # smoke run
    .venv/bin/python bench/capacity.py --processes 2 --json out.json

Every server is a subprocess; the load comes from bench/capacity_client.py processes (`--clients`), never
from this one. Two processes serve one port the way the kernel offers without a proxy: Daphne (Twisted's
endpoint strings) cannot set SO_REUSEPORT, so this script binds one listening socket per process with
SO_REUSEPORT on the same port and hands each to its Daphne with `--fd`; the kernel spreads new connections
over the sockets by a hash of the address pair. One process gets its socket the same way, so both shapes
share the accept backlog (`--backlog`; a plain `-b/-p` Daphne listens with Twisted's 50).

With `--pin` each Daphne process gets a core of its own (the last ones) and everything else this run starts (the
simulator, the clients, this script, the PostgreSQL backends serving the bench database) goes on the others; the
machine's own processes (PostgreSQL's background writers, the shared Redis) may still run anywhere. That is
the shape of a server whose load comes from elsewhere, which a 2-core machine otherwise cannot give (there the
load took more than half the cores, and every way waited for one).

Two processes against one needs a core per process and one for the load. On 2 cores, `--core-share F` emulates
them: every Daphne process on the last core, each capped at F of it (bench/core_share.py, which says how the
emulation errs against two processes).

    .venv/bin/python bench/capacity.py --db pg --processes 1,2 --core-share 0.4 --n 150,175,200,250,300,325,350
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import cpu  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from capacity_report import report  # noqa: E402
from core_share import PERIOD_US, CoreShare  # noqa: E402
from relay import percentile  # noqa: E402
from relay_setup import (  # noqa: E402
    StoredDatabase,
    _count,
    children_output_to,
    django_env,
    last_record_id,
    redis_ping,
    service_answers,
    switchboard_prepare,
    wait_for_recorder,
)
from throwaway_pg import POSTGRES_ADMIN_URL  # noqa: E402

from tests.live import free_port, simulator_process, stop, wait_for_port  # noqa: E402

PG_DATABASE = "switchboard_bench_cap"


@dataclass
class Target:
    name: str
    url: str
    pids: list[int]
    headers: dict[str, str] = field(default_factory=dict)
    database: StoredDatabase | None = None


# --- servers ------------------------------------------------------------------------------------------------------

def reuseport_sockets(count: int, backlog: int) -> list[socket.socket]:
    """`count` listening sockets on one loopback port, each with SO_REUSEPORT (the kernel balances between them)."""
    sockets: list[socket.socket] = []
    port = 0
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        sock.listen(backlog)
        sock.setblocking(False)  # Twisted adopts it as it is
        sockets.append(sock)
    return sockets


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (threads it starts later inherit their starter's set)."""
    for task in os.scandir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, PermissionError):
            continue


@contextmanager
def switchboard_servers(env: dict[str, str], processes: int, backlog: int, minimal: bool = False,
                        server_cpus: list[int] | None = None, cap: CoreShare | None = None
                        ) -> Iterator[tuple[str, list[int]]]:
    """`processes` × `python -m sessions_app.serve --fd` behind one port; (ws base URL, pids). With `minimal`,
    stock `daphne --fd` serving bench/minimal_consumer.py (the forward-only consumer) instead.

    Each Daphne also listens on a private port of its own, only so this script can tell it is up. With `cap`
    (--core-share) each is capped at a share of its core.
    """
    sockets = reuseport_sockets(processes, backlog)
    port = sockets[0].getsockname()[1]
    started: list[subprocess.Popen] = []
    server = [str(Path(sys.executable).parent / "daphne")] if minimal else [sys.executable, "-m", "sessions_app.serve"]
    application = "bench.minimal_consumer:application" if minimal else "project.asgi:application"
    try:
        for sock in sockets:
            private = free_port()
            started.append(subprocess.Popen(
                [*server, "--fd", str(sock.fileno()), "-b", "127.0.0.1", "-p", str(private), application],
                cwd=BENCH.parent, env={**os.environ, **env}, pass_fds=(sock.fileno(),)))
            sock.close()  # the child holds it now
            wait_for_port(private, started[-1], timeout=60)
            if server_cpus:  # --pin: process i on the i-th server core
                pin(started[-1].pid, {server_cpus[len(started) - 1]})
            if cap is not None:
                cap.add(started[-1].pid)
        yield f"ws://127.0.0.1:{port}/v1/responses", [process.pid for process in started]
    finally:
        for process in started:
            stop(process)
            if cap is not None:
                cap.remove(process.pid)
        for sock in sockets:
            sock.close()


@contextmanager
def database(kind: str, tmp: Path, simulator_url: str, redis_url: str) -> Iterator[StoredDatabase]:
    """SQLite in a temporary directory (in-memory channel layer), or PostgreSQL `switchboard_bench_cap` + Redis."""
    env = django_env(tmp / kind, simulator_url)
    if kind == "sqlite":
        path = tmp / kind / "capacity.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as created:
            created.execute("PRAGMA journal_mode=WAL")
        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20, check_same_thread=False)
        try:
            yield StoredDatabase("sqlite", {**env, "DATABASE_URL": f"sqlite:///{path}"}, {},
                                 lambda since: _count(reader.execute, since))
        finally:
            reader.close()
        return
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    redis.Redis.from_url(redis_url).flushdb()  # the benchmark's own Redis database (--redis-url)
    try:
        with psycopg.connect(f"{base}/{PG_DATABASE}", autocommit=True) as reader:
            url = f"{base}/{PG_DATABASE}".replace("postgresql://", "postgres://", 1)
            yield StoredDatabase("pg", {**env, "DATABASE_URL": url, "REDIS_URL": redis_url}, {},
                                 lambda since: _count(reader.execute, since), backends=cpu.DatabaseBackends(reader))
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def start_targets(stack: ExitStack, args, tmp: Path, notes: list[str]) -> list[Target]:
    simulator = stack.enter_context(simulator_process("--tokens-per-second", str(args.rate)))
    targets = [Target("direct", simulator.url, [simulator.process.pid])]
    if args.minimal:
        env = {**django_env(tmp / "minimal", simulator.url), "BENCH_UPSTREAM_URL": simulator.url}
        for processes in args.processes:
            url, pids = stack.enter_context(switchboard_servers(env, processes, args.backlog, minimal=True,
                                                                server_cpus=args.server_cpus, cap=args.cap))
            targets.append(Target(f"minimal {processes}p", url, pids))
    for kind in args.db:
        if kind == "pg" and not (service_answers(lambda: psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close())
                                 and service_answers(lambda: redis_ping(args.redis_url))):
            notes.append(f"PostgreSQL ({POSTGRES_ADMIN_URL}) or Redis ({args.redis_url}) did not answer: pg skipped")
            continue
        stored = stack.enter_context(database(kind, tmp, simulator.url, args.redis_url))
        token = switchboard_prepare(stored.env, counted=args.limited)
        for processes in args.processes:
            url, pids = stack.enter_context(switchboard_servers(stored.env, processes, args.backlog,
                                                                server_cpus=args.server_cpus, cap=args.cap))
            targets.append(Target(f"{kind} {processes}p", url, pids, {"Authorization": f"Bearer {token}"}, stored))
    return targets


# --- one round ----------------------------------------------------------------------------------------------------

def drive(target: Target, n: int, args, timeout: float) -> dict:
    """N conversations through `target`, split over `args.clients` client processes; the merged raw figures."""
    offsets = [i * args.ramp / n for i in range(n)]
    clients = []
    results = tempfile.TemporaryDirectory(prefix="capacity-clients-")
    for share in range(args.clients):
        client = subprocess.Popen([sys.executable, str(BENCH / "capacity_client.py")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        client.stdin.write(json.dumps({"url": target.url, "headers": target.headers, "turns": args.turns,
                                       "tokens": args.tokens, "timeout": timeout,
                                       "offsets": offsets[share::args.clients],
                                       "result": str(Path(results.name, f"{share}.json"))}) + "\n")
        client.stdin.flush()
        clients.append(client)
    for client in clients:
        if client.stdout.readline().strip() != "ready":
            raise RuntimeError("a client process did not start")
    epoch = time.time() + 0.2
    for client in clients:
        client.stdin.write(json.dumps({"epoch": epoch}) + "\n")
        client.stdin.flush()
    merged: dict = {}
    with results:
        for share, client in enumerate(clients):
            if client.wait() != 0:
                raise RuntimeError(f"client process {share} exited {client.returncode}")
            for key, value in json.loads(Path(results.name, f"{share}.json").read_text()).items():
                merged[key] = merged.get(key, 0 if isinstance(value, int | float) else []) + value
    return merged


def run_round(target: Target, n: int, args, simulator_pid: int) -> dict:
    since = last_record_id(target.database) if target.database else 0
    pids = target.pids if simulator_pid in target.pids else [*target.pids, simulator_pid]  # direct: it *is* the server
    cpu_before = [cpu.seconds(pid) for pid in pids]
    wait_before = [cpu.runqueue_wait_seconds(pid) for pid in target.pids]
    throttled_before = args.cap.throttled_seconds(target.pids) if args.cap else 0.0
    backends = target.database.backends if target.database else None
    if backends and args.server_cpus:  # --pin: the database works on the load's cores, not the servers'
        for pid in backends.pids():
            pin(pid, set(args.load_cpus))
    database_before = backends.seconds() if backends else {}
    began = time.perf_counter()
    raw = drive(target, n, args, timeout=args.ramp + args.turns * args.tokens / args.rate * 10 + 60)
    wall = time.perf_counter() - began
    database_share = cpu.spent(database_before, backends.seconds()) / wall * 100 if backends else float("nan")
    shares = [(cpu.seconds(pid) - before) / wall * 100 for pid, before in zip(pids, cpu_before, strict=True)]
    server = sum(shares[:len(target.pids)])
    waited = sum(cpu.runqueue_wait_seconds(pid) - before for pid, before in zip(target.pids, wait_before, strict=True))
    figures = {
        "n": n, "wall_s": wall, "turns_completed": raw["turns_completed"], "failures": raw["failures"],
        "cont_p50": _pct(raw["continuation_ttfd_ms"], 50), "cont_p99": _pct(raw["continuation_ttfd_ms"], 99),
        "gap_p50": _pct(raw["gap_ms"], 50), "gap_p99": _pct(raw["gap_ms"], 99),
        "first_p50": _pct(raw["first_ttfd_ms"], 50), "first_p99": _pct(raw["first_ttfd_ms"], 99),
        "connect_p99": _pct(raw["connect_ms"], 99),
        "server_cpu_percent": server, "simulator_cpu_percent": shares[-1],
        "client_cpu_percent": raw["cpu_s"] / wall * 100, "server_wait_percent": waited / wall * 100,
        "server_cpu_each": [round(share) for share in shares[:len(target.pids)]],
        "database_cpu_percent": database_share,  # PostgreSQL's backends (SQLite works inside the server's CPU)
        # --core-share: time the Daphnes' cgroups slept at their cap (direct and unshared runs: nan)
        "server_throttled_percent": ((args.cap.throttled_seconds(target.pids) - throttled_before) / wall * 100
                                     if args.cap and args.cap.caps(target.pids) else float("nan")),
        # CPU per delta relayed (direct: the simulator's per delta sent): what a core's capacity divides by
        "server_us_per_delta": server / 100 * wall / max(1, raw["turns_completed"] * args.tokens) * 1e6,
    }
    if target.database:
        figures["recording_lag_s"] = wait_for_recorder(target.database, raw["turns_completed"], since, timeout=300)
    return figures


def _pct(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def measure(targets: list[Target], args) -> dict[tuple[str, int], list[dict]]:
    """A warm-up per target, then every N on every target, round by round; the order of targets rotates per round."""
    rounds: dict[tuple[str, int], list[dict]] = {}
    simulator_pid = targets[0].pids[0]
    warm = argparse.Namespace(**{**vars(args), "turns": 2, "tokens": 10, "ramp": 0.5})
    for target in targets:
        run_round(target, 10, warm, simulator_pid)
    for number in range(args.rounds):
        shift = number % len(targets)
        for n in args.n:
            for target in targets[shift:] + targets[:shift]:
                figures = run_round(target, n, args, simulator_pid)
                rounds.setdefault((target.name, n), []).append(figures)
                print(f"  round {number + 1}/{args.rounds} N={n:<4} {target.name:<9} {progress(figures)}",
                      file=sys.stderr, flush=True)
    return rounds


def progress(f: dict) -> str:
    lag = f.get("recording_lag_s", "")
    return (f"cont TTFD p50/p99 {f['cont_p50']:7.1f} /{f['cont_p99']:7.1f} ms, gap p99 {f['gap_p99']:6.1f} ms, "
            f"first TTFD p99 {f['first_p99']:7.1f} ms, failures {len(f['failures'])}, CPU server "
            f"{'+'.join(map(str, f['server_cpu_each']))}% sim {f['simulator_cpu_percent']:3.0f}% client "
            f"{f['client_cpu_percent']:3.0f}%"
            + ("" if math.isnan(f["database_cpu_percent"]) else f" PostgreSQL {f['database_cpu_percent']:3.0f}%")
            + f", server waited for a core {f['server_wait_percent']:3.0f}%"
            + ("" if lag == "" else ", recorder behind" if lag is None else f", rec. lag {lag:.1f}s"))


# --- the run ------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=numbers, default=[50, 150, 300, 500], help="conversations per round (list)")
    parser.add_argument("--turns", type=int, default=3, help="chained turns per conversation")
    parser.add_argument("--tokens", type=int, default=100, help="output_text deltas per turn")
    parser.add_argument("--rate", type=float, default=50.0, help="the simulator's tokens/s")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the N conversations open")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every N on every way")
    parser.add_argument("--db", type=lambda text: [k for k in text.split(",") if k], default=["sqlite", "pg"],
                        help="sqlite (embedded, in-memory channel layer) and/or pg (PostgreSQL + Redis)")
    parser.add_argument("--processes", type=numbers, default=[1, 2], help="Daphne processes behind the port (list)")
    parser.add_argument("--clients", type=int, default=1, help="client processes that share the load")
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog of the served port")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="channel layer of the pg runs")
    parser.add_argument("--minimal", action="store_true",
                        help="also run the forward-only consumer (bench/minimal_consumer.py on stock Daphne): the framework's floor")
    parser.add_argument("--limited", action="store_true",
                        help="the bench user's limits are counted (set too high to refuse), as under the default "
                             "limits; without it the user has none, and nothing is counted")
    parser.add_argument("--pin", action="store_true",
                        help="each Daphne process on a core of its own (the last ones); this script, the "
                             "simulator, the clients and the PostgreSQL backends on the others")
    parser.add_argument("--core-share", type=float, metavar="F",
                        help="every Daphne process on the last core, each capped at F of it (cgroups; root): two "
                             "processes against one on a 2-core machine (bench/core_share.py)")
    parser.add_argument("--json", type=Path, help="write every round's figures to this file")
    args = parser.parse_args(argv)
    if set(args.db) - {"sqlite", "pg"} or not args.processes or not args.n or min(args.n + args.processes) < 1:
        parser.error("--db takes sqlite,pg; --n and --processes take positive numbers")
    args.n = sorted(set(args.n))
    cpus = sorted(os.sched_getaffinity(0))
    args.server_cpus, args.load_cpus = None, cpus
    if args.core_share is not None:
        if not 0 < args.core_share * max(args.processes) <= 1 or len(cpus) < 2:
            parser.error("--core-share F needs 0 < F × processes ≤ 1 and at least 2 cores")
        args.pin = True
        args.load_cpus, args.server_cpus = cpus[:-1], [cpus[-1]] * max(args.processes)
    elif args.pin:
        if len(cpus) <= max(args.processes):
            parser.error(f"--pin needs more cores than Daphne processes ({len(cpus)} cores here)")
        args.load_cpus = cpus[:len(cpus) - max(args.processes)]
        args.server_cpus = cpus[len(cpus) - max(args.processes):][::-1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Sockets: a conversation holds one in the client, two in Daphne and one in the simulator. Children inherit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.pin:
        os.sched_setaffinity(0, args.load_cpus)  # the simulator and the clients inherit it; servers are moved
    began = time.perf_counter()
    notes = [f"open files limit {hard}" + (" (too low for the largest N)" if hard < 2 * args.n[-1] + 256 else ""),
             "limits: counted, never reached (--limited)" if args.limited else "limits: none (nothing counted)"]
    if args.core_share is not None:
        notes.append(f"core share (--core-share): every Daphne process on core {args.server_cpus[0]}, each capped at "
                     f"{args.core_share:g} of it ({args.core_share * PERIOD_US / 1000:g} ms per {PERIOD_US / 1000:g} ms, "
                     f"cgroups); the rest on {args.load_cpus}")
    elif args.pin:
        notes.append(f"pinned (--pin): Daphne process i on core {args.server_cpus}[i], where nothing else this run "
                     f"starts runs; this script, the simulator, the clients and PostgreSQL's backends on {args.load_cpus}")
    server_log = Path(tempfile.gettempdir()) / f"switchboard-capacity-{os.getpid()}.log"
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="switchboard-capacity-") as tmp:
        try:
            args.cap = CoreShare(args.core_share) if args.core_share is not None else None
        except OSError as error:
            sys.exit(f"--core-share: {error}")
        if args.cap is not None:
            stack.callback(args.cap.close)
        with children_output_to(server_log):
            targets = start_targets(stack, args, Path(tmp), notes)
        rounds = measure(targets, args)
    crashes = server_log.read_text(errors="replace").count("Exception inside application")
    notes.append(f"server output: {server_log}" + (f" ({crashes} 'Exception inside application')" if crashes else ""))
    summary = report([target.name for target in targets], rounds, args, notes, time.perf_counter() - began)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    failed = sum(len(run["failures"]) for runs in rounds.values() for run in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

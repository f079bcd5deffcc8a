"""Soak: mixed traffic through the production shape for a set time, with faults on a schedule. Not a test.

    .venv/bin/python bench/soak.py                       # 30 minutes (as README's Reliability table reports)
    .venv/bin/python bench/soak.py --minutes 3 --fault-every 40   # a short look
    .venv/bin/python bench/soak.py --json soak.json      # every sample and count as JSON too

What runs (bench/soak_world.py): deploy/production.py (nginx with TLS in front of 2 Daphne processes,
DEBUG off) on a PostgreSQL cluster and a redis-server of the soak's own (so restarting them harms nothing
else), its upstream a simulator process at 200 tokens/s whose sockets end after 120 s (the 60-minute limit,
compressed). The traffic (bench/soak_clients.py): browser tabs, agents on the official SDK with tool calls,
idle gateway sockets; the per-user limits are the defaults (on).

Faults, one every --fault-every seconds, in turn: SIGKILL of Daphne process A mid-traffic (the supervisor
starts it again), SIGTERM of A (a graceful restart: it drains), Redis stopped for 3 s, PostgreSQL stopped
for 3 s. Process B is never signalled, so its memory over the whole run shows any growth trend.

It prints:
* memory (RSS) per process over time, and B's trend in MB per hour (least squares over the last two thirds);
* events lost: responses the clients saw complete whose record is missing, not completed, or holds other
  text (must be 0), and the cut ones (a fault ended them) whose record lacks what the client saw;
* context lost: replies that forgot a fact whose `remember` turn had completed (must be 0);
* errors by code (client side, and the records' ErrorEvent rows), notices, reconnects;
* TTFD p50 / p99 during faults (turns sent within 15 s after one began) and between them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, nullcontext
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cpu  # noqa: E402
import soak_clients as clients  # noqa: E402
from soak_world import (  # noqa: E402
    CLUSTER_TOOLS,
    PrivateRedis,
    ProductionShape,
    populate,
    private_cluster,
    restart_cluster,
    restart_redis,
)

from tests.live import simulator_process  # noqa: E402

FAULT_WINDOW_SECONDS = 15.0
KILL_REACH_SECONDS = 2.0
DOWN_SECONDS = 3.0

RECORDS = """
import json, sys
from collections import Counter
from contextlib import ExitStack, nullcontext
from sessions_app.models import ErrorEvent, Item, ResponseRecord
wanted = json.loads(sys.stdin.readline())
out = {"responses": {}, "errors": dict(Counter(ErrorEvent.objects.values_list("code", flat=True)))}
for record in ResponseRecord.objects.filter(response_id__in=wanted):
    texts = Item.objects.filter(response=record, direction="output", item_type="message").order_by("position").values_list("text", flat=True)
    out["responses"][record.response_id] = {"status": record.status, "text": "".join(t or "" for t in texts)}
print(json.dumps(out))
"""


def rss_mb(pid: int | None) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, TypeError):
        return None
    return None


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    tail = samples[len(samples) // 3:]
    if len(tail) < 3:
        return None
    xs, ys = [t for t, _ in tail], [m for _, m in tail]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread * 3600 if spread else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Faults:
    """The schedule: each fault in turn, logged with its start time."""

    def __init__(self, shape: ProductionShape, redis: PrivateRedis, cluster: str | None) -> None:
        self.shape, self.redis, self.cluster = shape, redis, cluster
        self.log: list[tuple[float, str]] = []
        self.kinds = ["kill -9 daphne A", "SIGTERM daphne A (graceful restart)", "Redis down 3 s"]
        if cluster is not None:
            self.kinds.append("PostgreSQL down 3 s")

    def daphne_a(self) -> int:
        return self.shape.state()["daphne"][0]["pid"]

    def fire(self, n: int) -> None:
        kind = self.kinds[n % len(self.kinds)]
        self.log.append((time.time(), kind))
        print(f"  fault {n + 1}: {kind}", file=sys.stderr, flush=True)
        if kind.startswith("kill -9"):
            os.kill(self.daphne_a(), signal.SIGKILL)
        elif kind.startswith("SIGTERM"):
            os.kill(self.daphne_a(), signal.SIGTERM)
        elif kind.startswith("Redis"):
            restart_redis(self.redis, DOWN_SECONDS)
        elif self.cluster is not None:
            restart_cluster(self.cluster, DOWN_SECONDS)


async def run(args: argparse.Namespace, shape: ProductionShape, made: dict, faults: Faults) -> dict:
    ledger, stop = clients.Ledger(), asyncio.Event()
    memory: dict[str, list[tuple[float, float]]] = {}
    tasks = [asyncio.ensure_future(clients.browser(shape.origin, b["session"], b["conversations"], ledger,
                                                   clients.Script(f"b{n}", args.tokens, args.turns_per_conversation), stop, args.think))
             for n, b in enumerate(made["browsers"])]
    tasks += [asyncio.ensure_future(clients.agent(shape.origin, a["token"], ledger,
                                                  clients.Script(f"a{n}", args.tokens, args.turns_per_conversation), stop, args.think))
              for n, a in enumerate(made["agents"])]
    tokens = [a["token"] for a in made["agents"]] or ["none"]
    tasks += [asyncio.ensure_future(clients.idle(shape.origin, tokens[n % len(tokens)], ledger, stop))
              for n in range(args.idle)]
    began = time.time()
    next_fault, fault_count, next_sample = began + args.fault_every, 0, began
    while time.time() - began < args.minutes * 60:
        now = time.time()
        if now >= next_sample:
            state = shape.state()
            named = {"daphne A": state["daphne"][0]["pid"], "nginx (tree)": state["nginx"]}
            if len(state["daphne"]) > 1:
                named["daphne B"] = state["daphne"][1]["pid"]
            for name, pid in named.items():
                value = (sum(filter(None, (rss_mb(p) for p in cpu_tree(pid)))) if "tree" in name else rss_mb(pid))
                if value is not None:
                    memory.setdefault(name, []).append((now - began, value))
            next_sample = now + args.sample_every
        if args.fault_every and now >= next_fault:
            await asyncio.to_thread(faults.fire, fault_count)
            fault_count += 1
            next_fault = time.time() + args.fault_every
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait(tasks, timeout=90)
    for task in tasks:
        task.cancel()
    return {"ledger": ledger, "memory": memory, "began": began}


def cpu_tree(pid: int) -> list[int]:
    children, todo, found = cpu._children(), [pid], []
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def report(args, result: dict, records: dict, faults: Faults) -> dict:
    ledger: clients.Ledger = result["ledger"]
    stored = records["responses"]
    lost = [rid for rid, text in ledger.completed.items()
            if rid not in stored or stored[rid]["status"] != "completed" or stored[rid]["text"] != text]
    cut_short = [rid for rid, text in ledger.cut.items() if rid and not (stored.get(rid, {}).get("text", "")
                                                                       .startswith(text[:1] and text))]
    starts = [at for at, _ in faults.log]
    during = [ms for at, ms in ledger.turns if any(0 <= at - s <= FAULT_WINDOW_SECONDS for s in starts)]
    between = [ms for at, ms in ledger.turns if not any(0 <= at - s <= FAULT_WINDOW_SECONDS for s in starts)]
    return {
        "minutes": args.minutes, "faults": [kind for _, kind in faults.log],
        "turns": len(ledger.turns), "completed": len(ledger.completed), "cut_by_faults": len(ledger.cut),
        "events_lost": len(lost),
        "lost_ended_at": {rid: ledger.ended_at.get(rid) for rid in lost},
        "fault_log": faults.log,
        "lost_after": dict(Counter(_last_fault(faults.log, ledger.ended_at.get(rid)) for rid in lost)),
        "lost_examples": [f"{rid}: client {ledger.completed[rid][:40]!r} ({len(ledger.completed[rid])}), record "
                          + (f"{stored[rid]['status']} {stored[rid]['text'][:40]!r} ({len(stored[rid]['text'])})"
                             if rid in stored else "missing") for rid in lost[:5]],
        "cut_records_missing_text": len(cut_short),
        "cut_after": dict(Counter(_last_fault(faults.log, ledger.ended_at.get(rid)) for rid in cut_short)),
        "cut_examples": [f"{rid}: client {len(ledger.cut[rid])} chars, record "
                         + (f"{stored[rid]['status']} {len(stored[rid]['text'])} chars" if rid in stored else "missing")
                         for rid in cut_short[:5]],
        "context_checks": ledger.context_checks, "context_lost": len(ledger.context_lost),
        "context_examples": ledger.context_lost[:3],
        "client_errors": dict(ledger.errors), "recorded_errors": records["errors"], "notices": dict(ledger.notices),
        "reconnects": dict(ledger.reconnects), "idle_socket_closes": ledger.idle_closed,
        "ttfd_ms": {"during_faults": {"n": len(during), "p50": percentile(during, 50), "p99": percentile(during, 99)},
                    "between_faults": {"n": len(between), "p50": percentile(between, 50),
                                       "p99": percentile(between, 99)}},
        "memory_mb": {name: {"first": s[0][1], "last": s[-1][1], "max": max(m for _, m in s),
                             "trend_mb_per_hour": slope_mb_per_hour(s), "samples": s}
                      for name, s in result["memory"].items() if s},
    }


def _last_fault(log: list[tuple[float, str]], at: float | None) -> str:
    """The fault nearest `at` that can explain it: begun up to the fault window before it, or up to
    KILL_REACH seconds after it (a process killed just after a client saw a response end takes the
    records it had not written yet); else "no fault"."""
    near = [(start, kind) for start, kind in log
            if at is not None and -KILL_REACH_SECONDS <= at - start <= FAULT_WINDOW_SECONDS]
    return near[-1][1] if near else "no fault"


def print_report(figures: dict) -> None:
    print(f"\nSoak: {figures['minutes']:g} min through nginx (TLS) and 2 Daphne processes; "
          f"{len(figures['faults'])} faults: {', '.join(sorted(set(figures['faults'])))}")
    print(f"turns with a first delta {figures['turns']}, responses seen complete {figures['completed']}, "
          f"cut by a fault {figures['cut_by_faults']}")
    print(f"events lost (complete responses whose record differs): {figures['events_lost']}"
          + (f" by the fault before: {figures['lost_after']}" if figures["lost_after"] else "")
          + (f" e.g. {figures['lost_examples']}" if figures["lost_examples"] else ""))
    print(f"cut responses whose record lacks what the client saw: {figures['cut_records_missing_text']}"
          + (f" by the fault before: {figures['cut_after']}" if figures["cut_after"] else "")
          + (f" e.g. {figures['cut_examples']}" if figures["cut_examples"] else ""))
    print(f"context checks {figures['context_checks']}, context lost {figures['context_lost']}"
          + (f" e.g. {figures['context_examples']}" if figures["context_examples"] else ""))
    print(f"client errors by code: {figures['client_errors'] or 'none'}")
    print(f"recorded ErrorEvent rows by code: {figures['recorded_errors'] or 'none'}")
    print(f"switchboard notices: {figures['notices'] or 'none'}; reconnects: {figures['reconnects'] or 'none'}; "
          f"idle sockets closed: {figures['idle_socket_closes']}")
    for name, ttfd in figures["ttfd_ms"].items():
        p50 = "—" if ttfd["p50"] is None else f"{ttfd['p50']:.0f}"
        p99 = "—" if ttfd["p99"] is None else f"{ttfd['p99']:.0f}"
        print(f"TTFD {name.replace('_', ' ')}: p50 {p50} ms, p99 {p99} ms over {ttfd['n']} turns")
    print("\nmemory (RSS MB) over time:")
    for name, memory in figures["memory_mb"].items():
        trend = memory["trend_mb_per_hour"]
        marks = "  ".join(f"{t / 60:.0f}m:{m:.0f}" for t, m in memory["samples"][:: max(1, len(memory["samples"]) // 8)])
        print(f"  {name:<14} first {memory['first']:.0f}, last {memory['last']:.0f}, max {memory['max']:.0f}, "
              f"trend {'—' if trend is None else f'{trend:+.1f} MB/h'}   [{marks}]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--browsers", type=int, default=6)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--idle", type=int, default=20, help="idle gateway sockets")
    parser.add_argument("--fault-every", type=float, default=120.0, help="seconds between faults (0: none)")
    parser.add_argument("--sample-every", type=float, default=15.0, help="seconds between memory samples")
    parser.add_argument("--think", type=float, default=1.0, help="seconds a client waits between turns")
    parser.add_argument("--tokens", type=int, default=40, help="tokens per ordinary reply")
    parser.add_argument("--turns-per-conversation", type=int, default=40,
                        help="turns before a client moves on to a new conversation")
    parser.add_argument("--per-browser", type=int, default=60, help="conversations made for each browser user")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--var-dir", type=Path, help="keep the shape's files and logs here (default: a temporary "
                                                      "directory, removed at the end)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redis = PrivateRedis()
    with ExitStack() as services, (nullcontext(str(args.var_dir)) if args.var_dir
                                   else tempfile.TemporaryDirectory(prefix="switchboard-soak-")) as tmp, \
            simulator_process("--tokens-per-second", "200", "--connection-limit-seconds", "120") as simulator:
        shape = None
        try:
            redis.start()
            services.callback(redis.stop)
            cluster = None
            if CLUSTER_TOOLS:
                cluster, database_url = services.enter_context(private_cluster("sbsoak"))
            else:  # no cluster tools: a database of the local server, and no PostgreSQL fault
                database_url = f"postgres://postgres@127.0.0.1:5432/switchboard_soak_{os.getpid()}"
                subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", f"switchboard_soak_{os.getpid()}"],
                               check=True)
            shape = ProductionShape(Path(tmp), processes=2, database_url=database_url, redis_url=redis.url,
                                    upstream_url=simulator.url, extra_env={})
            print(f"starting the production shape ({shape.dir})", file=sys.stderr, flush=True)
            shape.start()
            os.environ["SSL_CERT_FILE"] = str(shape.certificate)  # the clients trust its self-signed certificate
            made = populate(shape, browsers=args.browsers, agents=args.agents, per_browser=args.per_browser)
            faults = Faults(shape, redis, cluster)
            print(f"soaking for {args.minutes:g} min", file=sys.stderr, flush=True)
            result = asyncio.run(run(args, shape, made, faults))
            ledger: clients.Ledger = result["ledger"]
            wanted = json.dumps(sorted({*ledger.completed, *(r for r in ledger.cut if r)}))
            time.sleep(5)  # the recorders' last batches
            records = json.loads(_records(shape, wanted))
            figures = report(args, result, records, faults)
        finally:
            if shape is not None:
                shape.stop()
    print_report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if figures["events_lost"] == 0 and figures["context_lost"] == 0 else 1


def _records(shape: ProductionShape, wanted: str) -> str:
    """What the records hold for `wanted` (a JSON list of response ids), read in the shape's own settings."""
    ids = shape.dir / "soak-wanted.json"
    ids.write_text(wanted)
    script = f"import sys\nsys.stdin = open({str(ids)!r})\n" + RECORDS
    return shape.manage("shell", "-c", script).strip().splitlines()[-1]


if __name__ == "__main__":
    sys.exit(main())

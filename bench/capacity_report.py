"""bench/capacity.py's report: the absolute medians of every way, then what each way adds over direct at the same N,
and the largest N that holds issue 16's latency target for 1 and 2 processes. A run of first turns alone (--turns 1)
has no continuations: it is judged by the first-turn target instead (N / ramp new sockets a second)."""

from __future__ import annotations

import statistics

TARGET_MS = 10.0
FIRST_TURN_TARGET_MS = 50.0
COLUMNS = ("cont_p50", "cont_p99", "gap_p99", "first_p50", "first_p99")


def medians(runs: list[dict]) -> dict:
    keys = [key for key, value in runs[0].items() if isinstance(value, float) and key != "recording_lag_s"]
    return {**{key: statistics.median(run[key] for run in runs) for key in keys},
            "failures": sum(len(run["failures"]) for run in runs)}


def each_round(ours: list[dict], direct: list[dict], first_only: bool) -> str:
    """What the way added to the p99 in each round, against direct's p99 in the same round, in round order: the
    spread a median hides (the rounds are paired by their number; the order of the ways rotates each round)."""
    key = "first_p99" if first_only else "cont_p99"
    return " ".join(f"{mine[key] - theirs[key]:+.0f}" for mine, theirs in zip(ours, direct, strict=True)) + " ms"


def report(names: list[str], rounds: dict, args, notes: list[str], elapsed: float) -> dict:
    summary: dict = {"args": {k: v for k, v in vars(args).items() if k not in ("json", "cap")}, "notes": notes,
                     "elapsed_s": elapsed, "rounds": {f"{k[0]} N={k[1]}": v for k, v in rounds.items()},
                     "added": {}, "capacity": {}}
    print(f"\nCapacity: N conversations × {args.turns} chained turns × {args.tokens} deltas at {args.rate:g} tokens/s, "
          f"opened over {args.ramp:g} s; median of {args.rounds} interleaved round(s); took {elapsed:.0f} s.")
    print(f"{args.clients} client process(es); 2 processes = 2 Daphnes on SO_REUSEPORT sockets bound here, "
          f"handed over with --fd; listen backlog {args.backlog}.")
    for note in notes:
        print(f"note: {note}")
    print("\n== absolute figures, ms (median of rounds). server%: CPU of the Daphne(s) (direct: of the simulator) in % "
          "of one core, µs/δ: that CPU per delta, wait%: time its threads were runnable but waiting for a core, pg%: CPU of "
          "the PostgreSQL backends serving it" + (", thr%: time its cgroups slept at their core share" if args.core_share
                                                  is not None else ""))
    columns = [("cont p50", "cont_p50", ".1f"), ("cont p99", "cont_p99", ".1f"), ("gap p50", "gap_p50", ".1f"),
               ("gap p99", "gap_p99", ".1f"), ("1st p50", "first_p50", ".1f"), ("1st p99", "first_p99", ".1f"),
               ("conn p99", "connect_p99", ".1f"), ("server%", "server_cpu_percent", ".0f"),
               ("µs/δ", "server_us_per_delta", ".0f"), ("wait%", "server_wait_percent", ".0f"),
               ("pg%", "database_cpu_percent", ".0f"), ("sim%", "simulator_cpu_percent", ".0f"),
               ("client%", "client_cpu_percent", ".0f"),
               *([("thr%", "server_throttled_percent", ".0f")] if args.core_share is not None else []),
               ("failed", "failures", "d")]
    print(f"{'way':<10}{'N':>5}" + "".join(f"{title:>9}" for title, _, _ in columns))
    for name in names:
        for n in args.n:
            if (name, n) in rounds:
                m = medians(rounds[(name, n)])
                print(f"{name:<10}{n:>5}" + "".join(f"{m[key]:>9{fmt}}" for _, key, fmt in columns))
    busy = max((medians(runs)["server_wait_percent"] for key, runs in rounds.items() if key[0] == "direct"), default=0)
    if busy > 10 and args.pin:  # the simulator shares its core(s) with the clients by design
        print(f"note: in the direct rounds the simulator waited for a core up to {busy:.0f} % of the time, behind the "
              "clients on the load's core(s): every way's figures carry that wait, direct's too")
    elif busy > 10:  # the simulator alone, at most half a core, should rarely wait on an idle 2-core machine
        print(f"note: in the direct rounds the simulator waited for a core up to {busy:.0f} % of the time: the machine "
              "was busy with other work, so these figures are not the code's capacity")
    first_only = args.turns < 2
    if first_only:
        target = (f"added first-turn TTFD p99 ≤ {FIRST_TURN_TARGET_MS:g} ms; first turns alone, N / {args.ramp:g} s "
                  "new sockets a second")
    else:
        target = f"added continuation TTFD p99 and gap p99 ≤ {TARGET_MS:g} ms"
    for kind in [*args.db, *(["minimal"] if args.minimal else [])]:
        holds: dict[int, int | None] = {}
        misses: dict[int, int] = {}  # the first N that broke the run of holding ones
        for processes in args.processes:
            name = f"{kind} {processes}p"
            if not any(key[0] == name for key in rounds):
                continue
            who = "the forward-only consumer (stock Daphne" if kind == "minimal" else f"Switchboard ({kind}"
            print(f"\n== added by {who}, {processes} process{'es' * (processes > 1)}): "
                  "its median minus direct's at the same N")
            print("| N | continuation TTFD p50 / p99 | inter-delta gap p99 | first turn TTFD p50 / p99 | target "
                  f"| {'first turn' if first_only else 'continuation'} TTFD p99, each round |")
            print("|---|---|---|---|---|---|")
            holds[processes], broken = None, False
            for n in args.n:
                if (name, n) not in rounds or ("direct", n) not in rounds:
                    continue
                ours, direct = medians(rounds[(name, n)]), medians(rounds[("direct", n)])
                added = {key: ours[key] - direct[key] for key in COLUMNS}
                if first_only:
                    ok = added["first_p99"] <= FIRST_TURN_TARGET_MS
                else:
                    ok = added["cont_p99"] <= TARGET_MS and added["gap_p99"] <= TARGET_MS
                ok = ok and ours["failures"] == 0 and direct["failures"] == 0
                summary["added"][f"{name} N={n}"] = {**added, "holds": ok}
                if not ok and not broken:
                    misses[processes] = n
                broken = broken or not ok
                if not broken:
                    holds[processes] = n
                verdict = ("holds" if ok else "misses") + (f" ({ours['failures']} failed)" if ours["failures"] else "")
                print(f"| {n} | {added['cont_p50']:+.1f} / {added['cont_p99']:+.1f} ms | {added['gap_p99']:+.1f} ms "
                      f"| {added['first_p50']:+.0f} / {added['first_p99']:+.0f} ms | {verdict} "
                      f"| {each_round(rounds[(name, n)], rounds[('direct', n)], first_only)} |")
        summary["capacity"][kind] = holds
        print(f"\n{kind}: largest N holding the target ({target}, every N up to it holding too):")
        for processes, n in holds.items():
            print(f"  {processes} process{'es' * (processes > 1)}: {n if n is not None else f'none of {args.n}'}")
        if holds.get(1) and holds.get(2):
            bound = "≥ " if holds[2] == args.n[-1] else ""
            print(f"  ratio 2 / 1 processes: {bound}×{holds[2] / holds[1]:.2f} (target ≥ 1.7×; only as fine as the "
                  "N steps; ≥ when 2 processes held the largest N tried)")
            if 1 in misses:  # each shape's true limit lies between the N it held and the N it missed
                upper = f"{misses[2]} / {holds[1]} = ×{misses[2] / holds[1]:.2f}" if 2 in misses else "open"
                print(f"  by the N steps it lies between {holds[2]} / {misses[1]} = ×{holds[2] / misses[1]:.2f} "
                      f"and {upper}")
        elif 1 in holds and 2 in holds:
            print("  ratio 2 / 1 processes: undefined (one of them held no N tried)")
    return summary

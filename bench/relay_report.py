"""The relay benchmark's report: medians per load and way, ratios against the baselines, the printed tables."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay import Sample

# Targets from the capacity issue: CPU per relayed event against the minimal Channels consumer's, at every
# load: the relay's process tree on SQLite; with PostgreSQL (and Redis), their CPU counted too.
TARGET_CPU_RATIO = {"sqlite": 1.10, "postgresql": 1.20}



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


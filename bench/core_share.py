"""A share of one core per server process, for bench/capacity.py's `--core-share F` (Linux CFS bandwidth control).

Issue 16 compares two Daphne processes with one. Measured honestly, that needs a core per server process and
cores left for the load (the simulator, the clients, PostgreSQL), so at least three. On a 2-core machine
`--core-share F` puts every Daphne process on the last core, each in a cpu cgroup of its own capped at F of a
core (`F × PERIOD_US` of CPU per `PERIOD_US`), and the load on the other core. One process then has an
F-sized core and two processes two of them, so the N each shape carries can be compared.

The emulation errs against two processes: they share one physical core, so one may wait for the other
(the report's wait%), where two real cores would not make it wait. A throttled process sleeps until
the period ends, up to `(1 − F) × PERIOD_US`; the report's thr% is that sleep, as a share of the round's time.
Short periods keep it short: 5 ms, against the kernel's 100 ms default.

Needs root and the cpu controller: cgroup v1 (`/sys/fs/cgroup/cpu`) or v2 (`cpu.max`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["PERIOD_US", "CoreShare"]

PERIOD_US = 5_000
V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")


class CoreShare:
    """Caps processes at `share` of one core, each in a cgroup of its own; `close()` removes the cgroups."""

    def __init__(self, share: float) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"a core share is in (0, 1], not {share}")
        self.share = share
        self.v1 = (V1 / "cpu.cfs_quota_us").exists()
        if not self.v1 and "cpu" not in _read(V2 / "cgroup.controllers").split():
            raise OSError("no cpu cgroup controller here (cgroup v1 /sys/fs/cgroup/cpu, or v2 cpu.max)")
        if not self.v1 and "cpu" not in _read(V2 / "cgroup.subtree_control").split():
            (V2 / "cgroup.subtree_control").write_text("+cpu")
        probe = self._group("probe")
        probe.mkdir()  # PermissionError now, before any server starts, when this is not root
        probe.rmdir()
        self.groups: dict[int, Path] = {}

    def _group(self, name: str | int) -> Path:
        return (V1 if self.v1 else V2) / f"switchboard-bench-{os.getpid()}-{name}"

    def add(self, pid: int) -> None:
        """Moves every thread of `pid` into a new capped cgroup (threads it starts later follow)."""
        group = self._group(pid)
        group.mkdir()
        quota = int(self.share * PERIOD_US)
        if self.v1:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        (group / "cgroup.procs").write_text(str(pid))
        self.groups[pid] = group

    def caps(self, pids: list[int]) -> bool:
        """Whether any of the processes is capped here (a way's Daphnes are; direct's simulator is not)."""
        return any(pid in self.groups for pid in pids)

    def throttled_seconds(self, pids: list[int]) -> float:
        """Seconds the processes' cgroups spent throttled, summed (cpu.stat)."""
        total = 0.0
        for pid in pids:
            if (group := self.groups.get(pid)) is None:
                continue
            stat = dict(line.split() for line in _read(group / "cpu.stat").splitlines() if line.strip())
            total += int(stat["throttled_time"]) / 1e9 if self.v1 else int(stat["throttled_usec"]) / 1e6
        return total

    def remove(self, pid: int) -> None:
        """Removes `pid`'s cgroup once the process has exited (its zombie may linger a moment)."""
        group = self.groups.pop(pid, None)
        if group is None:
            return
        for _ in range(50):
            try:
                group.rmdir()
                return
            except OSError:
                time.sleep(0.1)

    def close(self) -> None:
        for pid in list(self.groups):
            self.remove(pid)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""

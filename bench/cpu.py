"""CPU time as the benchmarks count it: user + system seconds read from Linux's /proc.

* `seconds(pid)`: one process, every thread, to the nanosecond (the scheduler's count).
* `tree_seconds(pid)`: a process and every descendant alive at the moment of reading (all their threads).
  A relay is one process today, but the figure stays honest if a way ever forks helpers.
* `DatabaseBackends`: the PostgreSQL backends serving one database (pg_stat_activity), minus the
  benchmark's own reader. Their CPU is what the database itself spends on a way's statements; the
  server's shared background processes (WAL writer, checkpointer) also serve other databases and are
  left out, so the figure is a floor.
* `runqueue_wait_seconds(pid)`: how long a process's threads were runnable but waited for a core.
* `private_redis()`: a redis-server of the benchmark's own on a free port, so its CPU is the way's alone.

A process that exits inside a measured window takes its CPU with it: the relays keep their database
connections for the whole run, so this does not happen in practice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["seconds", "tree_seconds", "runqueue_wait_seconds", "DatabaseBackends", "private_redis"]

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def seconds(pid: int) -> float:
    """CPU seconds of one process, all its threads; 0 once it is gone.

    The scheduler's own count (/proc/PID/task/*/schedstat, nanoseconds on the CPU, user and system alike)
    where the kernel has it: /proc/PID/stat's user + system ticks are 10 ms apart, too coarse for a
    database backend's share of a short run. A thread that ended in between takes its time with it."""
    total, found = 0, False
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[0])
                found = True
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return 0.0
    if found:
        return total / 1e9
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


def runqueue_wait_seconds(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a core (/proc/PID/task/*/schedstat, field 2):
    how much the machine, not the process, held it back."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return 0.0
    return total / 1e9


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its living descendants."""
    children, total, todo = _children(), 0.0, [pid]
    while todo:
        current = todo.pop()
        total += seconds(current)
        todo.extend(children.get(current, ()))
    return total


class DatabaseBackends:
    """CPU of the PostgreSQL backends connected to one database, read through `reader` (a psycopg connection)."""

    def __init__(self, reader) -> None:
        self.reader = reader

    def pids(self) -> list[int]:
        rows = self.reader.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [row[0] for row in rows]

    def seconds(self) -> dict[int, float]:
        return {pid: seconds(pid) for pid in self.pids()}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two `DatabaseBackends.seconds()` readings (backends born in between count whole)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


@contextmanager
def private_redis(port: int) -> Iterator[tuple[str, int] | None]:
    """(url, pid) of a redis-server of our own on `port`, or None without redis-server on this machine."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        process.terminate()
        process.wait(10)

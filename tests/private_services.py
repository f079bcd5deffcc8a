"""Private PostgreSQL clusters and redis-servers for fault tests (and bench/soak.py): never the machine's shared
ones, which other tests and sessions use. Each is made on a free port and removed afterwards, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.live import free_port, stop, wait_for_port

__all__ = ["PG_VERSION", "CLUSTER_TOOLS", "needs_cluster_tools", "pg_ctl", "private_cluster", "PrivateRedis"]

PG_VERSION = next(iter(sorted(os.listdir("/etc/postgresql"))), None) if os.path.isdir("/etc/postgresql") else None
CLUSTER_TOOLS = bool(shutil.which("pg_createcluster") and shutil.which("pg_ctlcluster") and PG_VERSION
                     and os.geteuid() == 0)
needs_cluster_tools = pytest.mark.skipif(
    not CLUSTER_TOOLS, reason="needs PostgreSQL's cluster tools (pg_createcluster, pg_ctlcluster) and root")


def pg_ctl(name: str, action: str) -> None:
    """`pg_ctlcluster` start / stop / restart of a private cluster."""
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, name, action], check=True,
                   capture_output=True, timeout=120)


@contextmanager
def private_cluster(prefix: str) -> Iterator[tuple[str, str]]:
    """(cluster name, DATABASE_URL of its empty database `switchboard`); the cluster is dropped on exit."""
    name, port = f"{prefix}{os.getpid()}", free_port()
    try:
        subprocess.run(["pg_createcluster", PG_VERSION, name, "-p", str(port), "--", "--auth=trust"], check=True,
                       capture_output=True, timeout=120)
        pg_ctl(name, "start")
        subprocess.run(["su", "postgres", "-c", f"createdb -h 127.0.0.1 -p {port} switchboard"], check=True,
                       capture_output=True, timeout=60)
        yield name, f"postgres://postgres@127.0.0.1:{port}/switchboard"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, name], capture_output=True, timeout=120)


class PrivateRedis:
    """redis-server on a free loopback port, no persistence: a restart forgets every key and group."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        workdir = ["--dir", str(self.workdir)] if self.workdir is not None else []
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", *workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it lingers."""
        if self.process is not None:
            stop(self.process)

    def kill(self) -> None:
        """SIGKILL: the outage starts at once, as when the host dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

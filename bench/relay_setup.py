"""What the relay benchmarks start and read: the relays' processes and the Switchboard databases they write to.

Shared by bench/relay.py and bench/capacity.py. Every process is a subprocess on a free loopback port; a
database is a throwaway PostgreSQL database or a SQLite file, read with raw SQL (the benchmark process never
configures Django: two databases in one run).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import cpu  # noqa: E402
import psycopg  # noqa: E402
from throwaway_pg import throwaway_database  # noqa: E402

from tests.live import BIN, free_port, stop, wait_for_port  # noqa: E402


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


def switchboard_prepare(env: dict[str, str], *, counted: bool = False) -> str:
    """Migrate, sync the default profile onto the simulator, and return a fresh personal token. `counted`: the
    token's user has limits that never refuse but are counted (switchboard_db.py), else no limits."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "switchboard_db.py"), "prepare"], cwd=ROOT,
        env={**os.environ, **env, "BENCH_LIMITS": "counted" if counted else "none"},
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


"""Real processes for end-to-end tests: the simulator and Daphne, on free loopback ports.

Daphne runs in a subprocess against the *test* database (the fixture hands it a
DATABASE_URL built from the test connection), so tests using it need
``transactional_db``: what the test writes must be committed to be seen.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}: {process.args}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the connection the tests use (the test database, not the real one)."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = f":{quote(settings_dict['PASSWORD'])}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@dataclass(frozen=True)
class SimulatorProcess:
    url: str  # ws://127.0.0.1:PORT/v1/responses
    port: int
    process: subprocess.Popen


@contextmanager
def simulator_process(*args: str) -> Iterator[SimulatorProcess]:
    """``python -m sessions_app.simulator`` in a subprocess (args: extra CLI flags)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sessions_app.simulator", "--host", "127.0.0.1", "--port", str(port),
         "--tokens-per-second", "0", *args],
        cwd=ROOT,
    )
    try:
        wait_for_port(port, process)
        yield SimulatorProcess(url=f"ws://127.0.0.1:{port}/v1/responses", port=port, process=process)
    finally:
        stop(process)


@dataclass(frozen=True)
class DaphneProcess:
    base_url: str  # http://127.0.0.1:PORT
    ws_url: str  # ws://127.0.0.1:PORT
    port: int
    process: subprocess.Popen


@contextmanager
def daphne_process(settings_dict: dict, extra_env: dict[str, str] | None = None) -> Iterator[DaphneProcess]:
    """Daphne (with the graceful drain: ``python -m sessions_app.serve``) serving project.asgi on a free
    port, against the given (test) database."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(settings_dict), "DJANGO_SETTINGS_MODULE": "project.settings",
           **(extra_env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "sessions_app.serve", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        cwd=ROOT, env=env,
    )
    try:
        wait_for_port(port, process)
        yield DaphneProcess(base_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}", port=port,
                            process=process)
    finally:
        stop(process)


def metrics_token(user) -> str:
    """A new token of `user`'s that may read /metrics (the user must be staff); its secret."""
    from sessions_app.models import ApiToken

    token, raw = ApiToken.issue(user=user, name="prometheus")
    token.reads_metrics = True
    token.save(update_fields=["reads_metrics"])
    return raw


def scrape_metrics(base_url: str, token: str) -> dict[str, list]:
    """A live process's /metrics: sample name -> its samples."""
    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples

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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port free now. Another process may take it before the caller binds it (xdist workers choose ports
    at the same time, and outgoing connections draw from the same range): a server of ours is handed a
    socket already listening instead (`listening_socket`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_socket() -> socket.socket:
    """A loopback socket listening on a port of its own, for a server process to adopt (`--fd`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)  # Twisted adopts it as it is
    return sock


def wait_for_http(base_url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until the server answers HTTP (any status: the simulator refuses a plain GET): a socket it adopted accepts
    connections into its backlog before it runs."""
    _wait(lambda: _answers_http(base_url), process, timeout, f"{base_url} did not answer HTTP")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    _wait(lambda: _accepts(port), process, timeout, f"nothing listening on 127.0.0.1:{port}")


def _wait(ready: Callable[[], bool], process: subprocess.Popen, timeout: float, failure: str) -> None:
    """Until `ready()`; an error at once if `process` exits first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}: {process.args}")
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{failure} after {timeout}s")


def _answers_http(base_url: str) -> bool:
    # A slow answer is an answer: /healthz checks the database, the layer (up to 1 s) and the upstream (up
    # to 2 s) one after another (sessions_app/health.py), and a server's first request also loads the URLconf
    # and opens its connections. A 1 s wait here could miss every answer of a server started on a loaded
    # machine until _wait gave up: a likely cause of a fixture error seen once ("did not answer HTTP after 20s").
    try:
        urllib.request.urlopen(f"{base_url}/healthz", timeout=5).close()
    except urllib.error.HTTPError:  # any answer will do (503 while the database is down)
        return True
    except OSError:
        return False
    return True


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


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
def serving(*argv: str, **popen) -> Iterator[tuple[int, subprocess.Popen]]:
    """`python <argv> --fd N` on a listening socket it adopts, so no other process can take the port between its
    choice and the bind; (port, process) once it answers HTTP, stopped on the way out. Ours closes once the child
    has it, so the port refuses connections once the child stops listening."""
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        process = subprocess.Popen([sys.executable, *argv, "--fd", str(sock.fileno())], cwd=ROOT,
                                   pass_fds=(sock.fileno(),), **popen)
    try:
        wait_for_http(f"http://127.0.0.1:{port}", process)
        yield port, process
    finally:
        stop(process)


@contextmanager
def simulator_process(*args: str) -> Iterator[SimulatorProcess]:
    """``python -m sessions_app.simulator`` in a subprocess (`serving`; args: extra CLI flags)."""
    with serving("-m", "sessions_app.simulator", "--tokens-per-second", "0", *args) as (port, process):
        yield SimulatorProcess(url=f"ws://127.0.0.1:{port}/v1/responses", port=port, process=process)


def serving_daphne(env: dict[str, str], server: tuple[str, ...] = ("-m", "sessions_app.serve"),
                   **popen) -> AbstractContextManager[tuple[int, subprocess.Popen]]:
    """`python <server> project.asgi:application` with `env` (`serving`)."""
    return serving(*server, "project.asgi:application", env=env, **popen)


@dataclass(frozen=True)
class DaphneProcess:
    base_url: str  # http://127.0.0.1:PORT
    ws_url: str  # ws://127.0.0.1:PORT
    port: int
    process: subprocess.Popen


@contextmanager
def daphne_process(settings_dict: dict, extra_env: dict[str, str] | None = None) -> Iterator[DaphneProcess]:
    """Daphne (with the graceful drain: ``python -m sessions_app.serve``) serving project.asgi on a port of its
    own (a listening socket it adopts, so no other process can take the port first), against the given (test)
    database."""
    env = {**os.environ, "DATABASE_URL": database_url(settings_dict), "DJANGO_SETTINGS_MODULE": "project.settings",
           **(extra_env or {})}
    with serving_daphne(env) as (port, process):
        yield DaphneProcess(base_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}", port=port,
                            process=process)


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

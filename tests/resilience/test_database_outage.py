"""A PostgreSQL outage, for real: a private cluster (never the machine's shared one) is stopped under a
running Daphne, then started again.

While it is down, new sockets (browser and gateway) are refused with HTTP 503, a page is the styled
503 page with Retry-After, /healthz says the database is down (503), and the log says so in warning
lines, without a traceback. Once it is back, the same requests work again. The cluster is removed
afterwards, whatever happened.

Without PostgreSQL's cluster tools, a Daphne whose database does not answer at all shows the same
refusals; plain `daphne` (no denial-response extension) accepts, sends one `error` and closes with 4503.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as asyncio_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.live import ROOT, free_port, serving_daphne, simulator_process
from tests.private_services import needs_cluster_tools, pg_ctl
from tests.private_services import private_cluster as private_cluster_of

SETUP = """
import json
import django
django.setup()
from tests.worlds import simulator_world
print(json.dumps(simulator_world({simulator_url!r})))
"""


@pytest.fixture
def private_cluster():
    with private_cluster_of("sboutage") as made:
        yield made


@contextmanager
def world_on(cluster: tuple[str, str], tmp_path: Path, **extra_env: str) -> Iterator[dict]:
    """A real Daphne (text log in tmp_path/daphne.log) on the private `cluster`, migrated, with SETUP's user,
    token and conversation, its default profile on a simulator process; no Redis (the database alone)."""
    name, url = cluster
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings",
           "SWITCHBOARD_LOG_FORMAT": "text", "SWITCHBOARD_VAR_DIR": str(tmp_path), **extra_env}
    env.pop("REDIS_URL", None)  # this test is about the database alone
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    with simulator_process() as simulator:
        made = subprocess.run([sys.executable, "-c", SETUP.format(simulator_url=simulator.url)], cwd=ROOT, env=env,
                              check=True, capture_output=True, text=True, timeout=60)
        world = json.loads(made.stdout.strip().splitlines()[-1])
        log = tmp_path / "daphne.log"
        with log.open("wb") as sink:
            with serving_daphne(env, stdout=sink, stderr=subprocess.STDOUT) as (port, process):
                yield {**world, "cluster": name, "port": port, "log": log, "env": env, "process": process}


@pytest.fixture
def outage_world(private_cluster, tmp_path: Path):
    with world_on(private_cluster, tmp_path) as world:
        yield world


def http_get(port: int, path: str, session: str | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if session:
        request.add_header("Cookie", f"sessionid={session}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def browser_handshake(world) -> int:
    port = world["port"]
    try:
        with connect(f"ws://127.0.0.1:{port}/ws/conversations/{world['conversation']}/", open_timeout=20,
                     origin=f"http://127.0.0.1:{port}",
                     additional_headers={"Cookie": f"sessionid={world['session']}"}):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def gateway_handshake(world) -> int:
    try:
        with connect(f"ws://127.0.0.1:{world['port']}/v1/responses", open_timeout=20,
                     additional_headers={"Authorization": f"Bearer {world['token']}"}):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@needs_cluster_tools
def test_database_outage_is_503_and_recovers(outage_world):
    world, port = outage_world, outage_world["port"]
    assert browser_handshake(world) == 101
    assert gateway_handshake(world) == 101
    assert http_get(port, "/", world["session"])[0] == 200
    logged_before = world["log"].read_text()

    pg_ctl(world["cluster"], "stop")

    assert browser_handshake(world) == 503
    assert gateway_handshake(world) == 503
    status, headers, body = http_get(port, "/", world["session"])
    assert status == 503
    assert headers["Retry-After"].isdigit()
    assert "Temporarily unavailable" in body and "css/app.css" in body  # the styled page, from base.html
    status, _, body = http_get(port, "/healthz")
    assert status == 503
    report = json.loads(body)
    assert report["status"] == "down" and report["database"]["status"] == "down"
    assert "postgres://" not in body and "127.0.0.1" not in body
    logged = world["log"].read_text()[len(logged_before):]
    assert "Database unavailable: WebSocket /ws/conversations/" in logged
    assert "Database unavailable: WebSocket /v1/responses" in logged
    assert "Database unavailable: GET / answered 503" in logged
    assert "Traceback" not in logged and "Internal Server Error" not in logged
    assert "django.request" not in logged  # no ERROR line for the 503s: the warnings say it

    pg_ctl(world["cluster"], "start")

    assert browser_handshake(world) == 101
    assert gateway_handshake(world) == 101
    assert http_get(port, "/", world["session"])[0] == 200
    status, _, body = http_get(port, "/healthz")
    assert status == 200 and json.loads(body)["database"]["status"] == "ok"


@pytest.fixture
def unreachable_database_daphne(tmp_path: Path, request):
    """Daphne whose DATABASE_URL names a port nothing listens on (no PostgreSQL needed at all).
    Indirect parameter: "daphne" for plain Daphne instead of sessions_app.serve."""
    server = ("-m", "daphne") if getattr(request, "param", "serve") == "daphne" else ("-m", "sessions_app.serve")
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/none",
           "DJANGO_SETTINGS_MODULE": "project.settings", "SWITCHBOARD_LOG_FORMAT": "text",
           "SWITCHBOARD_VAR_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    log = tmp_path / "daphne.log"
    with log.open("wb") as sink:
        with serving_daphne(env, server, stdout=sink, stderr=subprocess.STDOUT) as (port, _):
            yield {"port": port, "log": log, "session": "x" * 32, "token": "sb_" + "y" * 40,
                   "conversation": "00000000-0000-0000-0000-000000000001"}


def test_no_database_at_all_is_503_everywhere(unreachable_database_daphne):
    world = unreachable_database_daphne
    assert browser_handshake(world) == 503  # the session lookup fails
    assert gateway_handshake(world) == 503  # the token lookup fails
    status, headers, body = http_get(world["port"], "/", world["session"])
    assert status == 503 and headers["Retry-After"].isdigit() and "Temporarily unavailable" in body
    status, _, body = http_get(world["port"], "/healthz")
    report = json.loads(body)
    assert status == 503 and report["status"] == "down"
    assert report["upstream"]["status"] == "unknown"  # its address is read from the database
    logged = world["log"].read_text()
    assert logged.count("WARNING sessions_app.outage: Database unavailable") == 3
    assert "Traceback" not in logged and "django.request" not in logged


@pytest.mark.parametrize("unreachable_database_daphne", ["daphne"], indirect=True)
def test_plain_daphne_gets_an_error_event_and_4503(unreachable_database_daphne):
    """Plain Daphne keeps autobahn's 1 s for the client's close reply, then resets the connection
    (sessions_app.serve waits 10 s: tests/resilience/test_late_readers.py). The asyncio client keeps what it
    read when its reply cannot be sent; the sync client drops it, and did on a loaded CI machine."""
    world = unreachable_database_daphne

    async def refused() -> tuple[dict, ConnectionClosed]:
        async with asyncio_connect(f"ws://127.0.0.1:{world['port']}/v1/responses", open_timeout=20,
                                   additional_headers={"Authorization": f"Bearer {world['token']}"}) as socket:
            event = json.loads(await asyncio.wait_for(socket.recv(), 20))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 20)
        return event, closed.value

    event, closed = asyncio.run(refused())
    assert event["type"] == "error" and event["status"] == 503
    assert event["error"]["code"] == "service_unavailable"
    assert closed.rcvd.code == 4503
    logged = world["log"].read_text()
    assert "Database unavailable: WebSocket /v1/responses closed with 4503" in logged
    assert "Traceback" not in logged

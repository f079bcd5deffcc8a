"""The production shape (scripts/production.sh) as the tests' server: nginx with TLS in front of two Daphne
processes, on a private PostgreSQL cluster and a private Redis, DEBUG off, the simulator as the upstream.

These tests start every service they use, so they run once per CI run: in scripts/test.sh's second pass
(PostgreSQL + Redis, DATABASE_URL set), skipped in the SQLite pass. One shape serves the whole directory
(session scope); each test signs in as its own user, and the fault tests give back what they took (a killed
Daphne process is started again by the script's supervisor, a stopped service is started again).
The cluster, the Redis server and every process are removed afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import ROOT, free_port, simulator_process, wait_for_port
from tests.private_services import CLUSTER_TOOLS, PrivateRedis, pg_ctl
from tests.private_services import private_cluster as private_cluster_of

CHROMIUM = Path("/usr/bin/chromium")
HEARTBEAT = "0.5"  # the liveness lease (3 beats) of a killed process runs out in 1.5 s
DRAIN = "5"


def _missing() -> str | None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return "runs once, in the PostgreSQL + Redis pass (it starts its own private services)"
    if not CLUSTER_TOOLS:
        return "needs PostgreSQL's cluster tools (pg_createcluster, pg_ctlcluster) and root"
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")) or not shutil.which("redis-server"):
        return "needs nginx (apt-get install nginx) and redis-server"
    if not CHROMIUM.exists():
        return f"needs {CHROMIUM}"
    return None


def pytest_collection_modifyitems(config, items) -> None:
    reason = _missing()
    if reason:
        here = Path(__file__).parent
        for item in items:
            if here in Path(item.fspath).parents:
                item.add_marker(pytest.mark.skip(reason=reason))


LOG_TAIL_LINES = 15


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines of the shape's logs (nginx's errors and accesses, each
    Daphne process's), which a CI run's output is the only copy of."""
    outcome = yield
    report = outcome.get_result()
    shape = item.funcargs.get("production") if report.failed and call.when == "call" else None
    if isinstance(shape, Production):
        for log in ["nginx.log", "access.log", *sorted(p.name for p in shape.dir.glob("daphne-*.log"))]:
            try:
                lines = (shape.dir / log).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            except OSError as error:
                lines = [str(error)]
            report.sections.append((f"production/{log}, last lines", "\n".join(lines)))


@dataclass(frozen=True)
class Cluster:
    name: str
    url: str

    def restart(self) -> None:
        pg_ctl(self.name, "restart")


@dataclass(frozen=True)
class Production:
    """The running shape: its URL, its certificate, and the processes the script's state file names."""

    url: str  # https://localhost:PORT
    dir: Path  # $SWITCHBOARD_VAR_DIR/production
    env: dict[str, str]
    script: subprocess.Popen
    cluster: Cluster
    redis: PrivateRedis

    @property
    def port(self) -> int:
        """nginx's HTTPS port."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        return "wss" + self.url.removeprefix("https")

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the shape's self-signed certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.dir / "tls" / "cert.pem"))

    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def daphne_pids(self) -> list[int]:
        return [entry["pid"] for entry in self.state()["daphne"]]

    def manage(self, *args: str) -> str:
        """manage.py with the shape's settings (deploy/production.py manage …); its standard output."""
        done = subprocess.run([sys.executable, "deploy/production.py", "manage", *args], cwd=ROOT, env=self.env,
                              check=True, capture_output=True, text=True, timeout=120)
        return done.stdout

    def query(self, code: str) -> object:
        """Runs Python in `manage.py shell` (the shape's database) and returns what it prints as JSON."""
        return json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])

    def wait_for_daphnes(self, replacing: int | None = None, within: float = 60.0) -> None:
        """Until the supervisor runs every Daphne process (one in place of `replacing`) and each one listens."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                entries = self.state()["daphne"]
                if all(_alive(e["pid"]) for e in entries) and all(_listens(e["port"]) for e in entries) \
                        and replacing not in [e["pid"] for e in entries]:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError("the Daphne processes did not come back")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _listens(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[Cluster]:
    with private_cluster_of("sbprod") as (name, url):
        yield Cluster(name=name, url=url)


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def production(private_cluster, private_redis) -> Iterator[Production]:
    """scripts/production.sh, as an operator runs it, with the simulator as its upstream."""
    # A fixed place, emptied at each start, so the last run's logs (production/*.log) stay there to read; one
    # for each pytest-xdist worker (scripts/test.sh runs two), as each starts its own shape.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    var_dir = Path(os.environ.get("SWITCHBOARD_VAR_DIR", ROOT / "var")) / f"production-tests{'-' + worker if worker else ''}"
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    https_port = free_port()
    with simulator_process() as simulator:
        env = {**os.environ, "SWITCHBOARD_VAR_DIR": str(var_dir), "DATABASE_URL": private_cluster.url,
               "REDIS_URL": private_redis.url, "SWITCHBOARD_HTTPS_PORT": str(https_port),
               "SWITCHBOARD_DAPHNE_PORTS": f"{free_port()},{free_port()}", "OPENAI_WEBSOCKET_URL": simulator.url,
               "SWITCHBOARD_HEARTBEAT_SECONDS": HEARTBEAT, "SWITCHBOARD_DRAIN_SECONDS": DRAIN,
               "SWITCHBOARD_UPSTREAM_IDLE_SECONDS": "30", "SWITCHBOARD_LOG_FORMAT": "text"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        log = (var_dir / "script.log").open("wb")
        script = subprocess.Popen(["scripts/production.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        shape = Production(url=f"https://localhost:{https_port}", dir=var_dir / "production", env=env,
                           script=script, cluster=private_cluster, redis=private_redis)
        children: list[int] = []
        try:
            wait_for_port(https_port, script, timeout=180)
            shape.wait_for_daphnes()
            yield shape
            children = [shape.state()["nginx"], *shape.daphne_pids()]
        finally:
            if script.poll() is None:
                script.send_signal(signal.SIGINT)  # Ctrl-C: the script stops its children in order
                try:
                    script.wait(60)
                except subprocess.TimeoutExpired:
                    script.kill()
            log.close()
        # Ctrl-C stopped everything cleanly: the script exits 0 and none of its children is left.
        assert script.returncode == 0 and not [pid for pid in children if _alive(pid)], (script.returncode, children)


@pytest.fixture(scope="module")
def chromium(production):
    """Module scope: Playwright's sync API keeps an event loop running on this thread while it lives."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium, production):
    """A page in its own context (own cookies), trusting nothing but ignoring the self-signed certificate."""
    context = chromium.new_context(base_url=production.url, ignore_https_errors=True,
                                   viewport={"width": 1100, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


USER = """
import json
from django.contrib.auth import get_user_model
from sessions_app.models import ApiToken
user = get_user_model().objects.create_user(username={name!r}, password={password!r}, is_staff={staff},
                                            is_superuser={staff})
_, raw = ApiToken.issue(user=user, name="production test")
print(json.dumps({{"token": raw}}))
"""


@pytest.fixture
def make_user(production):
    """make_user(name, staff=False) -> {"name", "password", "token"}: a user in the shape's database."""

    def make(name: str, *, staff: bool = False) -> dict:
        password = f"{name}-password-1"
        made = production.query(USER.format(name=name, password=password, staff=staff))
        return {"name": name, "password": password, **made}

    return make

"""What the soak (bench/soak.py) runs against: the production shape on services of its own.

* A redis-server and a PostgreSQL cluster of its own (tests/private_services.py), which the soak may restart
  (`restart_redis`, `restart_cluster`). Without the cluster tools the soak runs on a throwaway database of
  the local server and leaves the PostgreSQL fault out.
* `ProductionShape`: deploy/production.py (nginx with TLS in front of N Daphne processes, DEBUG off) in a
  private SWITCHBOARD_VAR_DIR, on those services, its upstream a simulator process of the soak's; it reads
  the shape's state.json for the ports and pids.
* `populate`: users, API tokens, browser sessions and conversations, made through the project's own code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live import free_port, wait_for_port  # noqa: E402
from tests.private_services import CLUSTER_TOOLS, PrivateRedis, pg_ctl, private_cluster  # noqa: E402,F401


def _wait(ready, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {within:.0f} s")
        time.sleep(0.1)


def restart_redis(redis: PrivateRedis, down_seconds: float) -> None:
    redis.stop()
    time.sleep(down_seconds)
    redis.start()


def restart_cluster(name: str, down_seconds: float) -> None:
    pg_ctl(name, "stop")
    time.sleep(down_seconds)
    pg_ctl(name, "start")


class ProductionShape:
    """deploy/production.py as a child process; `state()` is its state.json (ports, pids)."""

    def __init__(self, var_dir: Path, *, processes: int, database_url: str, redis_url: str, upstream_url: str,
                 extra_env: dict[str, str]) -> None:
        self.var_dir = var_dir
        self.https_port = free_port()
        ports = ",".join(str(free_port()) for _ in range(processes))
        self.env = {**os.environ, "SWITCHBOARD_VAR_DIR": str(var_dir), "SWITCHBOARD_HTTPS_PORT": str(self.https_port),
                    "SWITCHBOARD_DAPHNE_PORTS": ports, "SWITCHBOARD_DAPHNE_PROCESSES": str(processes),
                    "DATABASE_URL": database_url, "REDIS_URL": redis_url, "OPENAI_WEBSOCKET_URL": upstream_url,
                    "LOG_LEVEL": "WARNING", "PATH": os.environ.get("PATH", "") + ":/usr/sbin", **extra_env}
        self.env.pop("OPENAI_API_KEY", None)
        self.process: subprocess.Popen | None = None

    @property
    def dir(self) -> Path:
        return self.var_dir / "production"

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def certificate(self) -> Path:
        return self.dir / "tls" / "cert.pem"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / "supervisor.log").open("ab")
        self.process = subprocess.Popen([sys.executable, "deploy/production.py"], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: (self.dir / "state.json").exists() or self.process.poll() is not None, "the production shape",
              within=180)
        if self.process.poll() is not None:
            raise RuntimeError(f"deploy/production.py exited with {self.process.returncode}: see {self.dir}")
        wait_for_port(self.https_port, self.process)

    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "deploy/production.py", "manage", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, check=True, timeout=120)
        return done.stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


POPULATE = """
import json, sys
from django.contrib.auth import get_user_model
from django.test import Client
from sessions_app.models import ApiToken
from sessions_app.services import conversation_create, default_profile_sync
browsers, agents = {browsers}, {agents}
profile = default_profile_sync()
User = get_user_model()
made = {{"browsers": [], "agents": []}}
for n in range(browsers):
    user = User.objects.create_user(username=f"soak-browser-{{n}}", password="soak-password-1")
    client = Client()
    client.force_login(user)
    conversations = [str(conversation_create(owner=user, profile=profile).pk) for _ in range({per_browser})]
    made["browsers"].append({{"session": client.cookies["sessionid"].value, "conversations": conversations}})
for n in range(agents):
    user = User.objects.create_user(username=f"soak-agent-{{n}}", password="soak-password-1")
    _, raw = ApiToken.issue(user=user, name="soak")
    made["agents"].append({{"token": raw}})
print(json.dumps(made))
"""


def populate(shape: ProductionShape, *, browsers: int, agents: int, per_browser: int) -> dict:
    """Users with a browser session and `per_browser` conversations each, and users with an API token each."""
    out = shape.manage("shell", "-c", POPULATE.format(browsers=browsers, agents=agents, per_browser=per_browser))
    return json.loads(out.strip().splitlines()[-1])

"""The production shape on one machine: nginx (TLS) in front of N Daphne processes, PostgreSQL and Redis.

Run it through ``scripts/production.sh`` (``make production``); it stays in the foreground:

* ``scripts/production.sh``: prepares (migrate + default upstream, collectstatic, a self-signed certificate
  unless one is there), starts N ``python -m sessions_app.serve`` on loopback ports and nginx in front of them,
  and supervises them: a Daphne process that exits is started again on its port. Ctrl-C (or SIGTERM) stops
  the Daphne processes first (each drains its in-flight responses, then closes browsers with 1012) and nginx
  last. It never touches the system's nginx service: nginx runs as a child with ``-p <dir> -c <conf>``.
* ``scripts/production.sh manage ARGS``: ``manage.py ARGS`` with the same environment, e.g.
  ``manage createsuperuser`` or ``manage create_api_token alice``.

Everything it writes lives in ``$SWITCHBOARD_VAR_DIR/production/``: nginx.conf (from deploy/nginx.conf.template),
tls/, secrets.json (SECRET_KEY and SWITCHBOARD_ENCRYPTION_KEY when the environment gives none), logs, and
state.json (the ports and pids now running: tests and operators read it). Settings: see ``Shape.from_env`` and
docs/production.md.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
PR_SET_PDEATHSIG = 1
RESTART_PAUSE_SECONDS = 1.0


def log(message: str) -> None:
    print(f"production: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Shape:
    """What to run, read from the environment (defaults: this machine's own services)."""

    var_dir: Path
    host: str  # the name browsers use: server_name, ALLOWED_HOSTS, the certificate's subject
    address: str  # where nginx listens
    https_port: int
    daphne_ports: tuple[int, ...]
    database_url: str
    redis_url: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Shape:
        count = int(env.get("SWITCHBOARD_DAPHNE_PROCESSES", "2"))
        if count < 1:
            raise SystemExit("SWITCHBOARD_DAPHNE_PROCESSES must be at least 1.")
        if env.get("SWITCHBOARD_DAPHNE_PORTS"):
            ports = tuple(int(p) for p in env["SWITCHBOARD_DAPHNE_PORTS"].split(","))
        else:
            first = int(env.get("SWITCHBOARD_DAPHNE_FIRST_PORT", "8001"))
            ports = tuple(range(first, first + count))
        return cls(
            var_dir=Path(env.get("SWITCHBOARD_VAR_DIR", ROOT / "var")).resolve(),
            host=env.get("SWITCHBOARD_HOSTNAME", "localhost"),
            address=env.get("SWITCHBOARD_LISTEN_ADDRESS", "127.0.0.1"),
            https_port=int(env.get("SWITCHBOARD_HTTPS_PORT", "8443")),
            daphne_ports=ports,
            database_url=env.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard"),
            redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        )

    @property
    def dir(self) -> Path:
        return self.var_dir / "production"

    @property
    def origin(self) -> str:
        return f"https://{self.host}" + ("" if self.https_port == 443 else f":{self.https_port}")


def secrets_for(shape: Shape, env: dict[str, str]) -> dict[str, str]:
    """SECRET_KEY and SWITCHBOARD_ENCRYPTION_KEY: the environment's, else generated once and kept (0600)."""
    path = shape.dir / "secrets.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    if not kept:
        from cryptography.fernet import Fernet

        kept = {"SECRET_KEY": secrets.token_urlsafe(50), "SWITCHBOARD_ENCRYPTION_KEY": Fernet.generate_key().decode()}
        path.write_text(json.dumps(kept))
        path.chmod(0o600)
    return {name: env.get(name) or value for name, value in kept.items()}


def app_env(shape: Shape, env: dict[str, str]) -> dict[str, str]:
    """The environment every Django process of the shape gets: production settings behind one proxy."""
    return {
        **env,
        **secrets_for(shape, env),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "false",
        "SWITCHBOARD_VAR_DIR": str(shape.var_dir),
        "DATABASE_URL": shape.database_url,
        "REDIS_URL": shape.redis_url,
        "ALLOWED_HOSTS": env.get("ALLOWED_HOSTS", shape.host),
        "CSRF_TRUSTED_ORIGINS": env.get("CSRF_TRUSTED_ORIGINS", shape.origin),
        "SWITCHBOARD_TRUSTED_PROXIES": "1",  # nginx appends the client's address to X-Forwarded-For
    }


def self_signed_certificate(shape: Shape) -> None:
    """A certificate for `host` (kept across starts); put a real one at tls/cert.pem + tls/key.pem instead."""
    tls = shape.dir / "tls"
    if (tls / "cert.pem").exists() and (tls / "key.pem").exists():
        return
    tls.mkdir(parents=True, exist_ok=True)
    names = f"DNS:{shape.host},DNS:localhost,IP:127.0.0.1"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", f"/CN={shape.host}",
         "-addext", f"subjectAltName={names}", "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
        check=True, capture_output=True,
    )
    (tls / "key.pem").chmod(0o600)
    log(f"self-signed certificate for {shape.host}: {tls / 'cert.pem'}")


def worker_user(shape: Shape) -> str:
    """Started as root, nginx's workers would run as `nobody`, who may not read a private var dir: run them as
    the var dir's owner. Started as anyone else, workers run as that user anyway (no directive)."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    owner = shape.var_dir.stat()
    return f"user {pwd.getpwuid(owner.st_uid).pw_name} {grp.getgrgid(owner.st_gid).gr_name};\n"


def nginx_conf(shape: Shape, static_root: Path) -> Path:
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in shape.daphne_ports)
    text = TEMPLATE.read_text()
    for name, value in {"dir": str(shape.dir), "servers": servers, "address": shape.address,
                        "port": str(shape.https_port), "host": shape.host, "static_root": str(static_root),
                        "user": worker_user(shape)}.items():
        text = text.replace("{{" + name + "}}", value)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (shape.dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    path = shape.dir / "nginx.conf"
    path.write_text(text)
    return path


def manage(env: dict[str, str], *args: str, quiet: bool = False) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL if quiet else None)


def _die_with_parent() -> None:
    """In the child: its own process group (Ctrl-C reaches only the supervisor, which stops children in
    order), and SIGTERM when the supervisor dies, so no child outlives it."""
    os.setpgrp()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as sink:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


class Supervisor:
    """Starts the Daphne processes and nginx, restarts a Daphne process that exits, stops all in order."""

    def __init__(self, shape: Shape, env: dict[str, str], conf: Path) -> None:
        self.shape, self.env, self.conf = shape, env, conf
        self.daphnes: dict[int, subprocess.Popen] = {}
        self.nginx: subprocess.Popen | None = None
        self.simulator: subprocess.Popen | None = None
        self.stopping = False

    def start_daphne(self, port: int) -> None:
        self.daphnes[port] = spawn(
            [PYTHON, "-m", "sessions_app.serve", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
            self.env, self.shape.dir / f"daphne-{port}.log")
        log(f"daphne on 127.0.0.1:{port} (pid {self.daphnes[port].pid})")

    def start(self) -> None:
        taken = [port for port in (self.shape.https_port, *self.shape.daphne_ports) if listening(port)]
        if taken:  # else nginx or a Daphne process fails to bind, or, worse, another server answers for it
            raise SystemExit(f"already in use on 127.0.0.1: port {', '.join(map(str, taken))} (another "
                             f"scripts/production.sh?); choose SWITCHBOARD_HTTPS_PORT / SWITCHBOARD_DAPHNE_PORTS")
        if self.env.get("SWITCHBOARD_START_SIMULATOR") == "1":
            port = self.env.get("SIMULATOR_PORT", "8765")
            self.simulator = spawn([PYTHON, "-m", "sessions_app.simulator", "--host", "127.0.0.1", "--port", port],
                                   self.env, self.shape.dir / "simulator.log")
        for port in self.shape.daphne_ports:
            self.start_daphne(port)
        self.wait_until(lambda: all(listening(p) for p in self.shape.daphne_ports), "the Daphne processes")
        self.nginx = spawn(["nginx", "-p", str(self.shape.dir), "-c", str(self.conf)], self.env,
                           self.shape.dir / "nginx.log")
        self.wait_until(lambda: listening(self.shape.https_port), "nginx")
        self.write_state()
        log(f"serving {self.shape.origin}/ ({len(self.daphnes)} Daphne processes); Ctrl-C stops")

    def wait_until(self, ready, what: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not ready():
            for child in [*self.daphnes.values(), self.nginx]:
                if child is not None and child.poll() is not None:
                    raise SystemExit(f"{what}: {child.args[0]} exited with {child.returncode} "
                                     f"(logs in {self.shape.dir})")
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start within {within:.0f} s (logs in {self.shape.dir})")
            time.sleep(0.1)

    def write_state(self) -> None:
        state = {"pid": os.getpid(), "url": self.shape.origin, "https_port": self.shape.https_port,
                 "nginx": self.nginx.pid if self.nginx else None,
                 "daphne": [{"port": port, "pid": process.pid} for port, process in self.daphnes.items()]}
        temporary = self.shape.dir / "state.json.tmp"
        temporary.write_text(json.dumps(state))
        temporary.replace(self.shape.dir / "state.json")

    def supervise(self) -> None:
        """Until asked to stop: a Daphne process that exited (crash, kill, SIGTERM for a rolling restart) is
        started again on its port; nginx skips the port meanwhile. nginx exiting stops everything."""
        while not self.stopping:
            if self.nginx is not None and self.nginx.poll() is not None:
                log(f"nginx exited with {self.nginx.returncode}: stopping")
                break
            for port, process in list(self.daphnes.items()):
                if process.poll() is not None and not self.stopping:
                    log(f"daphne on port {port} exited with {process.returncode}: starting it again")
                    time.sleep(RESTART_PAUSE_SECONDS)
                    self.start_daphne(port)
                    self.write_state()
            time.sleep(0.1)

    def stop(self, *_) -> None:
        self.stopping = True

    def shut_down(self) -> None:
        """Daphne first (each drains, then closes its browsers with 1012 through nginx), nginx last."""
        log("stopping: draining the Daphne processes")
        for process in [*self.daphnes.values(), self.simulator]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        drain = float(self.env.get("SWITCHBOARD_DRAIN_SECONDS", "20"))
        for process in [*self.daphnes.values(), self.simulator]:
            if process is not None:
                finish(process, drain + 10)
        if self.nginx is not None:
            if self.nginx.poll() is None:
                self.nginx.send_signal(signal.SIGQUIT)  # graceful: lets the last responses out
            finish(self.nginx, 10)
        (self.shape.dir / "state.json").unlink(missing_ok=True)
        log("stopped")


def finish(process: subprocess.Popen, within: float) -> None:
    """Waits for a process already asked to stop; kills it after `within` seconds."""
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def database_ensure(url: str) -> None:
    """Create the PostgreSQL database DATABASE_URL names when the server answers but does not have it yet."""
    import environ
    import psycopg
    from psycopg import sql

    config = environ.Env.db_url_config(url)
    if "postgresql" not in config["ENGINE"]:
        return
    params = {"host": config.get("HOST") or "127.0.0.1", "port": config.get("PORT") or 5432,
              "user": config.get("USER") or None, "password": config.get("PASSWORD") or None}
    try:
        psycopg.connect(dbname=config["NAME"], connect_timeout=5, **params).close()
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise SystemExit(f"PostgreSQL did not answer at {params['host']}:{params['port']}: {error}") from None
        with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **params) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
        log(f"created database {config['NAME']}")


def prepare(shape: Shape, env: dict[str, str]) -> Path:
    """Migrate and sync the default upstream, collect static files, certificate, nginx.conf."""
    log(f"database {shape.database_url.split('@')[-1]}, channel layer {shape.redis_url.split('@')[-1]}")
    database_ensure(shape.database_url)
    manage(env, "bootstrap", "--bind", "127.0.0.1")
    manage(env, "collectstatic", "--noinput", quiet=True)
    self_signed_certificate(shape)
    return nginx_conf(shape, shape.var_dir / "staticfiles")


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    shape = Shape.from_env(env)
    shape.dir.mkdir(parents=True, exist_ok=True)
    if not (env.get("OPENAI_API_KEY") or env.get("OPENAI_WEBSOCKET_URL")):
        env["SWITCHBOARD_START_SIMULATOR"] = "1"  # no real upstream configured: the built-in simulator
    env = app_env(shape, env)
    if argv[:1] == ["manage"]:
        return subprocess.run([PYTHON, "manage.py", *argv[1:]], cwd=ROOT, env=env).returncode
    if argv:
        raise SystemExit("usage: scripts/production.sh [manage ARGS...]")
    conf = prepare(shape, env)
    supervisor = Supervisor(shape, env, conf)
    signal.signal(signal.SIGINT, supervisor.stop)
    signal.signal(signal.SIGTERM, supervisor.stop)
    try:
        supervisor.start()
        supervisor.supervise()
    finally:
        supervisor.shut_down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

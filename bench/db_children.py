"""Run a micro-benchmark's measuring half once per database, each in a child process of its own.

One process cannot configure Django for two databases, so `bench/write_request.py` and `bench/turn_end.py`
re-run themselves with `--child --turns N`: SQLite on a file in a temporary SWITCHBOARD_VAR_DIR, PostgreSQL on a
throwaway database (`throwaway_pg`, created and dropped). The child prints one JSON line, returned here.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(script: str, env: dict[str, str], turns: int, timeout: float = 900) -> dict:
    done = subprocess.run([sys.executable, script, "--child", "--turns", str(turns)], cwd=ROOT,
                          env={**os.environ, "DEBUG": "false", "LOG_LEVEL": "WARNING", "REDIS_URL": "",
                               "SECRET_KEY": secrets.token_urlsafe(50),
                               "SWITCHBOARD_ENCRYPTION_KEY": secrets.token_urlsafe(32), **env},
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_database(script: str, ways: list[str], turns: int, name: str) -> dict[str, dict]:
    """{way: the child's report} for each of `ways` ("sqlite", "postgresql"); ValueError on another."""
    reports = {}
    with tempfile.TemporaryDirectory(prefix=f"sb-{name}-") as tmp:
        for way in ways:
            if way == "sqlite":
                reports[way] = run_child(script, {"SWITCHBOARD_VAR_DIR": tmp,
                                                  "DATABASE_URL": f"sqlite:///{tmp}/{name}.sqlite3"}, turns)
            elif way == "postgresql":
                from throwaway_pg import throwaway_database

                with throwaway_database(f"switchboard_{name}") as url:
                    reports[way] = run_child(script, {"SWITCHBOARD_VAR_DIR": tmp, "DATABASE_URL": url.replace(
                        "postgresql://", "postgres://", 1)}, turns)
            else:
                raise ValueError(f"unknown way {way!r}")
    return reports

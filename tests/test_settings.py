"""Settings come from the environment: checked in a fresh interpreter per configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST", ""),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "hosts": settings.ALLOWED_HOSTS, "csrf": settings.CSRF_TRUSTED_ORIGINS,
    "upstream": settings.OPENAI_WEBSOCKET_URL,
    "secret_key": settings.SECRET_KEY,
    "installed": settings.INSTALLED_APPS,
}))
"""

BASE_ENV_DROP = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "OPENAI_API_KEY", "OPENAI_WEBSOCKET_URL",
                 "SWITCHBOARD_ENCRYPTION_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS")


def run_settings(tmp_path: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in BASE_ENV_DROP}
    environ.update(DJANGO_SETTINGS_MODULE="project.settings", SWITCHBOARD_VAR_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_embedded_default_with_no_environment(tmp_path):
    values = run_settings(tmp_path)
    assert values["debug"] is True
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"].startswith(str(tmp_path))
    assert values["layer"] == "channels.layers.InMemoryChannelLayer"
    assert values["upstream"] == "ws://127.0.0.1:8765/v1/responses"
    assert values["installed"][0] == "daphne"
    # the generated dev secret is persisted, so sessions survive a restart
    assert run_settings(tmp_path)["secret_key"] == values["secret_key"]
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_production_environment(tmp_path):
    values = run_settings(
        tmp_path,
        DATABASE_URL="postgres://sb:pw@db.internal:5432/switchboard",
        REDIS_URL="redis://cache.internal:6379/0",
        SECRET_KEY="x" * 60,
        SWITCHBOARD_ENCRYPTION_KEY="a-long-passphrase-for-keys",
        ALLOWED_HOSTS="switchboard.example.com,sb.example.com",
        CSRF_TRUSTED_ORIGINS="https://switchboard.example.com",
        OPENAI_API_KEY="sk-prod-key",
    )
    assert values["debug"] is False
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["host"] == "db.internal" and values["name"] == "switchboard"
    assert values["layer"] == "channels_redis.core.RedisChannelLayer"
    assert values["hosts"] == ["switchboard.example.com", "sb.example.com"]
    assert values["csrf"] == ["https://switchboard.example.com"]
    assert values["upstream"] == "wss://api.openai.com/v1/responses"


def test_explicit_upstream_url_wins(tmp_path):
    values = run_settings(tmp_path, OPENAI_API_KEY="sk-x", OPENAI_WEBSOCKET_URL="wss://proxy.example/v1/responses")
    assert values["upstream"] == "wss://proxy.example/v1/responses"


def test_production_refuses_to_start_without_an_encryption_key(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in BASE_ENV_DROP}
    environ.update(SECRET_KEY="x" * 60, SWITCHBOARD_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="project.settings")
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True)
    assert out.returncode != 0
    assert "SWITCHBOARD_ENCRYPTION_KEY must be set" in out.stderr


def test_production_configuration_passes_check_deploy(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in BASE_ENV_DROP}
    environ.update(
        DJANGO_SETTINGS_MODULE="project.settings", SWITCHBOARD_VAR_DIR=str(tmp_path),
        SECRET_KEY="k3y-" + "Zq9xW2vB7nM4pL8sT1yU6rE3oI5aD0fG" * 2, SWITCHBOARD_ENCRYPTION_KEY="passphrase",
        ALLOWED_HOSTS="switchboard.example.com", CSRF_TRUSTED_ORIGINS="https://switchboard.example.com",
    )
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=environ, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout

"""The demo login (a superuser with a published password) exists only where nobody else can reach it.

`manage.py bootstrap --bind HOST` creates it only for a loopback HOST; with DEBUG off its presence is a
deploy check error, and `python -m sessions_app.serve` refuses to start.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from sessions_app.checks import DEMO_PASSWORD_ID, demo_password_errors
from sessions_app.services import is_loopback
from tests.live import ROOT, database_url, free_port, stop, wait_for_port


def bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap", "--no-migrate", *args, stdout=out)
    return out.getvalue()


def demo_exists(settings) -> bool:
    return get_user_model().objects.filter(username=settings.SWITCHBOARD_DEMO_USERNAME).exists()


@pytest.mark.django_db
def test_bootstrap_on_a_public_bind_creates_no_demo_user(settings):
    settings.DEBUG = True
    output = bootstrap("--bind", "0.0.0.0")
    assert not demo_exists(settings)
    assert "Demo user: not created: the server will listen beyond this machine (0.0.0.0" in output
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_bootstrap_without_a_bind_creates_no_demo_user(settings):
    settings.DEBUG = True
    assert "no --bind given" in bootstrap()
    assert not demo_exists(settings)


@pytest.mark.django_db
def test_bootstrap_on_loopback_creates_the_demo_user_and_says_so(settings):
    settings.DEBUG = True
    assert "Demo user: created (sign in as demo / switchboard-demo)" in bootstrap("--bind", "127.0.0.1")
    assert demo_exists(settings)
    assert "Demo user: exists" in bootstrap("--bind", "127.0.0.1")
    later = bootstrap("--bind", "0.0.0.0")  # the same install, later exposed
    assert "WARNING: the demo user has its published password and the server will listen on 0.0.0.0" in later


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False), ("", False), (None, False),
])
def test_loopback_means_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.django_db
def test_the_check_reports_the_demo_password_when_debug_is_off(settings):
    User = get_user_model()
    demo = User.objects.create_user(settings.SWITCHBOARD_DEMO_USERNAME, password=settings.SWITCHBOARD_DEMO_PASSWORD,
                                    is_staff=True, is_superuser=True)
    settings.DEBUG = True
    assert demo_password_errors() == []
    settings.DEBUG = False
    [error] = demo_password_errors()
    assert error.id == DEMO_PASSWORD_ID and "published demo password" in error.msg
    with pytest.raises(SystemCheckError, match=DEMO_PASSWORD_ID):
        call_command("check", "--deploy", "--tag", "security", stdout=StringIO(), stderr=StringIO())
    demo.set_password("a-private-password-" + secrets.token_hex(4))
    demo.save()
    assert demo_password_errors() == []


def production_env() -> dict[str, str]:
    return {
        **os.environ, "DATABASE_URL": database_url(connection.settings_dict), "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "SWITCHBOARD_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1",
    }


def serve(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sessions_app.serve", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        cwd=ROOT, env=production_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.django_db(transaction=True)  # the subprocess must see the demo user: committed
def test_serve_refuses_to_start_in_production_with_the_demo_password(settings):
    demo = get_user_model().objects.create_user(
        settings.SWITCHBOARD_DEMO_USERNAME, password=settings.SWITCHBOARD_DEMO_PASSWORD, is_superuser=True)
    port = free_port()
    process = serve(port)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        stop(process)
    assert process.returncode != 0
    assert "Switchboard will not start: The demo user 'demo' still has the published demo password" in stderr
    assert "manage.py changepassword demo" in stderr
    assert "Listening" not in stderr

    demo.set_password("a-private-password-" + secrets.token_hex(4))
    demo.save()
    process = serve(port)
    try:
        wait_for_port(port, process)  # with the password changed it starts
    finally:
        stop(process)

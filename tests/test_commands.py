from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from sessions_app.models import ApiToken, UpstreamProfile

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_a_working_token_once(user):
    out = StringIO()
    call_command("create_api_token", "alice", stdout=out, stderr=StringIO())
    raw = out.getvalue().strip()
    assert ApiToken.authenticate(raw) == user
    assert not ApiToken.objects.filter(token_hash=raw).exists()


def test_create_api_token_for_unknown_user_fails_clearly():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_token", "nobody")


def test_bootstrap_creates_the_demo_user_only_on_an_empty_debug_install(settings):
    settings.DEBUG = True
    call_command("bootstrap", "--no-migrate", "--bind", "127.0.0.1", stdout=StringIO())
    demo = get_user_model().objects.get(username=settings.SWITCHBOARD_DEMO_USERNAME)
    assert demo.check_password(settings.SWITCHBOARD_DEMO_PASSWORD)
    assert UpstreamProfile.objects.get(is_default=True).websocket_url == settings.OPENAI_WEBSOCKET_URL
    call_command("bootstrap", "--no-migrate", "--bind", "127.0.0.1", stdout=StringIO())
    assert get_user_model().objects.count() == 1


def test_bootstrap_never_creates_a_demo_user_in_production(settings):
    settings.DEBUG = False
    call_command("bootstrap", "--no-migrate", stdout=StringIO())
    assert not get_user_model().objects.exists()


def test_simulate_upstream_serves_the_protocol_until_stopped():
    import json

    from websockets.sync.client import connect

    from tests.live import serving

    # The command takes the simulator's options: --fd too, as simulator_process.
    with serving("manage.py", "simulate_upstream", "--tokens-per-second", "0") as (port, process):
        with connect(f"ws://127.0.0.1:{port}/v1/responses", additional_headers={"Authorization": "Bearer sk-x"}) as ws:
            ws.send(json.dumps({"type": "response.create", "model": "gpt-5.5", "store": False, "input": "hello"}))
            types = []
            while not types or types[-1] != "response.completed":
                types.append(json.loads(ws.recv(timeout=10))["type"])
        assert types[0] == "response.created"
    assert process.returncode in (0, -15)  # stopped by SIGTERM on the way out

"""/healthz with everything up: 200, each dependency named, nothing secret in it."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from sessions_app import health
from sessions_app.services import default_profile_sync

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_upstream():
    health._upstream = health._target = None
    yield
    health._upstream = health._target = None


def test_healthz_reports_each_dependency(simulator_process):
    profile = default_profile_sync()
    profile.websocket_url = simulator_process.url
    profile.set_api_key("sk-secret-healthz-key")
    profile.save()

    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    report = response.json()
    assert report["status"] == "ok"
    assert report["database"]["status"] == "ok"
    assert report["channel_layer"]["status"] == "ok"
    assert report["upstream"]["status"] == "ok"
    text = json.dumps(report)
    assert "sk-secret" not in text and "127.0.0.1" not in text and "ws://" not in text


def test_unreachable_upstream_is_degraded_not_down():
    from tests.live import free_port

    profile = default_profile_sync()
    profile.websocket_url = f"ws://127.0.0.1:{free_port()}/v1/responses"  # nothing listens there
    profile.save()

    response = Client().get("/healthz")

    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "degraded"
    assert report["database"]["status"] == "ok"
    assert report["upstream"] == {"status": "down", "error": "ConnectionRefusedError"}

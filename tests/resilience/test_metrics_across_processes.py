"""/metrics with two Daphne processes: the database figures agree, whichever process answers."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.conf import settings
from django.db import connection as db_connection
from websockets.asyncio.client import connect

from tests.live import metrics_token, scrape_metrics
from tests.relay.conftest import db
from tests.resilience.test_scale_out import browser_session, receive_until, two_servers  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL or db_connection.vendor != "postgresql",
                       reason="needs REDIS_URL and PostgreSQL (two processes share them)"),
]


def shared_figures(samples: dict[str, list]) -> dict:
    """What comes from the database (everything but the per-process recorder and process figures)."""
    return {name: sorted((tuple(sorted(s.labels.items())), s.value) for s in found)
            for name, found in samples.items() if not name.startswith(("switchboard_recorder_", "switchboard_process_"))}


async def test_both_processes_report_the_same_database_figures(two_servers, user, staff_user):  # noqa: F811
    a, b = two_servers
    session, conversation = await db(browser_session)(user)
    token = await db(metrics_token)(staff_user)
    path = f"/ws/conversations/{conversation.pk}/"
    cookie = {"Cookie": f"sessionid={session}"}
    async with (connect(a.ws_url + path, additional_headers=cookie, origin=a.base_url) as on_a,
                connect(b.ws_url + path, additional_headers=cookie, origin=b.base_url) as on_b):
        for ws in (on_a, on_b):
            await receive_until(ws, lambda e: e["type"] == "switchboard.status")
        await on_a.send(json.dumps({"type": "response.create", "input": "hello"}))
        await receive_until(on_a, lambda e: e["type"] == "response.completed")
        await receive_until(on_b, lambda e: e["type"] == "response.completed")  # fanned out to the other tab

        async def both_agree() -> tuple[dict, dict]:
            while True:  # until the holder's recorder has written the response
                from_a, from_b = await asyncio.gather(asyncio.to_thread(scrape_metrics, a.base_url, token),
                                                      asyncio.to_thread(scrape_metrics, b.base_url, token))
                completed = dict(shared_figures(from_a)["switchboard_responses"])[(("status", "completed"),)]
                if completed == 1 and shared_figures(from_a) == shared_figures(from_b):
                    return from_a, from_b
                await asyncio.sleep(0.1)

        from_a, from_b = await asyncio.wait_for(both_agree(), 10)
    # One browser socket on each process: both counted by each.
    assert dict(shared_figures(from_a)["switchboard_client_sockets"])[(("face", "browser"),)] == 2
    # The recorder's figures are each process's own, named by its process id.
    process_a = {s.labels["process"] for s in from_a["switchboard_recorder_queue_depth"]}
    process_b = {s.labels["process"] for s in from_b["switchboard_recorder_queue_depth"]}
    assert len(process_a) == len(process_b) == 1 and process_a != process_b
    # Each says which event loop it runs on: python -m sessions_app.serve runs on uvloop (event_loop.py).
    for samples, process in ((from_a, process_a), (from_b, process_b)):
        assert [s.labels for s in samples["switchboard_process_info"]] == [
            {"process": next(iter(process)), "event_loop": "uvloop"}]

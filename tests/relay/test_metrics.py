"""/metrics: who may scrape it, and that a known run of real turns is counted right."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from sessions_app.models import ApiToken, ResponseRecord, UpstreamConnection
from tests import live

from .conftest import db, eventually, final

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(*, user=None, token: str | None = None):
    client = Client()
    if user is not None:
        client.force_login(user)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/metrics", headers=headers)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the Prometheus text parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def value(figures, name: str, **labels: str) -> float:
    return figures[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics_token(staff_user):
    return live.metrics_token(staff_user)


def test_anonymous_users_and_tokens_without_the_scope_are_refused(user, staff_user, metrics_token):
    assert scrape().status_code == 401
    assert scrape(token="sb_not-a-real-token-000").status_code == 401
    assert scrape(user=user).status_code == 403  # signed in, not staff
    assert scrape(token=ApiToken.issue(user=user)[1]).status_code == 403
    assert scrape(token=ApiToken.issue(user=staff_user)[1]).status_code == 403  # staff's token, no scope
    revoked, raw = ApiToken.issue(user=staff_user)
    revoked.reads_metrics = True
    revoked.save()
    revoked.revoke()
    assert scrape(token=raw).status_code == 401
    for allowed in (scrape(user=staff_user), scrape(token=metrics_token)):
        assert allowed.status_code == 200
        assert allowed["Content-Type"].startswith("text/plain; version=0.0.4")
        assert value(samples(allowed.content), "switchboard_replays_total") == 0


async def test_a_known_run_is_counted(profile, user, metrics_token, conversation_of, open_browser, open_gateway):
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    first = final(await browser.turn("remember: orca"))
    assert final(await browser.turn("/drop", previous_response_id=first["response"]["id"]))["type"] == "error"
    # The upstream cache died with its socket: the next turn is rebuilt from records (a replay).
    replayed = final(await browser.turn("what did I ask you to remember?",
                                        previous_response_id=first["response"]["id"]))
    assert replayed["type"] == "response.completed"
    gateway = await open_gateway(await db(lambda: ApiToken.issue(user=user)[1])())
    assert final(await gateway.turn("hi", model="gpt-5.5"))["type"] == "response.completed"
    assert final(await gateway.turn("/fail", model="gpt-5.5"))["type"] == "response.failed"
    assert await eventually(lambda: not ResponseRecord.objects.filter(
        status__in=["in_progress", "queued"]).exists() and ResponseRecord.objects.filter(status="failed").count() == 2)

    response = await db(scrape)(token=metrics_token)
    assert response.status_code == 200
    figures = samples(response.content)
    # Both sockets are open (the scrape's token opens none).
    assert value(figures, "switchboard_client_sockets", face="browser") == 1
    assert value(figures, "switchboard_client_sockets", face="gateway") == 1
    assert value(figures, "switchboard_responses", status="completed") == 3
    assert value(figures, "switchboard_responses", status="failed") == 2
    assert value(figures, "switchboard_responses", status="interrupted") == 0
    assert value(figures, "switchboard_errors_total", code="upstream_disconnected", source="relay") == 1
    assert value(figures, "switchboard_errors_total", code="server_error", source="upstream") == 1
    assert value(figures, "switchboard_replays_total") == 1
    # All five turns streamed text (/drop and /fail too, before they ended); the simulator answers at once.
    assert value(figures, "switchboard_time_to_first_text_seconds_count") == 5
    assert value(figures, "switchboard_time_to_first_text_seconds_bucket", le="+Inf") == 5
    assert value(figures, "switchboard_time_to_first_text_seconds_bucket", le="60.0") == 5
    assert 0 <= value(figures, "switchboard_time_to_first_text_seconds_sum") < 5 * 60
    assert value(figures, "switchboard_upstream_connections", close_reason="upstream_error") == 1
    assert value(figures, "switchboard_upstream_connections", close_reason="open") == 2
    process_figures = {name: labels for name, labels in figures if name.startswith("switchboard_recorder_")}
    assert dict(process_figures["switchboard_recorder_queue_depth"])["process"]
    assert value(figures, "switchboard_recorder_flush_seconds_count",
                 process=dict(process_figures["switchboard_recorder_queue_depth"])["process"]) >= 1
    # The test process runs the standard library's loop; a served one runs uvloop (tests/test_event_loop.py).
    assert value(figures, "switchboard_process_info", event_loop="asyncio",
                 process=dict(process_figures["switchboard_recorder_queue_depth"])["process"]) == 1

    await browser.close()
    await gateway.close()
    assert await eventually(lambda: not UpstreamConnection.objects.filter(closed_at=None).exists())
    figures = samples((await db(scrape)(token=metrics_token)).content)
    assert value(figures, "switchboard_client_sockets", face="browser") == 0
    assert value(figures, "switchboard_client_sockets", face="gateway") == 0
    assert value(figures, "switchboard_upstream_connections", close_reason="client_left") \
        + value(figures, "switchboard_upstream_connections", close_reason="idle") == 2

"""Staff views (overview, errors, usage and cost) and the dashboard's usage block, against a fixture of
records whose counts are known: every figure asserted here is one the page shows."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sessions_app import analytics
from sessions_app.error_catalog import CATALOG
from sessions_app.models import (
    ClientSocket,
    CompactionEvent,
    Conversation,
    ErrorEvent,
    ModelPrice,
    ResponseRecord,
    UpstreamConnection,
)

pytestmark = pytest.mark.django_db

PAGES = ("staff_overview", "staff_errors", "staff_usage")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def section(html: str, element_id: str) -> str:
    """The markup of the element with this id, to its matching close (the tables and figures are flat)."""
    start = html.index(f'id="{element_id}"')
    tag = html.rfind("<", 0, start)
    name = re.match(r"<(\w+)", html[tag:]).group(1)
    return html[tag:html.index(f"</{name}>", start) + len(name) + 3]


def cells(html: str, element_id: str) -> list[list[str]]:
    """The text of each body row's cells of a table."""
    body = section(html, element_id).split("<tbody>")[1].split("</tbody>")[0]
    return [[html_lib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def figure(html: str, element_id: str) -> str:
    return re.search(r'<span class="value">([^<]*)</span>', section(html, element_id)).group(1)


@pytest.fixture
def known(user, other_user):
    """Alice and Bob's records with known figures, two hours ago (one bucket) and three days ago."""
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    alice = Conversation.objects.create(owner=user, title="alice's", model="m-a")
    bob = Conversation.objects.create(owner=other_user, title="bob's", model="m-b")
    # Alice: 4 responses in one hour, TTFT 100/200/300/400 ms, one of them failed and one interrupted.
    statuses = ["completed", "failed", "completed", "interrupted"]
    records = []
    for i, (ttft, status) in enumerate(zip((100, 200, 300, 400), statuses, strict=True)):
        sent = hour + timedelta(minutes=5 * i)
        records.append(ResponseRecord.objects.create(
            conversation=alice, response_id=f"resp_a{i}", model="m-a", status=status, sent_at=sent,
            first_text_at=sent + timedelta(milliseconds=ttft), input_tokens=100, cached_input_tokens=40,
            output_tokens=50, total_tokens=150))
    # Bob: 2 in the same hour (no text: no TTFT), and 1 three days ago (the week column only).
    for i in range(2):
        ResponseRecord.objects.create(conversation=bob, response_id=f"resp_b{i}", model="m-b", status="completed",
                                      sent_at=hour + timedelta(minutes=1 + i), input_tokens=10, output_tokens=5,
                                      total_tokens=15)
    ResponseRecord.objects.create(conversation=bob, response_id="resp_old", model="m-b", status="completed",
                                  sent_at=now - timedelta(days=3), input_tokens=1000, output_tokens=500,
                                  total_tokens=1500)
    # Errors: a client error aggregated 5 times on its socket, and two upstream ones on alice's responses.
    ErrorEvent.objects.create(conversation=bob, source="client", code="invalid_json", count=5, message="bad <json>",
                              created_at=hour)
    for record in records[1:3]:
        ErrorEvent.objects.create(conversation=alice, response=record, source="upstream",
                                  code="previous_response_not_found", created_at=hour)
    CompactionEvent.objects.create(conversation=alice, kind="server_side", input_tokens_before=1000, tokens_after=200)
    CompactionEvent.objects.create(conversation=alice, kind="standalone", input_tokens_before=500, tokens_after=100)
    ended = {"connection_limit": 3, "upstream_error": 2, "idle": 1}
    for reason, n in ended.items():
        for _ in range(n):
            UpstreamConnection.objects.create(conversation=alice, url="ws://x", closed_at=now - timedelta(hours=1),
                                              close_reason=reason)
    UpstreamConnection.objects.create(conversation=bob, url="ws://x")  # open now
    for face in ("browser", "browser", "gateway"):
        ClientSocket.objects.create(user=user, face=face, holder="test:1:1")
    return {"alice": alice, "bob": bob, "records": records, "hour": hour}


def test_staff_pages_refuse_everyone_else(user, staff_user):
    for name in PAGES:
        url = reverse(name)
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and "login" in anonymous["Location"]
        refused = client_for(user).get(url)
        assert refused.status_code == 302 and refused["Location"].startswith("/admin/login/")
        assert client_for(staff_user).get(url).status_code == 200


def test_admin_index_links_the_staff_pages(staff_user):
    html = client_for(staff_user).get("/admin/").content.decode()
    for name in PAGES:
        assert f'href="{reverse(name)}"' in html


def test_overview_figures_match_the_fixture(known, staff_user):
    html = client_for(staff_user).get(reverse("staff_overview")).content.decode()
    assert figure(html, "live-sockets") == "3"
    assert "2 browser · 1 gateway" in section(html, "live-sockets")
    assert figure(html, "live-upstream") == "1"
    assert figure(html, "responses") == "6"  # the 3-day-old one is outside the day
    assert figure(html, "error-rate") == "33.3%"  # failed + interrupted of 6
    assert figure(html, "compaction") == "1,200"
    assert "2 compactions: 1,500 → 300 (80%)" in section(html, "compaction")
    # percentile_cont of 100, 200, 300, 400: p50 = 250, p95 = 300 + 0.85 × 100 = 385.
    assert cells(html, "ttft-table") == [[known["hour"].strftime("%Y-%m-%d %H:%M"), "250", "385"]]
    assert cells(html, "tokens-by-user") == [["bob", "30", "1,530"], ["alice", "600", "600"]]
    assert cells(html, "tokens-by-model") == [["m-b", "30", "1,530"], ["m-a", "600", "600"]]
    assert cells(html, "top-errors") == [["invalid_json", "5"], ["previous_response_not_found", "2"]]
    assert cells(html, "socket-endings") == [
        ["Connection limit (60 min)", "3"], ["Upstream error / dropped", "2"], ["Idle timeout", "1"],
        ["Server shutdown", "0"]]


def test_a_failed_attempt_the_relay_resent_is_no_broken_turn(known, staff_user):
    """The relay resent it (ResponseRecord.supersedes): the user saw one turn that worked. The overview's
    error rate counts turns, and every staff view says the attempt was recovered."""
    attempt = ResponseRecord.objects.create(conversation=known["alice"], response_id=None, model="m-a",
                                            status="failed", sent_at=known["hour"] + timedelta(minutes=30))
    error = ErrorEvent.objects.create(conversation=known["alice"], response=attempt, source="upstream",
                                      code="previous_response_not_found", created_at=known["hour"])
    ResponseRecord.objects.create(conversation=known["alice"], response_id="resp_resent", model="m-a",
                                  status="completed", origin="recovery_replay", supersedes=attempt,
                                  sent_at=known["hour"] + timedelta(minutes=30, seconds=1))
    client = client_for(staff_user)
    html = client.get(reverse("staff_overview")).content.decode()
    assert figure(html, "responses") == "8"
    # 8 attempts, 3 failed, 1 of them resent: 7 turns, 2 broken.
    assert figure(html, "error-rate") == "28.6%"
    assert "2 failed or interrupted · 1 more attempt failed and was recovered by a resend" in html_lib.unescape(
        section(html, "error-rate"))
    row = re.search(rf'<tr data-error="{error.pk}">.*?</tr>', client.get(reverse("staff_errors")).content.decode(),
                    re.S).group(0)
    assert f"attempt #{attempt.pk} (never created)" in row and "recovered: resent" in row
    listing = client.get("/admin/sessions_app/responserecord/?status__exact=failed").content.decode()
    assert listing.count('<span class="sb-flag">recovered</span>') == 1
    errors = client.get("/admin/sessions_app/errorevent/?code__exact=previous_response_not_found").content.decode()
    assert errors.count('<span class="sb-flag">recovered</span>') == 1  # of its 3 rows, the one resent


def test_compaction_savings_say_how_many_compactions_they_measure(known, staff_user):
    """A server-side compaction records no size after: the savings are over the ones that do, and say so."""
    CompactionEvent.objects.create(conversation=known["alice"], kind="server_side", input_tokens_before=900)
    html = html_lib.unescape(client_for(staff_user).get(reverse("staff_overview")).content.decode())
    assert figure(html, "compaction") == "1,200"
    assert "3 compactions: 1,500 → 300 (80%), over the 2 whose size after is known" in section(html, "compaction")


def test_a_server_side_compaction_is_measured_by_the_turn_that_continues_it(known, staff_user):
    """Its size after is the next turn's input tokens (the compacted window and that turn's input), read from the
    records: the overview's savings and the compaction list count it once that turn exists."""
    alice = known["alice"]
    compacting = ResponseRecord.objects.create(conversation=alice, response_id="resp_compacting", model="m-a",
                                               status="completed", input_tokens=900, produced_compaction=True)
    event = CompactionEvent.objects.create(conversation=alice, response=compacting, kind="server_side",
                                           input_tokens_before=900)
    assert CompactionEvent.objects.with_size_after().get(pk=event.pk).size_after is None  # nothing continued it yet
    ResponseRecord.objects.create(conversation=alice, response_id="resp_next", parent=compacting, model="m-a",
                                  status="completed", input_tokens=150)
    client = client_for(staff_user)
    html = html_lib.unescape(client.get(reverse("staff_overview")).content.decode())
    assert figure(html, "compaction") == "1,950"
    assert "3 compactions: 2,400 → 450 (81%)" in section(html, "compaction")
    listing = client.get(reverse("admin:sessions_app_compactionevent_changelist")).content.decode()
    assert ">150<" in listing and ">83 %<" in listing


def test_overview_charts_have_no_style_attributes(known, staff_user):
    html = client_for(staff_user).get(reverse("staff_overview") + "?window=week").content.decode()
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) >= 4
    assert not any("style=" in svg or "<script" in svg for svg in svgs)


def test_ttft_percentiles_per_bucket(known):
    rows = [r for r in analytics.ttft_over_time(since=timezone.now() - timedelta(days=1), unit="hour") if r.p50]
    assert [(r.bucket, round(r.p50), round(r.p95)) for r in rows] == [(known["hour"], 250, 385)]


def test_errors_view_counts_meanings_and_links(known, staff_user):
    html = client_for(staff_user).get(reverse("staff_errors")).content.decode()
    codes = cells(html, "error-codes")
    assert [row[:2] for row in codes] == [["invalid_json", "5"], ["previous_response_not_found", "2"]]
    assert codes[1][3] == CATALOG["previous_response_not_found"].meaning
    assert codes[1][4] == CATALOG["previous_response_not_found"].recovery
    # Each code's counts over time: one bar in the bucket of the fixture's hour (2 errors).
    spark = re.search(r'<tr data-code="previous_response_not_found">.*?(<svg class="sparkline".*?</svg>)',
                      html, re.S).group(1)
    assert spark.count("<rect") == 1 and "style=" not in spark
    recent = section(html, "recent-errors")
    for record in known["records"][1:3]:
        assert f'href="{reverse("admin:sessions_app_responserecord_change", args=[record.pk])}"' in recent
    assert f'href="{reverse("admin:sessions_app_conversation_chain", args=[known["alice"].pk])}"' in recent
    assert f'href="{reverse("conversation_detail", args=[known["bob"].pk])}"' in recent
    assert "bad &lt;json&gt;" in recent and "bad <json>" not in recent  # model output is escaped
    # One code: only its errors.
    only = client_for(staff_user).get(reverse("staff_errors") + "?code=invalid_json").content.decode()
    assert len(cells(only, "recent-errors")) == 1


def test_cost_arithmetic():
    price = ModelPrice(model="m", input_per_million=Decimal("2"), cached_input_per_million=Decimal("0.5"),
                       output_per_million=Decimal("8"))
    # (1M - 0.4M) × 2 + 0.4M × 0.5 + 0.1M × 8 = 1.2 + 0.2 + 0.8
    assert analytics.cost(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000,
                          price=price) == Decimal("2.2")
    assert analytics.cost(input_tokens=0, cached_input_tokens=0, output_tokens=0, price=price) == 0
    assert analytics.cost(input_tokens=10, cached_input_tokens=0, output_tokens=10, price=None) is None


def test_usage_and_cost_page(known, staff_user):
    ModelPrice.objects.create(model="m-a", input_per_million=Decimal("2"), cached_input_per_million=Decimal("0.5"),
                              output_per_million=Decimal("8"))
    html = client_for(staff_user).get(reverse("staff_usage")).content.decode()
    # Alice, 4 × (100 in, 40 cached, 50 out): (240 × 2 + 160 × 0.5 + 200 × 8) / 1M = 0.00216.
    assert cells(html, "usage-by-user") == [
        ["bob", "3", "1,020", "0", "510", "1,530", "— (no price: m-b)"],
        ["alice", "4", "400", "160", "200", "600", "0.0022"]]
    assert cells(html, "usage-by-model")[1] == ["m-a", "4", "400", "160", "200", "600", "0.0022"]
    assert cells(html, "usage-by-token") == [["Browser", "7", "1,420", "160", "710", "2,130",
                                              "0.0022 (no price: m-b)"]]
    assert analytics.usage(since=timezone.now() - timedelta(days=7), by="user")[1].cost == Decimal("0.00216")


def test_model_prices_are_edited_in_the_admin(staff_user):
    response = client_for(staff_user).post("/admin/sessions_app/modelprice/add/", {
        "model": "gpt-x", "input_per_million": "1.25", "cached_input_per_million": "0.125",
        "output_per_million": "10", "currency": "USD"})
    assert response.status_code == 302
    assert ModelPrice.objects.get(model="gpt-x").output_per_million == Decimal("10")


def test_dashboard_shows_only_the_users_own_usage(known, user, other_user):
    ModelPrice.objects.create(model="m-a", input_per_million=Decimal("2"), cached_input_per_million=Decimal("0.5"),
                              output_per_million=Decimal("8"))
    block = section(client_for(user).get(reverse("dashboard")).content.decode(), "my-usage")
    assert "600" in block and "4 responses" in block and "0.0022" in block and "m-a" in block
    assert "1530" not in block and "1,530" not in block and "m-b" not in block
    block = section(client_for(other_user).get(reverse("dashboard")).content.decode(), "my-usage")
    assert "m-b" in block and "m-a" not in block and "3 responses" in block


def test_pages_cost_a_fixed_number_of_queries(known, staff_user):
    """Aggregated in the database: the query count does not grow with the records. (The query log also
    formats each SQL with its parameters, so a literal % in a strftime must be escaped right.)"""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(staff_user)
    counts = {}
    for name in PAGES:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse(name) + "?window=week").status_code == 200
        counts[name] = len(queries)
    ResponseRecord.objects.bulk_create(
        ResponseRecord(conversation=known["bob"], model=f"m-{i % 3}", sent_at=timezone.now() - timedelta(hours=i % 90),
                       first_text_at=timezone.now(), total_tokens=i) for i in range(300))
    for name in PAGES:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse(name) + "?window=week").status_code == 200
        assert len(queries) == counts[name], name


def test_staff_pages_never_show_an_upstream_key(known, staff_user, user):
    from sessions_app.services import default_profile_sync

    profile = default_profile_sync()
    profile.set_api_key("sk-staff-pages-secret-4242")
    profile.save()
    for conversation in (known["alice"], known["bob"]):
        conversation.upstream_profile = profile
        conversation.save()
    ErrorEvent.objects.create(conversation=known["alice"], source="relay", code="upstream_rejected",
                              message="handshake refused")
    pages = [client_for(staff_user).get(reverse(name) + f"?window={window}").content.decode()
             for name in PAGES for window in ("day", "week", "month")]
    pages.append(client_for(user).get(reverse("dashboard")).content.decode())
    for html in pages:
        assert "sk-staff-pages-secret" not in html and "gAAAA" not in html  # nor its Fernet ciphertext

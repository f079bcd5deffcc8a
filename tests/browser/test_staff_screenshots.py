"""The staff overview, errors and usage pages in a real Chromium under the strict policy, at 1280 and 420 px.

With SWITCHBOARD_SCREENSHOTS=1 they are written to docs/screenshots/staff-*.png; without, the pages are
still rendered at both widths and checked: no sideways scrolling, no CSP violation, no script error, no
serious axe finding.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.browser.pages import WIDE, describe, resize, run_axe, serious
from tests.browser.support import create_user, orm, sign_in
from tests.browser.test_screenshots import shoot
from tests.security.test_browser_csp import ViolationLog

pytestmark = pytest.mark.browser

CODES = ["previous_response_not_found", "rate_limit_exceeded", "upstream_disconnected", "invalid_json",
         "websocket_connection_limit_reached", "conversation_busy"]
REASONS = ["connection_limit", "connection_limit", "idle", "upstream_error", "client_left", "server_shutdown"]


ADMIN_CHROME = (".breadcrumbs", "#header", "#nav-sidebar")


def ours(violations: list[dict]) -> list[dict]:
    """Findings on these pages' own content: the admin's chrome (Django's breadcrumbs) is not ours to fix."""
    return [v for v in violations if not all(n["target"].startswith(ADMIN_CHROME) for n in v["nodes"])]


def seed_week() -> None:
    """A week of plausible traffic for two users: responses, errors, compactions, socket endings, prices."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from sessions_app.models import (
        CompactionEvent,
        Conversation,
        ErrorEvent,
        ModelPrice,
        ResponseRecord,
        UpstreamConnection,
    )

    rng, now = random.Random(15), timezone.now()
    ModelPrice.objects.create(model="gpt-5.5", input_per_million=Decimal("1.25"),
                              cached_input_per_million=Decimal("0.125"), output_per_million=Decimal("10"))
    users = [get_user_model().objects.get(username=name) for name in ("alice", "bob")]
    conversations = [Conversation.objects.create(owner=users[i % 2], title=f"Planning {i}",
                                                 model=["gpt-5.5", "gpt-5.5-mini"][i % 2]) for i in range(6)]
    for i in range(600):
        hours = rng.random() * (24 if rng.random() < .4 else 168)
        sent = now - timedelta(hours=hours)
        conversation = conversations[i % 6]
        # Ids as long as real ones (resp_ + 48 hex): short ones hid a latest-errors table wider than 1280 px.
        record = ResponseRecord.objects.create(
            conversation=conversation, response_id=f"resp_{rng.getrandbits(192):048x}", model=conversation.model,
            status=rng.choice(["completed"] * 12 + ["failed", "interrupted"]), sent_at=sent,
            first_text_at=sent + timedelta(milliseconds=rng.gauss(600, 150) + (900 if rng.random() < .1 else 0)),
            input_tokens=(inputs := rng.randrange(500, 9000)), cached_input_tokens=rng.randrange(inputs),
            output_tokens=(outputs := rng.randrange(50, 900)), total_tokens=inputs + outputs)
        if record.status != "completed" or rng.random() < .05:
            code = rng.choice(CODES)  # the upstream's own words, which name the response they are about
            message = (f"Previous response with id '{record.response_id}' not found."
                       if code == "previous_response_not_found" else "The upstream said no.")
            ErrorEvent.objects.create(conversation=conversation, response=record, source="upstream", code=code,
                                      message=message, created_at=sent)
    for i in range(40):
        CompactionEvent.objects.create(conversation=conversations[i % 6], kind="server_side",
                                       input_tokens_before=120_000, tokens_after=rng.randrange(15_000, 40_000),
                                       created_at=now - timedelta(hours=rng.random() * 24))
    for i in range(60):
        UpstreamConnection.objects.create(conversation=conversations[i % 6], url="ws://upstream",
                                          closed_at=now - timedelta(hours=rng.random() * 24),
                                          close_reason=rng.choice(REASONS))
    UpstreamConnection.objects.create(conversation=conversations[0], url="ws://upstream")


def test_staff_pages_at_both_widths(browser, daphne_server) -> None:
    create_user("alice", "alice-password-1")
    create_user("bob", "bob-password-1")
    create_user("root", "root-password-1", is_staff=True, is_superuser=True)
    orm(seed_week)
    context = browser.new_context(base_url=daphne_server.base_url, viewport={"width": WIDE, "height": 900})
    context.set_default_timeout(10_000)
    log = ViolationLog(context)
    page = log.watch(context.new_page())
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, "root", "root-password-1")

    page.goto("/admin/")
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.locator("svg.chart")).to_have_count(4)
    resize(page, WIDE)
    shoot(page, "staff-overview")
    found = ours(serious(run_axe(page)))
    assert not found, describe("overview", found)

    page.get_by_role("link", name="Errors", exact=True).click()
    expect(page.locator("#error-codes")).to_contain_text("previous_response_not_found")
    expect(page.locator("#recent-errors a.response-link").first).to_be_visible()
    shoot(page, "staff-errors")
    found = ours(serious(run_axe(page)))
    assert not found, describe("errors", found)

    page.get_by_role("link", name="Usage and cost").click()
    expect(page.locator("#usage-by-user")).to_contain_text("alice")
    shoot(page, "staff-usage")
    found = ours(serious(run_axe(page)))
    assert not found, describe("usage", found)

    user = browser.new_context(base_url=daphne_server.base_url, viewport={"width": WIDE, "height": 900})
    user_page = log.watch(user.new_page())
    sign_in(user_page, "alice", "alice-password-1")
    expect(user_page.locator("#my-usage")).to_contain_text("Your usage, last 7 days")
    user_page.locator("#my-usage").scroll_into_view_if_needed()
    log.assert_none()
    assert not errors, errors
    user.close()
    context.close()

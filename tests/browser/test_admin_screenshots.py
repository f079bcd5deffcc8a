"""The staff lists and the chain tree at 1280 px: the columns that matter are on screen without scrolling.

With SWITCHBOARD_SCREENSHOTS=1 the pages are also written to docs/screenshots/ (admin-*.png).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from sessions_app.models import ApiToken, ResponseRecord, UpstreamProfile
from tests.admin_world import build_world
from tests.browser.pages import NARROW, WIDE, assert_fits, resize
from tests.browser.support import create_user, orm, sign_in

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WRITE = os.environ.get("SWITCHBOARD_SCREENSHOTS") == "1"
MAX_HEIGHT = 1400

# Per list, the columns (by field name) a reader must see at 1280 px without scrolling sideways.
MUST_SEE = {
    "responserecord": ["sent", "status_badge", "tokens", "ttft_ms", "took", "origin_label", "flags"],
    "compactionevent": ["created", "kind_short", "before", "after", "saved", "items_replaced"],
    "errorevent": ["created", "code_badge", "message_short", "times"],
    "upstreamconnection": ["opened", "closed_why", "close_code", "lasted", "responses_carried", "close_text_short"],
    "conversation": ["__str__", "status_badge", "responses", "tokens", "model", "owner"],
    "item": ["__str__", "item_type", "function", "text_short"],
    "apitoken": ["prefix", "state", "name", "user", "last_used"],
    "upstreamprofile": ["name", "state", "key_display", "auth_style"],
    "clientsocket": ["opened", "user", "face", "beat"],
    "userlimits": ["user", "max_sockets", "responses_per_hour"],
}

# The right edge of each named column's header and of the results area, as the window shows them.
EDGES_JS = """(names) => {
  const results = document.querySelector('#changelist .results') || document.querySelector('#result_list');
  const area = results.getBoundingClientRect();
  const edges = {};
  for (const name of names) {
    const th = document.querySelector(`#result_list thead th.column-${name}`);
    edges[name] = th ? th.getBoundingClientRect().right : null;
  }
  return {edges, visibleRight: Math.min(area.right, document.documentElement.clientWidth)};
}"""


def world(username: str) -> str:
    from django.contrib.auth import get_user_model

    from sessions_app.models import ClientSocket, UserLimits

    owner = get_user_model().objects.get(username=username)
    built = build_world(owner)
    for n in range(3):
        build_world(owner, tag=f"x{n}")
    UserLimits.objects.get_or_create(user=owner, defaults={"max_sockets": 4})
    ClientSocket.objects.create(user=owner, face="browser", holder="host:1:boot")
    return str(built.conversation.pk)


def shoot(page: Page, name: str) -> None:
    if not WRITE:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    height = min(page.evaluate("document.scrollingElement.scrollHeight"), MAX_HEIGHT)
    page.screenshot(path=str(OUT / f"{name}-{WIDE}.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": WIDE, "height": height}, animations="disabled")


def test_lists_and_the_chain_tree_at_1280_px(new_page) -> None:
    create_user("staffer", "staffer-password-1", is_staff=True, is_superuser=True)
    alice = create_user("alice", "alice-password-1")
    conversation = orm(world, "alice")
    orm(ApiToken.issue, user=alice)
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    resize(page, WIDE)
    sign_in(page, "staffer", "staffer-password-1")

    for model, names in MUST_SEE.items():
        page.goto(f"/admin/sessions_app/{model}/")
        expect(page.locator("#result_list")).to_be_visible()
        found = page.evaluate(EDGES_JS, names)
        hidden = {name: right for name, right in found["edges"].items()
                  if right is None or right > found["visibleRight"] + 0.5}
        assert not hidden, f"{model} at 1280 px hides {hidden} (visible up to {found['visibleRight']})"
        assert_fits(page, model, WIDE)
        if model == "responserecord":
            shoot(page, "admin-responses")
            # A cut-short id copies whole.
            button = page.locator("td.field-response_short button.sb-copy").first
            whole = button.get_attribute("data-copy-text")
            assert len(whole) > len(page.locator("td.field-response_short code").first.inner_text())
            button.click()
            expect(button).to_have_text("copied")
            assert page.evaluate("navigator.clipboard.readText()") == whole

    resize(page, NARROW)
    for model in MUST_SEE:
        page.goto(f"/admin/sessions_app/{model}/")
        assert_fits(page, model, NARROW)
    profile = orm(lambda: UpstreamProfile.objects.get(is_default=True).pk)
    page.goto(f"/admin/sessions_app/upstreamprofile/{profile}/change/")
    expect(page.get_by_role("button", name="Test connection")).to_be_visible()
    assert_fits(page, "profile", NARROW)
    # A record's page is named by its long id, and its inline tables are wider than a phone.
    record = orm(lambda: ResponseRecord.objects.filter(conversation_id=conversation, items__isnull=False)
                 .exclude(response_id=None).first().pk)
    for name, path in (("response page", f"/admin/sessions_app/responserecord/{record}/change/"),
                       ("conversation page", f"/admin/sessions_app/conversation/{conversation}/change/")):
        page.goto(path)
        assert_fits(page, name, NARROW)

    resize(page, WIDE)
    page.goto(f"/admin/sessions_app/conversation/{conversation}/chain/")
    expect(page.locator("ol.sb-tree .sb-branch")).to_have_count(2)
    expect(page.locator(".sb-tag-function")).to_have_text(["calls get_weather()"])
    assert_fits(page, "chain tree", WIDE)
    shoot(page, "admin-chain")
    resize(page, NARROW)
    assert_fits(page, "chain tree", NARROW)

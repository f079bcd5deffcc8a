"""The dashboard in a real browser: search, rename, archive, delete (real Daphne, real simulator upstream)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import RESULTS, composer_ready, create_user, orm, send, sign_in

pytestmark = pytest.mark.browser


def new_conversation(owner, title: str):
    from sessions_app import services

    return orm(services.conversation_create, owner=owner, title=title)


def recorded(conversation_pk) -> bool:
    """Every response of the conversation has ended in the records (the recorder writes in batches)."""
    from sessions_app.models import ResponseRecord

    records = ResponseRecord.objects.filter(conversation_id=conversation_pk)
    return records.exists() and not records.filter(status__in=("queued", "in_progress")).exists()


def wait_until_recorded(conversation_pk) -> None:
    for _ in range(200):
        if orm(recorded, conversation_pk):
            return
        time.sleep(0.05)
    raise AssertionError("the turn never reached the records")


def row(page: Page, title: str):
    return page.locator("table.conversations tbody tr", has=page.get_by_role("link", name=title, exact=True))


def test_search_finds_a_conversation_by_a_word_of_its_messages_and_rename_archive_delete_work(page: Page) -> None:
    alice = create_user("alice", "alice-password-1")
    ocean = new_conversation(alice, "Ocean notes")
    new_conversation(alice, "Groceries")
    sign_in(page, "alice", "alice-password-1")

    # A real turn through the relay and the simulator puts the word in the records.
    page.goto(f"/conversations/{ocean.pk}/")
    composer_ready(page)
    send(page, "remember: narwhal")
    expect(page.locator("#transcript > article.turn").first).to_have_class(re.compile(r"\bcompleted\b"))
    wait_until_recorded(ocean.pk)

    page.goto("/")
    expect(row(page, "Groceries")).to_have_count(1)
    search = page.get_by_role("searchbox", name="Search titles and messages")
    search.fill("NARWHAL")
    search.press("Enter")
    expect(page.locator("table.conversations tbody tr")).to_have_count(1)
    ocean_row = row(page, "Ocean notes")
    expect(ocean_row.locator('td[data-label="Turns"]')).to_have_text("1")
    expect(ocean_row.locator("time")).to_have_text("just now")
    expect(page.locator(".count")).to_contain_text("1 conversation matches “NARWHAL”")

    # Rename in place: the form opens in the row, and the search stays. (Until dashboard.js has run, the link opens
    # the rename page; the script marks it with aria-expanded.)
    rename = ocean_row.get_by_role("link", name="Rename")
    expect(rename).to_have_attribute("aria-expanded", "false")
    rename.click()
    title_box = ocean_row.get_by_role("textbox")
    expect(title_box).to_be_focused()
    title_box.fill("Arctic <em>notes</em>")
    ocean_row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.success")).to_have_text("Renamed to “Arctic <em>notes</em>”.")
    expect(search).to_have_value("NARWHAL")
    arctic = row(page, "Arctic <em>notes</em>")
    expect(arctic).to_have_count(1)
    assert page.locator("table.conversations em").count() == 0  # shown as text, never as markup

    # Archive: out of the active list, into the Archived tab (the search still applies), and back.
    arctic.get_by_role("button", name="Archive").click()
    expect(page.locator(".flash.success")).to_contain_text("Archived “Arctic <em>notes</em>”")
    expect(page.get_by_text("No conversations match “NARWHAL”.")).to_be_visible()
    page.get_by_role("link", name="Archived", exact=True).click()
    expect(arctic).to_have_count(1)
    arctic.get_by_role("button", name="Unarchive").click()
    expect(page.locator(".flash.success")).to_contain_text("back among your active conversations")
    page.get_by_role("link", name="Active", exact=True).click()
    expect(arctic).to_have_count(1)

    # Delete asks first: Cancel keeps it; confirming takes it and its records.
    arctic.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete “Arctic <em>notes</em>”?")).to_be_visible()
    expect(page.locator(".deletion-size")).to_contain_text("1 turn (1 response in all)")
    page.get_by_role("link", name="Cancel").click()
    expect(arctic).to_have_count(1)
    arctic.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.locator(".flash.success")).to_have_text("Deleted “Arctic <em>notes</em>” and its 1 response.")
    expect(page.get_by_text("No conversations match “NARWHAL”.")).to_be_visible()
    page.get_by_role("link", name="Clear", exact=True).click()
    expect(page.locator("table.conversations tbody tr")).to_have_count(1)
    expect(row(page, "Groceries")).to_have_count(1)

    from sessions_app.models import Conversation, Item
    assert not orm(lambda: Conversation.objects.filter(pk=ocean.pk).exists())
    assert not orm(lambda: Item.objects.filter(response__conversation_id=ocean.pk).exists())


def test_another_user_can_neither_find_rename_archive_nor_delete_it(new_page) -> None:
    alice = create_user("alice", "alice-password-1")
    create_user("bob", "bob-password-1")
    secret = new_conversation(alice, "Alice's secret plan")
    bob = new_page()
    sign_in(bob, "bob", "bob-password-1")

    bob.goto("/?q=secret")
    expect(bob.get_by_text("No conversations match “secret”.")).to_be_visible()
    for path in ("rename", "delete"):
        assert bob.goto(f"/conversations/{secret.pk}/{path}/").status == 404
    bob.goto("/")
    csrf = next(c["value"] for c in bob.context.cookies() if c["name"] == "csrftoken")
    for path, form in (("rename", {"title": "Bob's now"}), ("archive", {}), ("unarchive", {}), ("delete", {})):
        response = bob.request.post(f"/conversations/{secret.pk}/{path}/", form=form,
                                    headers={"X-CSRFToken": csrf}, max_redirects=0)
        assert response.status == 404, path

    from sessions_app.models import Conversation
    kept = orm(Conversation.objects.get, pk=secret.pk)
    assert kept.title == "Alice's secret plan" and kept.archived_at is None


def many_conversations(owner) -> None:
    """About thirty conversations of every kind, some with long titles, as a busy user has them."""
    from django.utils import timezone

    from sessions_app import services
    from sessions_app.models import ApiToken, Conversation, ResponseRecord

    token, _ = ApiToken.issue(user=owner, name="nightly evaluation agent")
    titles = [
        "Refactor the billing service's retry logic so that idempotency keys survive a process restart "
        "and duplicate charges become impossible even under partial network partitions",
        "Supercalifragilisticexpialidocious-and-an-unbroken-token-that-goes-on-and-on-without-spaces-at-all",
        "Quarterly report", "Trip to Lisbon", "Kubernetes upgrade plan", "", "Recipe ideas",
    ]
    statuses = ["idle", "idle", "failed", "streaming", "idle", "closed"]
    now = timezone.now()
    for n in range(30):
        gateway = n % 4 == 1
        conversation = services.conversation_create(
            owner=owner, title=titles[n % len(titles)], created_via="gateway" if gateway else "browser",
            api_token_pk=token.pk if gateway else None)
        for k in range(n % 5):
            ResponseRecord.objects.create(conversation=conversation, status="completed", total_tokens=1234 * (k + n),
                                          origin="user" if k % 3 else "tool_output")
        ago = [timedelta(seconds=10), timedelta(minutes=7), timedelta(hours=5), timedelta(days=3),
               timedelta(days=40), timedelta(days=500)][n % 6]
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - ago, status=statuses[n % 6])


@pytest.mark.parametrize("width", [1280, 420])
def test_a_busy_dashboard_fits_the_screen(new_page, width: int) -> None:
    owner = create_user("busy", "busy-password-1")
    orm(many_conversations, owner)
    page = new_page()
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, "busy", "busy-password-1")
    expect(page.locator("table.conversations tbody tr")).to_have_count(30)
    expect(page.get_by_text("nightly evaluation agent").first).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / f"dashboard-{width}.png"), full_page=True)
    page.screenshot(path=str(RESULTS / f"dashboard-{width}-first-screen.png"))

    first = page.locator("table.conversations tbody tr").first
    first.get_by_role("link", name="Rename").click()
    expect(first.get_by_role("textbox")).to_be_focused()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    page.screenshot(path=str(RESULTS / f"dashboard-rename-{width}.png"))
    first.get_by_role("textbox").press("Escape")
    expect(first.get_by_role("textbox")).to_be_hidden()

    row(page, "Quarterly report").first.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("button", name="Delete conversation")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    page.screenshot(path=str(RESULTS / f"dashboard-delete-{width}.png"), full_page=True)


def test_last_activity_stays_true_while_the_page_is_open(page: Page) -> None:
    alice = create_user("alice", "alice-password-1")
    new_conversation(alice, "Fresh")
    page.clock.install()  # the page's timers and clock, moved by the test (dashboard.js refreshes each 30 s)
    sign_in(page, "alice", "alice-password-1")
    activity = row(page, "Fresh").locator("time")
    expect(activity).to_have_text("just now")
    page.clock.run_for("05:00")
    expect(activity).to_have_text("5 min ago")
    page.clock.run_for("03:00:00")
    expect(activity).to_have_text("3 h ago")

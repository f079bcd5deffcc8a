"""The dashboard finds and manages a user's conversations: search, columns, rename, archive, delete.

Real database, Django's test client; the browser side is tests/browser/test_dashboard.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions_app.models import (
    ApiToken,
    CompactionEvent,
    Conversation,
    ErrorEvent,
    Item,
    ResponseRecord,
    UpstreamConnection,
)
from sessions_app.selectors import conversation_streaming
from sessions_app.services import conversation_create, default_profile_sync
from sessions_app.templatetags.dashboard_tags import relative_time

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<a href="/conversations/([0-9a-f-]{36})/">')


@pytest.fixture(autouse=True)
def profile(db):
    return default_profile_sync()


def turn(conversation, user_text: str, reply: str, *, origin: str = "user", total_tokens: int | None = 10,
         status: str = "completed", connection: UpstreamConnection | None = None, **fields) -> ResponseRecord:
    """One recorded response with its input and output message, as the recorder leaves them."""
    record = ResponseRecord.objects.create(conversation=conversation, origin=origin, status=status,
                                           total_tokens=total_tokens, connection=connection, **fields)
    Item.objects.create(response=record, direction="input", position=0, item_type="message", role="user",
                        text=user_text, raw={"type": "message"})
    Item.objects.create(response=record, direction="output", position=0, item_type="message", role="assistant",
                        text=reply, raw={"type": "message"})
    return record


def shown(client, query: str = "") -> list[str]:
    response = client.get(reverse("dashboard") + query)
    assert response.status_code == 200
    return ROW.findall(response.content.decode())


def row_of(html: str, title: str) -> str:
    [row] = [chunk for chunk in html.split("<tr>") if f">{title}</span></a>" in chunk]
    return row


# -- search -----------------------------------------------------------------------------------------------


def test_search_finds_a_conversation_by_a_word_of_its_messages_in_either_direction(client, user, other_user):
    whales = conversation_create(owner=user, title="Sea life")
    turn(whales, "Tell me about the Blue Whale", "It is the largest animal.")
    turn(whales, "and the blue whale's song?", "Low and long.")  # two matching items: still one row
    titled = conversation_create(owner=user, title="Whale watching trips")
    unrelated = conversation_create(owner=user, title="Taxes")
    turn(unrelated, "deductions", "Keep your receipts.")
    theirs = conversation_create(owner=other_user, title="bob's whale")
    turn(theirs, "whale", "whale")
    client.force_login(user)

    assert sorted(shown(client, "?q=WHALE")) == sorted([str(whales.pk), str(titled.pk)])
    assert shown(client, "?q=largest") == [str(whales.pk)]  # the assistant's words count too
    assert shown(client, "?q=receipts") == [str(unrelated.pk)]
    assert str(theirs.pk) not in shown(client, "?q=whale")
    assert shown(client, "?q=%20%20") == shown(client)  # blank: no filter


def test_search_takes_like_wildcards_literally(client, user):
    percent = conversation_create(owner=user, title="100% sure")
    conversation_create(owner=user, title="plain")
    client.force_login(user)
    assert shown(client, "?q=%25") == [str(percent.pk)]
    assert shown(client, "?q=_") == []


def test_no_match_says_so_and_offers_a_way_out(client, user):
    conversation_create(owner=user, title="something")
    client.force_login(user)
    html = client.get(reverse("dashboard") + "?q=%3Cb%3Enothing").content.decode()
    assert "No conversations match “&lt;b&gt;nothing”." in html
    assert "<b>nothing" not in html


def test_the_search_is_kept_on_every_page_link(client, user):
    for n in range(55):
        conversation_create(owner=user, title=f"kiwi {n}")
    conversation_create(owner=user, title="other")
    client.force_login(user)
    html = client.get(reverse("dashboard") + "?q=kiwi&page=2").content.decode()
    assert 'href="?q=kiwi&amp;page=1" rel="first"' in html
    assert "55 conversations match “kiwi”" in html
    assert len(shown(client, "?q=kiwi&page=2")) == 5


# -- columns ----------------------------------------------------------------------------------------------


def test_each_row_shows_user_turns_tokens_last_activity_status_and_how_it_was_made(client, user):
    token, _ = ApiToken.issue(user=user, name="nightly agent")
    made = conversation_create(owner=user, title="Agent run", created_via="gateway", api_token_pk=token.pk)
    turn(made, "start", "calling a tool", total_tokens=100)
    turn(made, "[tool output]", "done", origin="tool_output", total_tokens=250)  # a response, not a turn
    turn(made, "edited question", "answer", origin="fork", total_tokens=None)  # no usage recorded
    failed = turn(made, "once more", "", status="failed", total_tokens=None)
    turn(made, "once more", "ok", supersedes=failed, total_tokens=None)  # the relay resent it: one turn
    Conversation.objects.filter(pk=made.pk).update(updated_at=timezone.now() - timedelta(minutes=5),
                                                   status="failed")
    conversation_create(owner=user, title="In the browser")
    client.force_login(user)

    html = client.get(reverse("dashboard")).content.decode()
    row = row_of(html, "Agent run")
    assert re.search(r'data-label="Turns">3<', row)
    assert re.search(r'data-label="Tokens">350<', row)
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">5 min ago</time>', row)
    assert '<span class="status failed">Failed</span>' in row
    assert "nightly agent" in row and f"<code>{token.prefix}…</code>" in row
    browser_row = row_of(html, "In the browser")
    assert "just now" in browser_row and ">Browser<" in browser_row


def test_the_page_costs_the_same_queries_for_3_conversations_or_30(client, user):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("dashboard") + "?q=e").status_code == 200
        return len(queries)

    token, _ = ApiToken.issue(user=user, name="t")
    client.force_login(user)
    for n in range(3):
        turn(conversation_create(owner=user, title=f"few {n}", created_via="gateway", api_token_pk=token.pk),
             "hello", "there")
    few = page_queries()
    for n in range(27):
        made = conversation_create(owner=user, title=f"many {n}", created_via="gateway", api_token_pk=token.pk)
        turn(made, "hello", "there")
        turn(made, "again", "sure")
    assert len(shown(client, "?q=e")) == 30
    assert page_queries() == few


@pytest.mark.parametrize(("ago", "words"), [
    (timedelta(seconds=5), "just now"), (timedelta(seconds=-3), "just now"), (timedelta(minutes=5), "5 min ago"),
    (timedelta(minutes=59, seconds=59), "59 min ago"), (timedelta(hours=3), "3 h ago"),
    (timedelta(hours=30), "1 day ago"), (timedelta(days=6), "6 days ago"), (timedelta(days=20), "10 Jun"),
    (timedelta(days=400), "26 May 2024"),
])
def test_last_activity_reads_as_people_say_it(ago, words):
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    assert relative_time(now - ago, now) == words


# -- rename -----------------------------------------------------------------------------------------------


def test_the_owner_renames_a_conversation_without_moving_it_up_the_list(client, user):
    conversation = conversation_create(owner=user, title="old")
    before = Conversation.objects.get(pk=conversation.pk).updated_at
    client.force_login(user)
    response = client.post(reverse("conversation_rename", args=[conversation.pk]),
                           {"title": "  <script>alert(1)</script>\n new  ", "next": "/?q=old"})
    assert response.status_code == 302 and response["Location"] == "/?q=old"
    conversation.refresh_from_db()
    assert conversation.title == "<script>alert(1)</script> new"
    assert conversation.updated_at == before
    html = client.get(reverse("dashboard")).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; new" in html and "<script>alert(1)" not in html
    assert "Renamed to" in html  # the flash message


@pytest.mark.parametrize(("title", "message"), [
    ("   ", "at least one character"), ("x" * 201, "at most 200 characters"),
])
def test_a_title_must_have_1_to_200_characters(client, user, title, message):
    conversation = conversation_create(owner=user, title="kept")
    client.force_login(user)
    response = client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": title}, follow=True)
    assert message in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "kept"
    client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": "y" * 200})
    conversation.refresh_from_db()
    assert conversation.title == "y" * 200


def test_actions_never_send_the_browser_off_this_site(client, user):
    conversation = conversation_create(owner=user, title="t")
    client.force_login(user)
    for target in ("https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        response = client.post(reverse("conversation_archive", args=[conversation.pk]), {"next": target})
        assert response["Location"] == "/"
        page = client.get(reverse("conversation_delete", args=[conversation.pk]), {"next": target})
        assert target not in page.content.decode()


# -- archive ----------------------------------------------------------------------------------------------


def test_archiving_moves_a_conversation_to_the_archived_tab_and_back(client, user):
    conversation = conversation_create(owner=user, title="shelved")
    other = conversation_create(owner=user, title="still here")
    client.force_login(user)
    client.post(reverse("conversation_archive", args=[conversation.pk]))
    assert shown(client) == [str(other.pk)]
    assert shown(client, "?show=archived") == [str(conversation.pk)]
    assert shown(client, "?show=archived&q=shelved") == [str(conversation.pk)]
    assert client.get(reverse("conversation_detail", args=[conversation.pk])).status_code == 200

    client.post(reverse("conversation_unarchive", args=[conversation.pk]))
    assert sorted(shown(client)) == sorted([str(conversation.pk), str(other.pk)])
    assert shown(client, "?show=archived") == []


# -- delete -----------------------------------------------------------------------------------------------


def test_deleting_asks_first_then_takes_every_record_of_the_conversation(client, user):
    doomed = conversation_create(owner=user, title="Doomed plan")
    socket = UpstreamConnection.objects.create(conversation=doomed, url="ws://x", closed_at=timezone.now())
    first = turn(doomed, "one", "uno", connection=socket)
    turn(doomed, "two", "dos", connection=socket, parent=first)
    turn(doomed, "[tool]", "ok", origin="tool_output", connection=socket)
    ErrorEvent.objects.create(conversation=doomed, response=first, source="upstream", code="x")
    CompactionEvent.objects.create(conversation=doomed, response=first, kind="standalone")
    kept = conversation_create(owner=user, title="Kept")
    turn(kept, "stay", "ok")
    client.force_login(user)

    page = client.get(reverse("conversation_delete", args=[doomed.pk])).content.decode()
    assert "Delete “Doomed plan”?" in page and "<strong>2</strong> turns (3 responses in all)" in page
    assert Conversation.objects.filter(pk=doomed.pk).exists()  # GET deletes nothing

    response = client.post(reverse("conversation_delete", args=[doomed.pk]), follow=True)
    assert "Deleted “Doomed plan” and its 3 responses." in response.content.decode()
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    for model in (ResponseRecord, UpstreamConnection, ErrorEvent, CompactionEvent):
        assert not model.objects.filter(conversation_id=doomed.pk).exists(), model
    assert not Item.objects.filter(response__conversation_id=doomed.pk).exists()
    assert Item.objects.filter(response__conversation=kept).count() == 2


def test_a_conversation_streaming_right_now_is_not_deleted(client, user, settings):
    busy = conversation_create(owner=user, title="Busy")
    socket = UpstreamConnection.objects.create(conversation=busy, url="ws://x", heartbeat_at=timezone.now())
    turn(busy, "long essay", "", status="in_progress", connection=socket)
    client.force_login(user)

    page = client.get(reverse("conversation_delete", args=[busy.pk])).content.decode()
    assert "streaming in this conversation right now" in page
    response = client.post(reverse("conversation_delete", args=[busy.pk]), follow=True)
    assert "is streaming a response right now" in response.content.decode()
    assert Conversation.objects.filter(pk=busy.pk).exists()

    # Its process died (no heartbeat for long): nothing will write to it any more, so it may go.
    UpstreamConnection.objects.filter(pk=socket.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert not conversation_streaming(conversation=busy)
    client.post(reverse("conversation_delete", args=[busy.pk]))
    assert not Conversation.objects.filter(pk=busy.pk).exists()


def test_a_request_sent_moments_ago_without_a_socket_yet_counts_as_streaming(user):
    busy = conversation_create(owner=user, title="Starting")
    record = turn(busy, "hi", "", status="queued")
    assert conversation_streaming(conversation=busy)
    ResponseRecord.objects.filter(pk=record.pk).update(sent_at=timezone.now() - timedelta(minutes=5))
    assert not conversation_streaming(conversation=busy)


# -- nobody else ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["other_user", "staff_user"])
def test_nobody_but_the_owner_renames_archives_or_deletes(client, user, who, request):
    conversation = conversation_create(owner=user, title="alice's")
    turn(conversation, "mine", "yours")
    client.force_login(request.getfixturevalue(who))
    for name, data in [("conversation_rename", {"title": "pwned"}), ("conversation_archive", {}),
                       ("conversation_unarchive", {}), ("conversation_delete", {})]:
        assert client.post(reverse(name, args=[conversation.pk]), data).status_code == 404, name
    for name in ("conversation_rename", "conversation_delete"):
        assert client.get(reverse(name, args=[conversation.pk])).status_code == 404, name
    conversation.refresh_from_db()
    assert conversation.title == "alice's" and conversation.archived_at is None
    assert ResponseRecord.objects.filter(conversation=conversation).count() == 1
    assert str(conversation.pk) not in shown(client) + shown(client, "?show=archived") + shown(client, "?q=mine")


def test_writes_need_a_post(client, user):
    conversation = conversation_create(owner=user, title="t")
    client.force_login(user)
    for name in ("conversation_archive", "conversation_unarchive"):
        assert client.get(reverse(name, args=[conversation.pk])).status_code == 405

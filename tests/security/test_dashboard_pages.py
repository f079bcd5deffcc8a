"""The dashboard shows 50 conversations a page, so a user with thousands never gets one huge page."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from sessions_app.models import Conversation
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<a href="/conversations/([0-9a-f-]{36})/">')


@pytest.fixture
def conversations(user, other_user):
    profile = default_profile_sync()
    made = [conversation_create(owner=user, title=f"c{n:03}", profile=profile) for n in range(120)]
    conversation_create(owner=other_user, title="not alice's", profile=profile)
    return made


def rows(client, query: str = "") -> list[str]:
    response = client.get(reverse("dashboard") + query)
    assert response.status_code == 200
    return ROW.findall(response.content.decode())


def test_120_conversations_make_three_pages_of_50_50_and_20(client, user, conversations):
    client.force_login(user)
    pages = [rows(client, f"?page={n}") for n in (1, 2, 3)]
    assert [len(page) for page in pages] == [50, 50, 20]
    shown = [pk for page in pages for pk in page]
    assert len(set(shown)) == 120  # nobody twice, nobody missing
    assert set(shown) == {str(c.pk) for c in conversations}
    newest_first = [str(pk) for pk in Conversation.objects.filter(owner=user).order_by("-updated_at", "-pk")
                    .values_list("pk", flat=True)]
    assert shown == newest_first


def test_no_page_number_is_the_first_page(client, user, conversations):
    client.force_login(user)
    assert rows(client) == rows(client, "?page=1")
    assert rows(client, "?page=abc") == rows(client, "?page=1")


def test_an_out_of_range_page_shows_the_last_page(client, user, conversations):
    client.force_login(user)
    last = rows(client, "?page=3")
    assert rows(client, "?page=4") == last
    assert rows(client, "?page=999999") == last


def test_the_page_links_lead_to_the_neighbours(client, user, conversations):
    client.force_login(user)
    html = client.get(reverse("dashboard") + "?page=2").content.decode()
    assert "Page 2 of 3" in html
    for link in ('href="?page=1" rel="first"', 'href="?page=1" rel="prev"', 'href="?page=3" rel="next"',
                 'href="?page=3" rel="last"'):
        assert link in html
    first = client.get(reverse("dashboard")).content.decode()
    assert 'rel="prev"' not in first and 'href="?page=2" rel="next"' in first


def test_one_page_of_conversations_shows_no_page_links(client, user):
    default_profile_sync()
    conversation_create(owner=user, title="only one")
    client.force_login(user)
    html = client.get(reverse("dashboard")).content.decode()
    assert "only one" in html and "pagination" not in html

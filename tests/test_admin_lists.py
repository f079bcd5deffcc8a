"""The admin's lists and change pages read as a person needs: short columns first, badges, times with
milliseconds, booleans as words, JSON pretty-printed; and no page shows an upstream key."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from sessions_app.models import ApiToken, ClientSocket, UserLimits
from tests.admin_world import PROFILE_KEY, build_world

pytestmark = pytest.mark.django_db

MODELS = ["conversation", "responserecord", "item", "errorevent", "compactionevent", "upstreamconnection",
          "clientsocket", "apitoken", "upstreamprofile", "userlimits"]


@pytest.fixture
def world(user, other_user):
    world = build_world(user)
    ApiToken.issue(user=user)
    UserLimits.objects.create(user=other_user, max_sockets=3)
    ClientSocket.objects.create(user=user, face="browser", holder="host:1:boot")
    return world


def headers(html: str) -> list[str]:
    """The changelist's column headers, in order (the checkbox column left out)."""
    return [re.sub(r"<[^>]+>", "", h).strip().lower() for h in
            re.findall(r'<th scope="col"\s+class="[^"]*column-(?!action-checkbox)[^"]*">(.*?)</th>', html, re.S)]


@pytest.mark.parametrize("model", MODELS)
def test_every_list_and_its_first_change_page_render_for_staff_without_the_key(client, staff_user, world, model):
    client.force_login(staff_user)
    listing = client.get(reverse(f"admin:sessions_app_{model}_changelist"))
    assert listing.status_code == 200
    html = listing.content.decode()
    assert PROFILE_KEY not in html
    change = re.search(rf'href="(/admin/sessions_app/{model}/[^/"]+/change/[^"]*)"', html)
    assert change, f"no row links to a change page in the {model} list"
    page = client.get(change.group(1).replace("&amp;", "&"))
    assert page.status_code == 200 and PROFILE_KEY not in page.content.decode()


@pytest.mark.parametrize("model", MODELS)
def test_lists_refuse_anyone_but_staff(client, user, model):
    url = reverse(f"admin:sessions_app_{model}_changelist")
    assert client.get(url)["Location"].startswith(("/accounts/login/", "/admin/login/"))
    client.force_login(user)
    assert client.get(url)["Location"].startswith("/admin/login/")


def test_the_response_list_leads_with_what_matters(client, staff_user, world):
    client.force_login(staff_user)
    html = client.get(reverse("admin:sessions_app_responserecord_changelist")).content.decode()
    assert headers(html)[:5] == ["sent", "status", "tokens", "ttft", "took"]
    assert headers(html)[-2:] == ["response id", "lane"]
    assert '<span class="sb-badge sb-badge-failed">Failed</span>' in html
    assert '<span class="sb-badge sb-badge-completed">Completed</span>' in html
    assert re.search(r"<time datetime=[^>]+>\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}</time>", html)
    assert ">420 ms<" in html and ">2.0 s<" in html  # TTFT and duration, computed
    # "compacted" where it is true, nothing where it is not (no red cross on every row).
    assert html.count('<span class="sb-flag">compacted</span>') == 1
    assert "icon-no.svg" not in html
    # Long ids are cut short, whole in their title and copy button.
    rid = world.records["hello"].response_id
    assert f'title="{rid}"' in html and f'data-copy-text="{rid}"' in html and f">{rid}<" not in html


def test_the_other_lists_show_their_telling_columns_early(client, staff_user, world):
    client.force_login(staff_user)
    compactions = client.get(reverse("admin:sessions_app_compactionevent_changelist")).content.decode()
    assert headers(compactions)[:5] == ["when", "kind", "tokens before", "after", "saved"]
    assert ">75 %<" in compactions
    errors = client.get(reverse("admin:sessions_app_errorevent_changelist")).content.decode()
    assert headers(errors)[:3] == ["when", "code", "message"]
    assert "not found on this socket" in errors
    sockets = client.get(reverse("admin:sessions_app_upstreamconnection_changelist")).content.decode()
    assert headers(sockets)[:4] == ["opened", "closed because", "close code", "lasted"]
    assert "Upstream error / dropped" in sockets and "1 min 35 s" in sockets and "keepalive ping timeout" in sockets
    items = client.get(reverse("admin:sessions_app_item_changelist")).content.decode()
    assert ">get_weather<" in items


def test_readonly_json_is_pretty_printed_and_collapsible(client, staff_user, world):
    client.force_login(staff_user)
    record = world.records["hello"]
    html = client.get(reverse("admin:sessions_app_responserecord_change", args=[record.pk])).content.decode()
    assert '<details class="sb-json"><summary>' in html
    assert "{\n  &quot;type&quot;: &quot;response.create&quot;," in html  # indented, escaped
    assert "css/admin-lists.css" in html and "js/admin_copy.js" in html
    # Times with milliseconds, computed durations, booleans in words (no red cross).
    assert re.search(r"<time datetime=[^>]+>\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}</time>", html)
    assert "420 ms" in html and "2.0 s" in html
    assert html.count("<label>TTFT:</label>") == html.count("<label>Took:</label>") == 1  # once each, not twice
    assert "icon-no.svg" not in html and "icon-yes.svg" not in html


def test_the_conversation_page_lists_its_responses_as_the_response_list_does(client, staff_user, world):
    client.force_login(staff_user)
    html = client.get(reverse("admin:sessions_app_conversation_change", args=[world.conversation.pk])).content.decode()
    inline = html[html.index('id="responses-group"'):]
    assert re.search(r"<time datetime=[^>]+>\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}</time>", inline)  # to the millisecond
    assert '<span class="sb-badge sb-badge-failed">Failed</span>' in inline
    assert '<span class="sb-flag">resent</span>' in inline  # the replay that superseded the failed attempt
    assert inline.count('<span class="sb-flag">recovered</span>') == 1  # and that attempt
    assert "2.0 s" in inline  # computed duration
    parent = world.records["hello"].response_id
    assert f'data-copy-text="{parent}"' in inline and f">{parent}</a>" not in inline  # ids cut short, not links
    # The conversation's own times to the millisecond too.
    assert len(re.findall(r"<time datetime=[^>]+>\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}</time>", html[:html.index(
        'id="responses-group"')])) == 2

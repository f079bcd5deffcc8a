"""Every URL pattern of the URLConf, walked as anonymous, as another user and as staff.

The list of URLs comes from the URLConf itself: a new page without a rule here fails
`test_every_url_has_a_rule`, so no URL ships without its access rule being tested.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLResolver, get_resolver

from sessions_app.models import (
    ApiToken,
    CompactionEvent,
    Conversation,
    ErrorEvent,
    Item,
    ResponseRecord,
    UpstreamConnection,
    UserLimits,
)
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"

# name -> (method, anonymous, owner, another user, staff who does not own it); "login" = redirect to sign in.
RULES: dict[str, tuple[str, object, object, object, object]] = {
    "login": ("GET", 200, 302, 302, 302),  # signed-in users are sent on to the dashboard
    "logout": ("POST", 302, 302, 302, 302),
    "password_change": ("GET", "login", 200, 200, 200),
    "password_change_done": ("GET", "login", 200, 200, 200),
    "signup": ("GET", 404, 404, 404, 404),  # off by default (SWITCHBOARD_SIGNUP_ENABLED)
    "dashboard": ("GET", "login", 200, 200, 200),
    "conversation_new": ("POST", "login", 302, 302, 302),
    "conversation_detail": ("GET", "login", 200, 404, 200),  # staff: read-only
    # The owner's alone (staff who may read a conversation may not change it). An empty POST is a valid form.
    "conversation_settings": ("POST", "login", 302, 404, 404),
    # The dashboard's actions: the owner's alone; staff viewers of others' conversations are read-only (404).
    "conversation_rename": ("POST", "login", 302, 404, 404),  # an empty title: refused with a message, back
    "conversation_archive": ("POST", "login", 302, 404, 404),
    "conversation_unarchive": ("POST", "login", 302, 404, 404),
    "conversation_delete": ("GET", "login", 200, 404, 404),  # GET asks; the POST is tests/test_dashboard.py's
    "token_list": ("GET", "login", 200, 200, 200),
    "token_revoke": ("POST", "login", 302, 404, 404),
    "healthz": ("GET", 200, 200, 200, 200),
    "metrics": ("GET", 401, 403, 403, 200),  # staff, or a token that reads metrics (tests/relay/test_metrics.py)
    "favicon": ("GET", 301, 301, 301, 301),
    "conversation_compact": ("POST", 401, None, 404, 404),  # owner: the compaction itself is tested elsewhere
    "conversation_export": ("GET", 401, 200, 404, 200),  # staff: read-only, as the conversation page
}


def url_patterns(patterns=None, prefix="", namespace=None):
    """(route, name) of every URL pattern, includes flattened."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from url_patterns(pattern.url_patterns, prefix + str(pattern.pattern),
                                    pattern.namespace or namespace)
        else:
            name = pattern.name or ""
            yield prefix + str(pattern.pattern), f"{namespace}:{name}" if namespace else name


@pytest.fixture
def world(user, other_user, staff_user):
    """One object of every kind, owned by alice (`user`)."""
    profile = default_profile_sync()
    conversation = conversation_create(owner=user, title="alice's", profile=profile)
    connection = UpstreamConnection.objects.create(conversation=conversation, url="ws://x")
    record = ResponseRecord.objects.create(conversation=conversation, response_id="resp_alice1", connection=connection)
    objects = {
        "conversation": conversation, "upstreamprofile": profile, "upstreamconnection": connection,
        "responserecord": record,
        "item": Item.objects.create(response=record, direction="input", position=0, item_type="message", raw={}),
        "errorevent": ErrorEvent.objects.create(conversation=conversation, source="client", code="x"),
        "compactionevent": CompactionEvent.objects.create(conversation=conversation, kind="standalone"),
        "apitoken": ApiToken.issue(user=user)[0],
        "userlimits": UserLimits.objects.create(user=other_user),
        "user": user,
    }
    plain_staff = get_user_model().objects.create_user(username="plainstaff", password="x-password-1", is_staff=True)
    return {"objects": objects, "alice": user, "bob": other_user, "staff": staff_user, "plain_staff": plain_staff}


def concrete(route: str, name: str, world) -> str:
    """A real URL for a route, its parameters filled with alice's objects."""
    objects = world["objects"]
    if route.startswith("admin/^"):
        return "/admin/sessions_app/"
    if route.endswith("(?P<url>.*)$"):
        return "/admin/no-such-page/"
    model = re.match(r"admin:(?:\w+?)_(\w+?)_\w+$", name)
    obj = objects.get(model.group(1)) if model else None
    conversation_type = ContentType.objects.get_for_model(Conversation)
    values = {
        "uuid:pk": str(objects["conversation"].pk), "int:pk": str(objects["apitoken"].pk),
        "path:object_id": str(obj.pk) if obj is not None else "1", "id": str(world["alice"].pk),
        "path:content_type_id": str(conversation_type.pk),
    }
    if "content_type_id" in route:
        values["path:object_id"] = str(objects["conversation"].pk)
    return "/" + re.sub(r"<([^>]+)>", lambda m: values[m.group(1)], route)


def request(who, method: str, url: str):
    client = Client()
    if who is not None:
        client.force_login(who)
    return client.post(url) if method == "POST" else client.get(url)


def check(response, expected, login_url: str) -> None:
    if expected == "login":
        assert response.status_code == 302 and response["Location"].startswith(login_url), (
            response.status_code, response.get("Location"))
    elif expected is not None:
        assert response.status_code == expected


def test_every_url_has_a_rule():
    names = {name for route, name in url_patterns() if not route.startswith("admin/")}
    assert names == set(RULES), f"URLs without an access rule: {names - set(RULES)}; stale rules: {set(RULES) - names}"


def test_app_urls_follow_their_rules(world):
    for route, name in url_patterns():
        if route.startswith("admin/"):
            continue
        method, anonymous, owner, another, staff = RULES[name]
        url = concrete(route, name, world)
        for who, expected in [(None, anonymous), (world["alice"], owner), (world["bob"], another),
                              (world["staff"], staff)]:
            response = request(who, method, url)
            try:
                check(response, expected, LOGIN)
            except AssertionError as exc:
                raise AssertionError(f"{method} {url} as {who or 'anonymous'}: {exc}") from None
    # What a refused user gets reveals nothing: the same 404 as for an id that does not exist.
    assert request(world["bob"], "GET", f"/conversations/{uuid.uuid4()}/").status_code == 404


def test_admin_urls_are_for_staff_only(world):
    seen = 0
    for route, name in url_patterns():
        if not route.startswith("admin/") or name in ("admin:login", "admin:logout"):
            continue
        url = concrete(route, name, world)
        for who, login_urls in ((None, (LOGIN, ADMIN_LOGIN)), (world["bob"], (ADMIN_LOGIN,))):
            response = request(who, "GET", url)
            assert response.status_code == 302 and response["Location"].startswith(login_urls), (url, who)
        response = request(world["staff"], "GET", url)
        assert response.status_code < 500, (url, response.status_code)
        assert not (response.status_code == 302 and response["Location"].startswith(ADMIN_LOGIN)), url
        seen += 1
    assert seen > 50


def test_only_superusers_edit_upstream_profiles(world):
    profile = world["objects"]["upstreamprofile"]
    base = "/admin/sessions_app/upstreamprofile/"
    for url in (f"{base}add/", f"{base}{profile.pk}/delete/"):
        assert request(world["plain_staff"], "GET", url).status_code == 403
    # Plain staff may look, not change: the change page renders read-only.
    page = request(world["plain_staff"], "GET", f"{base}{profile.pk}/change/")
    assert page.status_code == 200 and b'name="websocket_url"' not in page.content
    assert request(world["plain_staff"], "POST", f"{base}{profile.pk}/change/").status_code == 403
    assert b'name="websocket_url"' in request(world["staff"], "GET", f"{base}{profile.pk}/change/").content

"""Every page carries the Content-Security-Policy, and no page needs 'unsafe-inline' to work.

The header is checked directive by directive; the markup is checked for what that policy would
block (an inline <script> or <style>, a style="…" attribute, an on…="…" handler), so a template
that regresses fails here before it fails in a browser (tests/security/test_browser_csp.py).
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from sessions_app.models import ErrorEvent, ResponseRecord
from sessions_app.services import conversation_create, default_profile_sync

pytestmark = pytest.mark.django_db

EXPECTED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'", "ws://testserver"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}
ADMIN_MODELS = ["upstreamprofile", "conversation", "upstreamconnection", "responserecord", "item", "errorevent",
                "compactionevent", "apitoken"]


def directives(header: str) -> dict[str, set[str]]:
    policy = {}
    for part in header.split(";"):
        name, *sources = part.split()
        policy[name] = set(sources)
    return policy


class InlineContent(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' blocks: inline scripts and styles, style and on… attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        # A JSON data block (Django's json_script) is never executed: CSP does not apply to it.
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.found.append(f"inline <script {attrs}>")
        if tag == "style":
            self.found.append("<style> block")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")


def inline_content(html: str) -> list[str]:
    parser = InlineContent()
    parser.feed(html)
    return parser.found


@pytest.fixture
def conversation(user):
    """A conversation with a forked chain and an error, so the pages draw turns, tags and indents."""
    profile = default_profile_sync()
    conversation = conversation_create(owner=user, title="csp", profile=profile)
    root = ResponseRecord.objects.create(conversation=conversation, response_id="resp_root", status="completed",
                                         input_tokens=3, cached_input_tokens=0, output_tokens=4, total_tokens=7)
    for name in ("resp_a", "resp_b"):
        ResponseRecord.objects.create(conversation=conversation, response_id=name, parent=root,
                                      previous_response_id="resp_root", origin="fork", status="completed")
    ErrorEvent.objects.create(conversation=conversation, source="upstream", code="server_error", message="boom")
    return conversation


def user_pages(conversation) -> list[str]:
    return [
        reverse("dashboard"),
        reverse("conversation_detail", args=[conversation.pk]),
        reverse("token_list"),
        reverse("password_change"),
        reverse("password_change_done"),
    ]


def admin_pages(conversation) -> list[str]:
    return [
        reverse("admin:index"),
        *(reverse(f"admin:sessions_app_{model}_changelist") for model in ADMIN_MODELS),
        reverse("admin:sessions_app_conversation_change", args=[conversation.pk]),
        reverse("admin:sessions_app_conversation_chain", args=[conversation.pk]),
        reverse("admin:sessions_app_responserecord_usage"),
        reverse("admin:sessions_app_upstreamprofile_add"),
        reverse("admin:auth_user_changelist"),
    ]


def assert_strict_policy(response, url: str) -> None:
    assert response.status_code == 200, url
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{url} has no Content-Security-Policy"
    assert "unsafe-inline" not in header and "unsafe-eval" not in header, (url, header)
    assert directives(header) == EXPECTED, (url, header)


def test_the_login_page_has_the_policy_and_no_inline_content(client):
    response = client.get(reverse("login"))
    assert_strict_policy(response, "login")
    assert inline_content(response.content.decode()) == []


def test_every_signed_in_page_has_the_policy_and_no_inline_content(client, user, conversation):
    client.force_login(user)
    for url in user_pages(conversation):
        response = client.get(url)
        assert_strict_policy(response, url)
        assert inline_content(response.content.decode()) == [], url


def test_every_admin_page_has_the_policy_and_no_inline_content(client, staff_user, conversation):
    client.force_login(staff_user)
    for url in admin_pages(conversation):
        response = client.get(url)
        assert_strict_policy(response, url)
        assert inline_content(response.content.decode()) == [], url


def test_the_admin_chain_indents_forks_with_classes(client, staff_user, conversation):
    client.force_login(staff_user)
    html = client.get(reverse("admin:sessions_app_conversation_chain", args=[conversation.pk])).content.decode()
    assert html.count('<li class="sb-branch">') == 2 and " style=" not in html.split("<body", 1)[1]
    assert "css/admin-chain.css" in html


def test_connect_src_names_the_pages_own_socket_origin(client, user):
    client.force_login(user)
    plain = directives(client.get(reverse("dashboard"), HTTP_HOST="127.0.0.1:8000").headers["Content-Security-Policy"])
    assert plain["connect-src"] == {"'self'", "ws://127.0.0.1:8000"}
    secure = client.get(reverse("dashboard"), HTTP_HOST="localhost:8443", secure=True)
    assert directives(secure.headers["Content-Security-Policy"])["connect-src"] == {"'self'", "wss://localhost:8443"}


def test_connect_src_honours_the_proxy_header_when_it_is_configured(client, user, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client.force_login(user)
    response = client.get(reverse("dashboard"), HTTP_HOST="localhost", HTTP_X_FORWARDED_PROTO="https")
    assert directives(response.headers["Content-Security-Policy"])["connect-src"] == {"'self'", "wss://localhost"}

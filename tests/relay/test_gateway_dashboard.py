"""A conversation made through the gateway remembers the API token whose socket made it, and the dashboard
says which (real ASGI app, real simulator upstream)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from sessions_app.models import ApiToken, Conversation

from .conftest import db, final

pytestmark = pytest.mark.django_db(transaction=True)


def dashboard_html(user) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("dashboard")).content.decode()


async def test_the_dashboard_names_the_token_that_made_a_gateway_conversation(profile, user, open_gateway):
    token, raw = await db(ApiToken.issue)(user=user, name="release bot")
    other, other_raw = await db(ApiToken.issue)(user=user)  # no name: known by its prefix
    for secret, text in ((raw, "Draft the release notes"), (other_raw, "Summarise the diff")):
        socket = await open_gateway(secret)
        assert final(await socket.turn(text, model="gpt-5.5"))["type"] == "response.completed"
        await socket.close()

    made = await db(lambda: {c.title: c.api_token_id for c in Conversation.objects.filter(owner=user)})()
    assert made == {"Draft the release notes": token.pk, "Summarise the diff": other.pk}
    html = await db(dashboard_html)(user)
    notes = next(row for row in html.split("<tr>") if ">Draft the release notes</span></a>" in row)
    assert "release bot" in notes and f"<code>{token.prefix}…</code>" in notes
    diff = next(row for row in html.split("<tr>") if ">Summarise the diff</span></a>" in row)
    assert f"API token <code>{other.prefix}…</code>" in diff
    assert 'data-label="Turns">1<' in notes

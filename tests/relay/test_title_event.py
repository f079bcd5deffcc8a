"""switchboard.conversation: a browser conversation's first message titles it, and every socket hears so.

(The gateway face never gets it: test_gateway checks that every gateway frame is a protocol event.)
"""

from __future__ import annotations

import pytest

from sessions_app.models import Conversation

from .conftest import db, final, types

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_first_message_titles_the_conversation_once_for_every_socket(
        profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    writer = await open_browser(user, conversation.pk)
    watcher = await open_browser(user, conversation.pk)

    first = await writer.turn("Plan the launch\nwith a second line")
    titled = {"type": "switchboard.conversation", "title": "Plan the launch"}
    assert [e for e in first if e["type"] == "switchboard.conversation"] == [titled]
    assert types(first).index("switchboard.conversation") < types(first).index("response.created")
    watched = await watcher.until(lambda e: e["type"] == "response.completed")
    assert [e for e in watched if e["type"] == "switchboard.conversation"] == [titled]

    second = await writer.turn("and then?", previous_response_id=final(first)["response"]["id"])
    assert "switchboard.conversation" not in types(second)  # titled once; later messages leave it
    stored = await db(Conversation.objects.get)(pk=conversation.pk)
    assert stored.title == "Plan the launch"
    await writer.close()
    await watcher.close()


async def test_a_titled_conversation_is_not_renamed(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user, title="Chosen title")
    socket = await open_browser(user, conversation.pk)
    events = await socket.turn("Something else entirely")
    assert "switchboard.conversation" not in types(events)
    await socket.close()

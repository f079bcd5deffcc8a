"""A signed-in user with an API token, and the simulator world the outage tests start from.

Called with Django set up: in a test with database access, or in a subprocess that sets up the
private cluster's database (tests/resilience/test_database_outage.py).
"""

from __future__ import annotations

from typing import Any


def signed_in(*, token_name: str, **user_fields: Any) -> dict[str, Any]:
    """alice, signed in (her session key) and with a fresh API token (the raw secret and the row)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from sessions_app.models import ApiToken

    user = get_user_model().objects.create_user(username="alice", password="alice-password-1", **user_fields)
    client = Client()
    client.force_login(user)
    token, raw = ApiToken.issue(user=user, name=token_name)
    return {"user": user, "session": client.cookies["sessionid"].value, "token": raw, "token_row": token}


def simulator_world(simulator_url: str) -> dict[str, str]:
    """The default profile on the simulator at `simulator_url`, alice signed in with a token, and one of
    her conversations: what a test sends on, as plain strings (JSON for a subprocess)."""
    from sessions_app.services import conversation_create, default_profile_sync

    profile = default_profile_sync()
    profile.websocket_url = simulator_url
    profile.save()
    made = signed_in(token_name="outage")
    conversation = conversation_create(owner=made["user"], profile=profile)
    return {"session": made["session"], "token": made["token"], "conversation": str(conversation.pk)}

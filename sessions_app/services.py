"""Writes outside the relay's hot path (the relay's writes live in recording.py)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Conversation, UpstreamProfile
from .selectors import default_profile

DEFAULT_PROFILE_NAME = "default"


def conversation_create(
    *, owner, title: str = "", profile: UpstreamProfile | None = None, model: str = "", store: bool = False,
    created_via: str = "browser",
) -> Conversation:
    profile = profile or default_profile()
    return Conversation.objects.create(
        owner=owner,
        title=title[:200],
        upstream_profile=profile,
        model=model or (profile.default_model if profile else settings.SWITCHBOARD_DEFAULT_MODEL),
        store=store,
        created_via=created_via,
    )


@transaction.atomic
def default_profile_sync() -> UpstreamProfile:
    """Create or update the default upstream profile from the environment.

    With ``OPENAI_API_KEY``: the real service (or ``OPENAI_WEBSOCKET_URL``), bearer auth.
    Without: the built-in simulator, no key.
    """
    key = settings.OPENAI_API_KEY
    profile, _ = UpstreamProfile.objects.get_or_create(
        name=DEFAULT_PROFILE_NAME,
        defaults={"websocket_url": settings.OPENAI_WEBSOCKET_URL, "default_model": settings.SWITCHBOARD_DEFAULT_MODEL},
    )
    profile.websocket_url = settings.OPENAI_WEBSOCKET_URL
    profile.auth_style = UpstreamProfile.AuthStyle.BEARER
    if key:
        # A new URL or auth style would clear the stored key on save (UpstreamProfile.save): the
        # environment names both, so its key goes with its URL and is set again.
        if profile.endpoint_changed() or not profile.has_api_key or profile.get_api_key() != key:
            profile.set_api_key(key)
    else:
        profile.set_api_key("")
    profile.is_default = True
    profile.enabled = True
    profile.save()
    UpstreamProfile.objects.exclude(pk=profile.pk).filter(is_default=True).update(is_default=False)
    return profile


def demo_user_ensure() -> bool:
    """Create the documented demo user, only in DEBUG and only on an empty user table."""
    User = get_user_model()
    if not settings.DEBUG or User.objects.exists():
        return False
    User.objects.create_user(
        username=settings.SWITCHBOARD_DEMO_USERNAME, password=settings.SWITCHBOARD_DEMO_PASSWORD, is_staff=True,
        is_superuser=True,
    )
    return True

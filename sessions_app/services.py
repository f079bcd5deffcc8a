"""Writes outside the relay's hot path (the relay's writes live in recording/)."""

from __future__ import annotations

import enum
import ipaddress

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Conversation, ResponseRecord, UpstreamProfile
from .models.statements import insert_rows
from .selectors import conversation_streaming, default_profile

DEFAULT_PROFILE_NAME = "default"


#: Conversation settings a new conversation may start with beyond title, profile, model and store (forms.py).
CREATE_SETTINGS = frozenset({"instructions", "tools", "reasoning_effort", "max_output_tokens", "recovery_enabled",
                             "compact_threshold"})
#: Everything `conversation_settings_update` may change.
SETTINGS_FIELDS = frozenset({"title", "upstream_profile", "model", "store", *CREATE_SETTINGS})


def conversation_create(**values: object) -> Conversation:
    """A new conversation, written (`conversation_new` says what it holds)."""
    conversation = conversation_new(**values)
    # One prepared INSERT (models/statements.py), not save(): every agent's new socket makes one, and
    # Django's save machinery cost 0.3 ms of CPU where the statement costs 0.1.
    insert_rows([conversation], returning=True)
    return conversation


def conversation_new(
    *, owner, title: str = "", profile: UpstreamProfile | None = None, model: str = "", store: bool = False,
    created_via: str = "browser", api_token_pk: int | None = None, profile_pk: int | None = None,
    **settings_: object,
) -> Conversation:
    """A new conversation, not yet written (the relay writes a gateway's with its first request:
    recording's `Recorder.queue_row`); `settings_` are more of its settings (CREATE_SETTINGS), already validated.

    Its profile: `profile`, else the one whose pk is `profile_pk` (not read: the caller gives `model`;
    no database access then), else the default."""
    unknown = settings_.keys() - CREATE_SETTINGS
    if unknown:
        raise TypeError(f"conversation_new() got unknown settings: {sorted(unknown)}")
    if profile is None and profile_pk is None:
        profile = default_profile()
    return Conversation(
        owner=owner,
        title=title[:200],
        **({"upstream_profile": profile} if profile is not None else {"upstream_profile_id": profile_pk}),
        model=model or (profile.default_model if profile else settings.SWITCHBOARD_DEFAULT_MODEL),
        store=store,
        created_via=created_via,
        api_token_id=api_token_pk,
        **settings_,
    )


@transaction.atomic
def conversation_settings_update(*, conversation: Conversation, **changes: object) -> Conversation:
    """Change a conversation's settings (SETTINGS_FIELDS, already validated) in one write: all or nothing.

    Live relays do not read the row again on their own: the page tells its socket (live/hub.py)."""
    unknown = changes.keys() - SETTINGS_FIELDS
    if unknown:
        raise TypeError(f"conversation_settings_update() got unknown settings: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=[*changes, "updated_at"])
    return conversation


# The dashboard's writes. Callers pass a conversation they got from selectors.conversation_get(for_write=True):
# its owner's, never a staff viewer's.

TITLE_MAX_CHARS = Conversation._meta.get_field("title").max_length


class ConversationStreaming(Exception):
    """A response of the conversation is in flight: its hub would go on writing records of a deleted row."""


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """Whitespace runs (newlines too) become one space. `update()`, so a rename is not activity: the
    conversation keeps its place in the newest-first list."""
    title = " ".join(title.split())
    if not title:
        raise ValidationError("A title needs at least one character.")
    if len(title) > TITLE_MAX_CHARS:
        raise ValidationError(f"A title has at most {TITLE_MAX_CHARS} characters.")
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    conversation.title = title
    return conversation


def conversation_archive(*, conversation: Conversation) -> Conversation:
    """Out of the active list; everything else stays (its page, its sockets). Archiving twice keeps the first time."""
    if conversation.archived_at is None:
        conversation.archived_at = timezone.now()
        Conversation.objects.filter(pk=conversation.pk, archived_at__isnull=True).update(
            archived_at=conversation.archived_at)
    return conversation


def conversation_unarchive(*, conversation: Conversation) -> Conversation:
    conversation.archived_at = None
    Conversation.objects.filter(pk=conversation.pk).update(archived_at=None)
    return conversation


@transaction.atomic
def conversation_delete(*, conversation: Conversation) -> int:
    """Delete the conversation and every record of it (responses, items, errors, compactions, upstream
    sockets); returns how many responses went. Refused (`ConversationStreaming`) while a response is in
    flight: pages never drive sockets, so the owner waits for the end (or stops it) and deletes then."""
    if conversation_streaming(conversation=conversation):
        raise ConversationStreaming(str(conversation))
    _, deleted = conversation.delete()
    return deleted.get(ResponseRecord._meta.label, 0)


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


class DemoUser(enum.Enum):
    """What `demo_user_ensure` found or did."""

    CREATED = "created"
    EXISTS = "exists"  # with the demo password
    NOT_DEBUG = "not created: DEBUG is off"
    NOT_EMPTY = "not created: there are users already"
    NOT_LOOPBACK = "not created: the server will listen beyond this machine"


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can reach a server bound there."""
    if not host:
        return False
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_user_ensure(*, bind: str | None) -> DemoUser:
    """Create the documented demo user (a superuser with a published password): only in DEBUG, on an empty
    user table, and when the server will listen on loopback (`bind`), where nobody else can use it."""
    User = get_user_model()
    demo = User.objects.filter(username=settings.SWITCHBOARD_DEMO_USERNAME).first()
    if demo is not None and demo.check_password(settings.SWITCHBOARD_DEMO_PASSWORD):
        return DemoUser.EXISTS
    if not settings.DEBUG:
        return DemoUser.NOT_DEBUG
    if User.objects.exists():
        return DemoUser.NOT_EMPTY
    if not is_loopback(bind):
        return DemoUser.NOT_LOOPBACK
    User.objects.create_user(
        username=settings.SWITCHBOARD_DEMO_USERNAME, password=settings.SWITCHBOARD_DEMO_PASSWORD, is_staff=True,
        is_superuser=True,
    )
    return DemoUser.CREATED

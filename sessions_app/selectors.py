"""Reads that more than one page (or the relay) needs. Pages never query models directly."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from .models import ApiToken, Conversation, ResponseRecord, UpstreamProfile


def conversation_list(*, user) -> QuerySet[Conversation]:
    """A user's own conversations, newest activity first (staff see only their own here too)."""
    return Conversation.objects.filter(owner=user).select_related("upstream_profile")


def conversation_get(*, user, pk, for_write: bool = False) -> Conversation:
    """The conversation if ``user`` may see it: its owner, or staff (read-only)."""
    try:
        conversation = Conversation.objects.select_related("owner", "upstream_profile").get(pk=pk)
    except (Conversation.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such conversation") from exc
    if conversation.owner_id == user.pk:
        return conversation
    if user.is_staff and not for_write:
        return conversation
    raise Http404("No such conversation")


def conversation_responses(*, conversation: Conversation) -> QuerySet[ResponseRecord]:
    return conversation.responses.prefetch_related("items").order_by("sent_at", "pk")


def profiles_usable_by(*, user) -> list[UpstreamProfile]:
    profiles = UpstreamProfile.objects.filter(enabled=True).prefetch_related("allowed_users")
    return [p for p in profiles if p.usable_by(user)]


def default_profile() -> UpstreamProfile | None:
    return (
        UpstreamProfile.objects.filter(enabled=True, is_default=True).first()
        or UpstreamProfile.objects.filter(enabled=True).first()
    )


def token_list(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)

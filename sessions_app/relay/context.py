"""What a relay session reads from the database before it streams (sync: called via
database_sync_to_async, or, for the gateway's conversation on a socket's first turn, on a recorder
thread with `recording.on_db_thread`).

Rules:

* A browser socket drives a conversation only if its user owns it; staff
  may attach read-only; anyone else is refused as if it did not exist.
* A gateway socket gets its conversation on its first `response.create`:
  the one named by metadata `switchboard_conversation` (owned by the token's
  user), else the one holding the response it continues (`previous_response_id`,
  if the user owns it), else a new one titled from the first input.
* Stored ids a client names (protocol/references.py) are looked up among the
  user's own records only (`owned_references`): the upstream resolves ids
  against a key all users share, so an id of another user's must look
  exactly like an unknown one.
* The relay works from frozen snapshots (`ConversationView`), never from
  model instances, so nothing on the stream path can touch the ORM by accident.
  The decrypted API key lives only inside `ProfileView.target` headers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.http import Http404

from .. import selectors, services
from ..models import Conversation, Item, ResponseRecord, UpstreamProfile, profile_for_new_conversation
from ..protocol.items import input_items, last_user_text
from ..protocol.outcome import Usage
from ..upstream import UpstreamTarget, auth_headers
from . import errors as relay_errors

__all__ = [
    "CONVERSATION_METADATA_KEY",
    "ProfileView",
    "ConversationView",
    "AttachRefused",
    "conversation_for_socket",
    "settings_for_socket",
    "conversation_for_gateway",
    "GatewayConversation",
    "new_gateway_conversation",
    "new_conversation_profile",
    "history_event",
    "Owned",
    "owned_references",
    "title_from",
]

#: `metadata` key a gateway client sets on a `response.create` to continue an existing conversation.
CONVERSATION_METADATA_KEY = "switchboard_conversation"
TITLE_LENGTH = 80


class AttachRefused(Exception):
    """The socket may not attach; `close_code` is what the browser is told (4401, 4404)."""

    def __init__(self, close_code: int) -> None:
        super().__init__(close_code)
        self.close_code = close_code


@dataclass(frozen=True)
class ProfileView:
    pk: int
    name: str
    target: UpstreamTarget
    default_model: str
    allowed_models: tuple[str, ...]

    def allows(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


@dataclass(frozen=True)
class ConversationView:
    id: uuid.UUID
    title: str
    model: str
    store: bool
    instructions: str
    tools: list[dict[str, Any]]
    status: str
    latest_response_id: str
    recovery_enabled: bool
    read_only: bool
    profile: ProfileView | None
    # Filled into a browser's creates when it leaves them out (faces.py); empty / None: not sent.
    reasoning_effort: str = ""
    max_output_tokens: int | None = None
    compact_threshold: int | None = None


def _profile_view(profile: UpstreamProfile | None, user) -> ProfileView | None:
    if profile is None or not profile.usable_by(user):
        return None
    return _usable_profile_view(profile)


def _usable_profile_view(profile: UpstreamProfile) -> ProfileView:
    headers = auth_headers(auth_style=profile.auth_style, api_key=profile.get_api_key(), extra=profile.extra_headers)
    return ProfileView(
        pk=profile.pk, name=profile.name, target=UpstreamTarget(url=profile.websocket_url, headers=headers),
        default_model=profile.default_model, allowed_models=tuple(profile.allowed_models or ()),
    )


def _view(conversation: Conversation, user, *, with_profile: bool = True) -> ConversationView:
    read_only = conversation.owner_id != user.pk
    return ConversationView(
        id=conversation.pk, title=conversation.title, model=conversation.model, store=conversation.store,
        instructions=conversation.instructions, tools=list(conversation.tools or []), status=conversation.status,
        latest_response_id=conversation.latest_response_id, recovery_enabled=conversation.recovery_enabled,
        read_only=read_only,
        profile=None if read_only or not with_profile else _profile_view(conversation.upstream_profile, user),
        reasoning_effort=conversation.reasoning_effort, max_output_tokens=conversation.max_output_tokens,
        compact_threshold=conversation.compact_threshold,
    )


def conversation_for_socket(*, user, conversation_id: uuid.UUID | str) -> ConversationView:
    """The browser socket's conversation; raises AttachRefused (4401 anonymous, 4404 not yours)."""
    if not getattr(user, "is_authenticated", False):
        raise AttachRefused(4401)
    try:
        conversation = selectors.conversation_get(user=user, pk=conversation_id)
    except Http404:
        raise AttachRefused(4404) from None
    return _view(conversation, user)


def settings_for_socket(*, user, conversation_id: uuid.UUID | str) -> tuple[ConversationView, dict[str, Any]]:
    """The conversation's view read again, and its `switchboard.settings` event (after the owner saved
    the settings: live/hub.py); raises AttachRefused like `conversation_for_socket`."""
    if not getattr(user, "is_authenticated", False):
        raise AttachRefused(4401)
    try:
        conversation = selectors.conversation_get(user=user, pk=conversation_id)
    except Http404:
        raise AttachRefused(4404) from None
    return _view(conversation, user), {"type": "switchboard.settings",
                                       "settings": selectors.conversation_settings(conversation=conversation)}


@dataclass(frozen=True)
class Owned:
    """Which of the ids a create names are the user's, and in which of the user's conversations."""

    responses: dict[str, uuid.UUID]
    items: dict[str, uuid.UUID]


def owned_references(*, user, response_ids: Iterable[str] = (), item_ids: Iterable[str] = ()) -> Owned:
    """Look the ids up among the user's own conversations (at most two queries; none for no ids)."""
    response_ids, item_ids = set(response_ids), {i for i in item_ids if i}
    responses = dict(ResponseRecord.objects.filter(response_id__in=response_ids, conversation__owner=user)
                     .values_list("response_id", "conversation_id")) if response_ids else {}
    items = {}
    if item_ids:
        rows = (Item.objects.filter(response__conversation__owner=user, raw__id__in=sorted(item_ids))
                .values_list("raw__id", "response__conversation_id"))
        items = {item_id: conversation_id for item_id, conversation_id in rows if item_id in item_ids}
    return Owned(responses, items)


@dataclass(frozen=True)
class GatewayConversation:
    """What a gateway socket's first create drives: the conversation (None: the create names ids the user
    does not own, and the relay refuses it), which of the ids the user owns, and for a new conversation
    its row, made but not written: the relay writes it with the turn's other rows (relay_ownership), not
    on a database trip of its own."""

    view: ConversationView | None
    owned: Owned
    new: Conversation | None = None


def conversation_for_gateway(*, user, requested: str | None, title: str, continues: str | None = None,
                             references: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
                             api_token_pk: int | None = None,
                             profile: ProfileView | None = None) -> GatewayConversation:
    """The conversation a gateway socket drives, and which of the `references` (response ids, item ids)
    the user owns; raises RelayError. Reads only.

    Named by metadata (`requested`), else the conversation of the response it `continues` when the
    user owns it (an agent's new socket carries on its chain), else a new one; but none (None) is made
    for a create that names ids the user does not own, which the relay then refuses. A new one
    remembers the API token whose socket made it (`api_token_pk`), and has `profile` when the socket
    already read it (`new_conversation_profile`, for its warm socket), else the one read now."""
    owned = owned_references(user=user, response_ids=references[0], item_ids=references[1])
    if not requested and continues and continues in owned.responses:
        requested = str(owned.responses[continues])
    if not requested and (set(references[0]) - owned.responses.keys() or set(references[1]) - owned.items.keys()):
        return GatewayConversation(None, owned)
    if requested:
        try:
            conversation = selectors.conversation_get(user=user, pk=requested, for_write=True)
        except Http404:
            raise relay_errors.conversation_not_found() from None
        return GatewayConversation(_view(conversation, user), owned)
    if profile is None:  # not read with the token (no warm socket): read it now
        profile = new_conversation_profile(user)
    return new_gateway_conversation(user=user, title=title, api_token_pk=api_token_pk, profile=profile, owned=owned)


def new_gateway_conversation(*, user, title: str, api_token_pk: int | None, profile: ProfileView | None,
                             owned: Owned | None = None) -> GatewayConversation:
    """A new conversation on `profile` (no database access: a socket whose first create names nothing to look
    up, and whose profile was read with its token, makes it on the event loop); raises RelayError."""
    if profile is None:
        raise relay_errors.no_upstream_profile()
    conversation = services.conversation_new(
        owner=user, title=title, profile_pk=profile.pk,
        model=profile.default_model or settings.SWITCHBOARD_DEFAULT_MODEL, created_via="gateway",
        api_token_pk=api_token_pk,
    )
    return GatewayConversation(replace(_view(conversation, user, with_profile=False), profile=profile),
                               owned or Owned({}, {}), new=conversation)


def new_conversation_profile(user) -> ProfileView | None:
    """The profile a new gateway conversation of `user` gets (relay/warm.py opens its socket ahead): the
    default profile if this user may use it, else the first usable (one statement)."""
    return new_conversation_profile_of(profile_for_new_conversation(user))


def new_conversation_profile_of(profile: UpstreamProfile | None) -> ProfileView | None:
    """`new_conversation_profile` of a profile read elsewhere (gateway_auth.py reads it with the token)."""
    return _usable_profile_view(profile) if profile is not None else None


def title_from(create: dict[str, Any]) -> str:
    """A conversation title from a create's input: the first line of its last user text."""
    text = (last_user_text(input_items(create)) or "").strip()
    first_line = text.splitlines()[0] if text else ""
    return first_line[:TITLE_LENGTH]


# -- history ----------------------------------------------------------------------------


def _usage(record: ResponseRecord) -> dict[str, Any] | None:
    if record.total_tokens is None:
        return None
    return Usage(
        input_tokens=record.input_tokens or 0, cached_tokens=record.cached_input_tokens or 0,
        output_tokens=record.output_tokens or 0, reasoning_tokens=record.reasoning_tokens or 0,
        total_tokens=record.total_tokens,
    ).to_json()


def _error(record: ResponseRecord) -> dict[str, Any] | None:
    payload_error = (record.response_payload or {}).get("error") if record.response_payload else None
    if isinstance(payload_error, dict) and payload_error:
        return payload_error
    errors = sorted(record.errorevent_set.all(), key=lambda e: e.created_at)
    if errors:
        last = errors[-1]
        return {"type": last.error_type, "code": last.code, "message": last.message, "source": last.source}
    return None


def history_event(*, user, conversation_id: uuid.UUID) -> dict[str, Any]:
    """The `switchboard.history` frame sent when a browser socket attaches (docs/protocol.md)."""
    conversation = selectors.conversation_get(user=user, pk=conversation_id)
    records = selectors.conversation_responses(conversation=conversation).prefetch_related("errorevent_set")
    responses = []
    for record in records:
        items = sorted(record.items.all(), key=lambda i: (i.direction, i.position))
        responses.append({
            "response_id": record.response_id, "previous_response_id": record.previous_response_id or None,
            "stream_id": record.stream_id or None, "status": record.status, "origin": record.origin,
            "record": record.pk, "parent": record.parent_id, "supersedes": record.supersedes_id,
            "model": record.model, "incomplete_reason": record.incomplete_reason or None,
            "accepted_at": _moment(record.accepted_at or record.sent_at),
            "sent_at": _moment(record.sent_at), "completed_at": _moment(record.completed_at),
            "ttft_ms": _milliseconds(record.sent_at, record.first_text_at),
            "input_items": [i.raw for i in items if i.direction == "input"],
            "output_items": [i.raw for i in items if i.direction == "output"],
            "usage": _usage(record), "error": _error(record),
        })
    compactions = [{
        "kind": c.kind, "record": c.response_id, "created_at": _moment(c.created_at),
        "input_tokens_before": c.input_tokens_before, "tokens_after": c.tokens_after,
        "items_replaced": c.items_replaced,
    } for c in conversation.compactions.order_by("created_at", "pk")]
    return {
        "type": "switchboard.history",
        "conversation": {
            "id": str(conversation.pk), "title": conversation.title, "model": conversation.model,
            "status": conversation.status, "read_only": conversation.owner_id != user.pk,
            # A tab that (re)attaches shows what the next turn will use, not what it loaded with.
            "settings": selectors.conversation_settings(conversation=conversation),
        },
        "responses": responses,
        "compactions": compactions,
    }


def _moment(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _milliseconds(start, end) -> int | None:
    return round((end - start).total_seconds() * 1000) if start is not None and end is not None else None

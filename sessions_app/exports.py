"""A conversation as one JSON document: its settings, chain, responses with their items, errors, compactions
and upstream sockets. The admin's Export action and GET /api/conversations/<uuid>/ both serve it.

Rules: records refer to each other by their primary keys (`parent`, `supersedes`, `connection`, `response`),
so the chain can be rebuilt from the document alone. No secret goes in: no profile key (the profile is named,
its key never read), no token hash (a gateway conversation names its token by its public prefix), and, should
one have slipped into a record, every stored key of the profiles involved is cut out of the text at the end.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .crypto import SecretUnreadable
from .models import Conversation, UpstreamProfile
from .selectors import conversation_chain

EXPORT_VERSION = 1
REDACTED = "[redacted]"


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def conversation_export(*, conversation: Conversation) -> dict[str, Any]:
    """The document (see module rules); `conversation_export_json` is what to send."""
    responses = list(conversation.responses.order_by("sent_at", "pk").prefetch_related("items"))
    token = conversation.api_token
    return {
        "object": "switchboard.conversation_export",
        "version": EXPORT_VERSION,
        "conversation": {
            "id": str(conversation.pk), "title": conversation.title, "owner": conversation.owner.get_username(),
            "upstream_profile": conversation.upstream_profile.name if conversation.upstream_profile else None,
            "model": conversation.model, "store": conversation.store, "instructions": conversation.instructions,
            "tools": conversation.tools, "recovery_enabled": conversation.recovery_enabled,
            "reasoning_effort": conversation.reasoning_effort, "max_output_tokens": conversation.max_output_tokens,
            "compact_threshold": conversation.compact_threshold, "created_via": conversation.created_via,
            "api_token_prefix": token.prefix if token is not None else None, "status": conversation.status,
            "latest_response_id": conversation.latest_response_id, "archived_at": _time(conversation.archived_at),
            "created_at": _time(conversation.created_at), "updated_at": _time(conversation.updated_at),
        },
        # The turns in drawing order (a resent attempt folded into its turn), each naming its response.
        "chain": [{"response": row.record.pk, "depth": row.depth, "attempts": row.attempts,
                   "forks_here": row.forks_here, "starts_branch": row.starts_branch}
                  for row in conversation_chain(conversation=conversation)],
        "responses": [_response(record) for record in responses],
        "errors": [{
            "id": e.pk, "response": e.response_id, "connection": e.connection_id, "source": e.source,
            "status": e.status, "type": e.error_type, "code": e.code, "message": e.message, "param": e.param,
            "stream_id": e.stream_id, "count": e.count, "created_at": _time(e.created_at),
            "last_seen_at": _time(e.last_seen_at), "raw": e.raw,
        } for e in conversation.errors.order_by("created_at", "pk")],
        "compactions": [{
            "id": c.pk, "response": c.response_id, "kind": c.kind, "input_tokens_before": c.input_tokens_before,
            "tokens_after": c.tokens_after, "items_replaced": c.items_replaced, "output": c.compacted_output,
            "created_at": _time(c.created_at),
        } for c in conversation.compactions.order_by("created_at", "pk")],
        "connections": [{
            "id": s.pk, "url": s.url, "opened_at": _time(s.opened_at), "closed_at": _time(s.closed_at),
            "close_code": s.close_code, "close_reason": s.close_reason, "close_text": s.close_text,
            "responses_carried": s.responses_carried,
        } for s in conversation.connections.order_by("opened_at", "pk")],
    }


def _response(record) -> dict[str, Any]:
    return {
        "id": record.pk, "response_id": record.response_id, "parent": record.parent_id,
        "supersedes": record.supersedes_id, "connection": record.connection_id,
        "previous_response_id": record.previous_response_id, "stream_id": record.stream_id,
        "status": record.status, "origin": record.origin, "model": record.model,
        "produced_compaction": record.produced_compaction, "incomplete_reason": record.incomplete_reason,
        "usage": {"input_tokens": record.input_tokens, "cached_input_tokens": record.cached_input_tokens,
                  "output_tokens": record.output_tokens, "reasoning_tokens": record.reasoning_tokens,
                  "total_tokens": record.total_tokens},
        "accepted_at": _time(record.accepted_at), "sent_at": _time(record.sent_at), "first_event_at": _time(record.first_event_at),
        "first_text_at": _time(record.first_text_at), "completed_at": _time(record.completed_at),
        "events_received": record.events_received,
        "request": record.request_payload, "response": record.response_payload,
        "items": [{"direction": i.direction, "position": i.position, "type": i.item_type, "role": i.role,
                   "call_id": i.call_id, "text": i.text, "raw": i.raw}
                  for i in sorted(record.items.all(), key=lambda i: (i.direction, i.position))],
    }


def _stored_keys(conversation: Conversation) -> set[str]:
    profiles = {conversation.upstream_profile_id,
                *conversation.connections.exclude(upstream_profile=None).values_list("upstream_profile", flat=True)}
    keys = set()
    for profile in UpstreamProfile.objects.filter(pk__in=[p for p in profiles if p is not None]):
        try:
            key = profile.get_api_key()
        except SecretUnreadable:  # a key no configured secret opens cannot leak either
            continue
        if len(key) >= 8:  # a short "key" would cut ordinary words out of the text
            keys.add(key)
    return keys


def conversation_export_json(*, conversation: Conversation) -> str:
    """The document as indented JSON text, any stored key of the profiles involved cut out."""
    text = json.dumps(conversation_export(conversation=conversation), indent=2, ensure_ascii=False)
    for key in _stored_keys(conversation):
        text = text.replace(json.dumps(key)[1:-1], REDACTED)
    return text

"""Standalone compaction: `POST <upstream>/v1/responses/compact` for a conversation, and what follows.

Rules (PROTOCOL.md §5.2):

* The window sent is the conversation's context after its latest response,
  rebuilt from our records (recovery.context_after), so it works with
  `store=false`.
* The result is a `CompactionEvent` (kind `standalone`) whose `response` is
  that latest response (the *base*) and whose `compacted_output` is the
  upstream's `output`.
* A standalone compaction is *pending* until the conversation's next request
  is recorded. While pending, a `response.create` that continues the base
  (or names no `previous_response_id`) starts a new chain: no
  `previous_response_id`, `input` = compacted window + the create's new
  items. The recorder applies this in the same transaction that records the
  request (recording/input.py), so what is recorded is what is sent.
* The HTTP call (upstream/compact.py) is synchronous (it runs in a Django view, off the relay);
  its failures are recorded as `ErrorEvent`s and raised as `CompactionFailed`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import connections, router

from .models import CompactionEvent, Conversation, ErrorEvent, ResponseRecord
from .protocol.items import input_items
from .protocol.outcome import Usage
from .recovery import context_after
from .upstream import UpstreamTarget, auth_headers, post_compact

__all__ = ["CompactionFailed", "start_from_window", "pending_compaction", "conversation_compact"]

logger = logging.getLogger("sessions_app.compaction")

CONTINUABLE = (ResponseRecord.Status.COMPLETED, ResponseRecord.Status.INCOMPLETE)


class CompactionFailed(Exception):
    """The compact call could not be made or was refused; `status` is the HTTP status to answer."""

    def __init__(self, code: str, message: str, *, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# -- pure -------------------------------------------------------------------------------


def start_from_window(payload: dict[str, Any], window: list[dict[str, Any]]) -> dict[str, Any]:
    """A create rewritten to start a new chain from a compacted window plus its own new items."""
    rewritten = {k: v for k, v in payload.items() if k != "previous_response_id"}
    rewritten["input"] = [*window, *input_items(payload)]
    return rewritten


# -- database ---------------------------------------------------------------------------


def pending_compaction(*, conversation_id: uuid.UUID) -> CompactionEvent | None:
    """The newest standalone compaction, if no request was recorded after it.

    On every create's critical path (recording.write_request), so the usual answer, "none", costs one
    lean query (the newest one's time, from the conversation's index) and no ORM query building.
    """
    connection = connections[router.db_for_read(CompactionEvent)]
    sql = _NEWEST_STANDALONE.get(connection.vendor)
    if sql is None:
        quote, meta = connection.ops.quote_name, CompactionEvent._meta
        sql = _NEWEST_STANDALONE[connection.vendor] = (
            f"SELECT {quote(meta.pk.column)} FROM {quote(meta.db_table)} "
            f"WHERE {quote(meta.get_field('conversation').column)} = %s AND {quote(meta.get_field('kind').column)} = %s "
            f"ORDER BY {quote(meta.get_field('created_at').column)} DESC LIMIT 1"
        )
    conversation_pk = CompactionEvent._meta.get_field("conversation").get_db_prep_value(conversation_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [conversation_pk, CompactionEvent.Kind.STANDALONE.value])
        found = cursor.fetchone()
    if found is None:
        return None
    latest = CompactionEvent.objects.select_related("response").get(pk=found[0])
    if ResponseRecord.objects.filter(conversation_id=conversation_id, sent_at__gt=latest.created_at).exists():
        return None
    return latest


_NEWEST_STANDALONE: dict[str, str] = {}


def _base_record(conversation: Conversation) -> ResponseRecord | None:
    records = ResponseRecord.objects.filter(conversation=conversation, status__in=CONTINUABLE)
    if conversation.latest_response_id:
        found = records.filter(response_id=conversation.latest_response_id).first()
        if found is not None:
            return found
    return records.order_by("-sent_at", "-pk").first()


def _fail(conversation: Conversation, *, source: str, code: str, message: str, status: int,
          raw: dict[str, Any]) -> CompactionFailed:
    ErrorEvent.objects.create(conversation=conversation, source=source, code=code[:100], message=message,
                              status=status, error_type="server_error", raw=raw)
    return CompactionFailed(code, message, status=status)


def conversation_compact(*, conversation: Conversation) -> CompactionEvent:
    """Compact the conversation's current context upstream and record the result (see module rules)."""
    profile = conversation.upstream_profile
    if profile is None or not profile.enabled:
        raise CompactionFailed("no_upstream_profile", "This conversation has no usable upstream profile.", status=503)
    base = _base_record(conversation)
    if base is None:
        raise CompactionFailed("nothing_to_compact", "This conversation has no finished response to compact.",
                               status=400)
    window = context_after(base)
    body: dict[str, Any] = {"model": conversation.model or profile.default_model, "input": window}
    if conversation.instructions:
        body["instructions"] = conversation.instructions
    headers = auth_headers(auth_style=profile.auth_style, api_key=profile.get_api_key(), extra=profile.extra_headers)
    try:
        status, data = post_compact(UpstreamTarget(url=profile.websocket_url, headers=headers), body)
    except (OSError, ValueError) as exc:
        logger.warning("Compaction of conversation %s could not reach the upstream: %s", conversation.pk,
                       type(exc).__name__)
        raise _fail(conversation, source=ErrorEvent.Source.RELAY, code="upstream_unavailable", status=503,
                    message=f"The upstream could not be reached ({type(exc).__name__}).", raw={}) from None
    if status != 200 or not isinstance(data.get("output"), list):
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        raise _fail(conversation, source=ErrorEvent.Source.UPSTREAM, code=str(error.get("code") or "upstream_error"),
                    message=str(error.get("message") or f"The upstream answered HTTP {status}."), status=502,
                    raw={"status": status, "body": data})
    usage = Usage.parse(data.get("usage"))
    return CompactionEvent.objects.create(
        conversation=conversation, response=base, kind=CompactionEvent.Kind.STANDALONE,
        input_tokens_before=usage.input_tokens if usage else None,
        tokens_after=usage.output_tokens if usage else None,
        items_replaced=len(window), compacted_output=data["output"],
    )

"""Rebuild a conversation's context from Switchboard's own records.

When the upstream lost its connection-local cache (socket dropped, the
60-minute limit, a process restart) a continuation with ``store=false`` fails
with ``previous_response_not_found``. The relay then sends the context it
rebuilt here as a fresh ``response.create`` without ``previous_response_id``.

Rules of the rebuild (PROTOCOL.md §4 "Reconnect and recovery", §5):

* The context after a response R is the context after its ``parent``, plus
  R's input items, plus R's output items. A response with no parent is a
  chain root (a first turn, or a client that sent its whole history itself).
* A record's input items are only what the client added: when the relay
  rewrote a request onto a rebuilt context (a replay, a compacted window),
  ``request_payload`` keeps what was sent and ``parent`` where it came from.
* A compaction item in R's output replaces everything before it: the context
  becomes that item plus R's outputs after it.
* A standalone compaction recorded for R replaces the context after R with
  its compacted window.
* Replayed items carry no server ids (with ``store=false`` the upstream never
  persisted them and rejects unknown ids) and reasoning items without
  ``encrypted_content`` are dropped (they cannot be replayed statelessly).
"""

from __future__ import annotations

from typing import Any

from .models import CompactionEvent, Item, ResponseRecord

# Fields the upstream sets on output items that it does not accept back on a
# stateless replay (ids of items it never stored, run-time status).
_SERVER_ONLY_FIELDS = ("id", "status")


def replay_item(raw: dict[str, Any]) -> dict[str, Any] | None:
    """An item as it may be sent back as input, or None when it cannot be replayed."""
    kind = raw.get("type") or ("message" if "role" in raw else "")
    if kind == "reasoning" and not raw.get("encrypted_content"):
        return None
    if kind == "compaction":
        return {k: v for k, v in raw.items() if k in ("type", "encrypted_content", "id")}
    return {k: v for k, v in raw.items() if k not in _SERVER_ONLY_FIELDS}


def _chain(record: ResponseRecord) -> list[int]:
    """Primary keys of R and the records it continues, oldest first, from its chain's root.

    One query for the conversation's parent links, walked in memory: a replay after a long agent
    loop must not cost a query per turn.
    """
    parents = dict(
        ResponseRecord.objects.filter(conversation_id=record.conversation_id).values_list("pk", "parent_id")
    )
    path = [record.pk]
    seen = {record.pk}
    parent = record.parent_id
    while parent and parent not in seen and parent in parents:
        seen.add(parent)
        path.append(parent)
        parent = parents[parent]
    path.reverse()
    return path


def _items(chain: list[int]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """The raw input and output items of every record of the chain, in order (one query)."""
    items: dict[tuple[int, str], list[dict[str, Any]]] = {}
    rows = Item.objects.filter(response_id__in=chain).order_by("position")
    for response_pk, direction, raw in rows.values_list("response_id", "direction", "raw"):
        items.setdefault((response_pk, direction), []).append(raw)
    return items


def context_after(record: ResponseRecord) -> list[dict[str, Any]]:
    """Every item the model had seen once ``record`` finished, ready to send as ``input``."""
    chain = _chain(record)
    items = _items(chain)
    windows: dict[int, list[dict[str, Any]]] = {}
    standalone = CompactionEvent.objects.filter(
        conversation_id=record.conversation_id, kind=CompactionEvent.Kind.STANDALONE, response__in=chain,
    ).order_by("created_at")
    for compaction in standalone:
        if compaction.compacted_output:
            windows[compaction.response_id] = list(compaction.compacted_output)  # the latest one wins
    context: list[dict[str, Any]] = []
    for node in chain:
        context.extend(items.get((node, Item.Direction.INPUT), []))
        outputs = items.get((node, Item.Direction.OUTPUT), [])
        compaction_at = max((i for i, item in enumerate(outputs) if item.get("type") == "compaction"), default=None)
        if compaction_at is None:
            context.extend(outputs)
        else:
            context = outputs[compaction_at:]
        if node in windows:
            context = windows[node]
    return [item for item in (replay_item(raw) for raw in context) if item is not None]

"""The admin's chain tree: `selectors.conversation_chain` turned into nested branches a template can draw
without recursion.

The chain's rows come depth-first; a fork's continuations each start a branch (`ChainRow.starts_branch`).
`conversation_tree` turns that into a flat list of entries, OPEN (a branch starts: `<li><ol>`), NODE (one
turn) and CLOSE (`</ol></li>`), so a template loop nests branches however deep, and a linear agent loop of
thousands of turns stays one flat list. A resent attempt is no branch: it is folded into the turn that
superseded it (`ChainRow.attempts`), as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import CompactionEvent, Conversation, ErrorEvent, Item, ResponseRecord
from .selectors import ChainRow, conversation_chain

OPEN, NODE, CLOSE = "open", "node", "close"


@dataclass(frozen=True)
class TreeEntry:
    kind: str  # OPEN, NODE or CLOSE
    row: ChainRow | None = None
    functions: tuple[str, ...] = ()  # names of the functions this turn called
    errors: tuple[str, ...] = ()  # codes of the errors recorded against it (its superseded attempts' too)
    compactions: tuple[str, ...] = field(default=())  # kinds of the compactions based on it
    parent_response_id: str = ""


def conversation_tree(*, conversation: Conversation) -> list[TreeEntry]:
    """The chain as OPEN / NODE / CLOSE entries (see module rules); three queries besides the chain's."""
    rows = conversation_chain(conversation=conversation)
    functions: dict[int, list[str]] = {}
    calls = Item.objects.filter(response__conversation=conversation, direction=Item.Direction.OUTPUT,
                                item_type=Item.ItemType.FUNCTION_CALL).order_by("position")
    for response_pk, raw in calls.values_list("response_id", "raw"):
        name = raw.get("name") if isinstance(raw, dict) else None
        functions.setdefault(response_pk, []).append(str(name or "(unnamed function)"))
    folded = _folded_attempts(rows)
    errors: dict[int, list[str]] = {}
    for response_pk, code, error_type in (ErrorEvent.objects.filter(conversation=conversation)
                                          .exclude(response=None).order_by("created_at", "pk")
                                          .values_list("response_id", "code", "error_type")):
        errors.setdefault(folded.get(response_pk, response_pk), []).append(code or error_type or "error")
    compactions: dict[int, list[str]] = {}
    for response_pk, kind in (CompactionEvent.objects.filter(conversation=conversation).exclude(response=None)
                              .values_list("response_id", "kind")):
        compactions.setdefault(response_pk, []).append(kind)
    by_pk = {row.record.pk: row.record for row in rows}

    entries: list[TreeEntry] = []
    open_depths: list[int] = []
    for row in rows:
        if row.starts_branch:
            while open_depths and open_depths[-1] >= row.depth:
                open_depths.pop()
                entries.append(TreeEntry(CLOSE))
            open_depths.append(row.depth)
            entries.append(TreeEntry(OPEN))
        pk = row.record.pk
        parent = by_pk.get(row.record.parent_id)
        entries.append(TreeEntry(
            NODE, row, functions=tuple(functions.get(pk, ())), errors=tuple(errors.get(pk, ())),
            compactions=tuple(compactions.get(pk, ())),
            parent_response_id=(parent.response_id or f"#{parent.pk}") if parent is not None else "",
        ))
    entries.extend(TreeEntry(CLOSE) for _ in open_depths)
    return entries


def _folded_attempts(rows: list[ChainRow]) -> dict[int, int]:
    """pk of each superseded attempt -> pk of the turn it folded into (its errors show on that turn)."""
    turns = {row.record.pk for row in rows}
    links = dict(ResponseRecord.objects.filter(conversation_id=rows[0].record.conversation_id,
                                               supersedes__isnull=False).values_list("supersedes_id", "pk")
                 ) if rows else {}
    folded: dict[int, int] = {}
    for attempt in links:
        at = attempt
        for _ in range(len(links) + 1):  # follow the chain of resends to the standing turn
            if at in turns:
                break
            at = links.get(at, at)
        if at in turns:
            folded[attempt] = at
    return folded

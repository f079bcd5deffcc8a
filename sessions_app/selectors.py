"""Reads that more than one page (or the relay) needs. Pages never query models directly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.utils import timezone

from .models import ApiToken, Conversation, Item, ResponseRecord, UpstreamProfile
from .process import heartbeats_enabled, lease


def conversation_get(*, user, pk, for_write: bool = False) -> Conversation:
    """The conversation if ``user`` may see it: its owner, or staff (read-only)."""
    try:
        conversation = Conversation.objects.select_related("owner", "upstream_profile").get(pk=pk)
    except (Conversation.DoesNotExist, ValidationError, ValueError, TypeError) as exc:  # not a uuid: not found
        raise Http404("No such conversation") from exc
    if conversation.owner_id == user.pk:
        return conversation
    if user.is_staff and not for_write:
        return conversation
    raise Http404("No such conversation")


def conversation_responses(*, conversation: Conversation) -> QuerySet[ResponseRecord]:
    return conversation.responses.prefetch_related("items", "errorevent_set").order_by("sent_at", "pk")


def profiles_usable_by(*, user) -> list[UpstreamProfile]:
    profiles = UpstreamProfile.objects.filter(enabled=True).prefetch_related("allowed_users")
    return [p for p in profiles if p.usable_by(user)]


def conversation_settings(*, conversation: Conversation) -> dict[str, Any]:
    """What the settings form sets, as JSON (the drawer's answer, and `switchboard.settings` on the socket)."""
    profile = conversation.upstream_profile
    return {
        "title": conversation.title, "upstream_profile": profile.pk if profile else None,
        "upstream_profile_name": profile.name if profile else "", "model": conversation.model,
        "reasoning_effort": conversation.reasoning_effort, "max_output_tokens": conversation.max_output_tokens,
        "instructions": conversation.instructions, "tools": conversation.tools or [], "store": conversation.store,
        "recovery_enabled": conversation.recovery_enabled, "compact_threshold": conversation.compact_threshold,
    }


def default_profile() -> UpstreamProfile | None:
    return (
        UpstreamProfile.objects.filter(enabled=True, is_default=True).first()
        or UpstreamProfile.objects.filter(enabled=True).first()
    )


def token_list(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


@dataclass(frozen=True)
class ChainRow:
    """One response of a conversation's chain, flattened for drawing as a tree.

    ``depth`` grows only where the chain branches (a fork), so a long linear
    agent loop stays flat however many turns it has.
    """

    record: ResponseRecord
    depth: int
    input_text: str
    output_text: str
    forks_here: bool  # more than one response continues this one
    starts_branch: bool  # this response is one branch of a fork
    attempts: int = 1  # with the failed attempts it superseded (the relay resent them): one turn


def _standing(records: list[ResponseRecord]) -> tuple[list[ResponseRecord], dict[int, int]]:
    """The records that are turns (a superseded attempt is folded into the one that resent it), and
    how many attempts each turn took."""
    superseded = {r.supersedes_id for r in records if r.supersedes_id is not None}
    attempts: dict[int, int] = {}
    by_pk = {r.pk: r for r in records}
    for record in records:
        if record.pk in superseded:
            continue
        count, at = 1, record
        while at.supersedes_id in by_pk and count <= len(records):
            count, at = count + 1, by_pk[at.supersedes_id]
        attempts[record.pk] = count
    return [r for r in records if r.pk not in superseded], attempts


def conversation_chain(*, conversation: Conversation) -> list[ChainRow]:
    """The chain as a depth-first list: each response under its `parent`, forks indented (two queries).

    A failed attempt the relay resent is not a branch: it folds into the turn that superseded it."""
    records, attempts = _standing(list(conversation.responses.order_by("sent_at", "pk")))
    texts: dict[tuple[int, str], list[str]] = {}
    items = Item.objects.filter(response__conversation=conversation).order_by("position")
    for response_pk, direction, text in items.values_list("response_id", "direction", "text"):
        texts.setdefault((response_pk, direction), []).append(text)
    known = {r.pk for r in records}
    children: dict[int | None, list[ResponseRecord]] = {}
    for record in records:
        children.setdefault(record.parent_id if record.parent_id in known else None, []).append(record)

    rows: list[ChainRow] = []
    roots = children.get(None, [])
    # Iterative depth-first walk (no recursion: agent chains run to thousands of turns).
    stack = [(root, 0, len(roots) > 1) for root in reversed(roots)]
    while stack:
        record, depth, starts_branch = stack.pop()
        following = children.get(record.pk, [])
        forks = len(following) > 1
        rows.append(ChainRow(
            record=record, depth=depth, forks_here=forks, starts_branch=starts_branch,
            input_text=" ".join(texts.get((record.pk, Item.Direction.INPUT), []))[:300],
            output_text=" ".join(texts.get((record.pk, Item.Direction.OUTPUT), []))[:300],
            attempts=attempts[record.pk],
        ))
        for child in reversed(following):
            stack.append((child, depth + 1 if forks else depth, forks))
    return rows


@dataclass(frozen=True)
class UsageRow:
    day: object  # datetime.date
    model: str
    responses: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int


def usage_by_day(*, days: int = 30, owner=None) -> list[UsageRow]:
    """Token usage per day and model over the last ``days`` days (optionally of one user), newest first."""
    since = timezone.now() - timedelta(days=days)
    records = ResponseRecord.objects.filter(sent_at__gte=since)
    if owner is not None:
        records = records.filter(conversation__owner=owner)
    rows = (
        records.annotate(day=TruncDate("sent_at"))
        .values("day", "model")
        .annotate(
            responses=Count("pk"),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            cached_input_tokens=Coalesce(Sum("cached_input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
            reasoning_tokens=Coalesce(Sum("reasoning_tokens"), 0),
            total_tokens=Coalesce(Sum("total_tokens"), 0),
        )
        .order_by("-day", "model")
    )
    return [UsageRow(**row) for row in rows]


# -- the dashboard ------------------------------------------------------------------------------------------

SEARCH_MAX_CHARS = 200
# A turn is a response a person started: a message, an edit (fork), a steer, or a message the relay sent with a
# replayed context. Tool-output continuations of an agent loop and warm-ups are responses, not turns; nor is a
# failed attempt the relay resent (`supersedes`): it folds into the turn that resent it, as in the chain.
USER_TURN_ORIGINS = (ResponseRecord.Origin.USER, ResponseRecord.Origin.FORK, ResponseRecord.Origin.STEER,
                     ResponseRecord.Origin.RECOVERY_REPLAY)
IN_FLIGHT = (ResponseRecord.Status.QUEUED, ResponseRecord.Status.IN_PROGRESS)
# However short the heartbeat, a record sent this recently still counts as streaming (its socket may not
# have beaten yet); a dead process's leftovers stop blocking a delete after this long.
STREAMING_WINDOW_FLOOR = timedelta(seconds=30)


def _user_turns() -> Q:
    return Q(origin__in=USER_TURN_ORIGINS) & ~Q(Exists(ResponseRecord.objects.filter(supersedes=OuterRef("pk"))))


def _per_conversation(aggregate, where: Q | None = None) -> Coalesce:
    """``aggregate`` over each conversation's responses, as a correlated subquery: the database evaluates it
    only for the rows of the page (after LIMIT), where a JOIN + GROUP BY would aggregate all of a user's
    conversations before paging, and the Paginator's COUNT leaves it out."""
    rows = (ResponseRecord.objects.filter(where or Q(), conversation=OuterRef("pk")).order_by()
            .values("conversation").annotate(value=aggregate).values("value"))
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def with_response_totals(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Each conversation with ``response_total`` (its responses) and ``token_total`` (their total_tokens
    summed), as correlated subqueries: the admin's list computes them for its page only."""
    return conversations.annotate(response_total=_per_conversation(Count("pk")),
                                  token_total=_per_conversation(Sum("total_tokens")))


def conversation_rows(*, user, query: str = "", archived: bool = False) -> QuerySet[Conversation]:
    """The dashboard's list: the user's own conversations (staff too see only theirs), active or archived,
    newest activity first, with ``turns`` (USER_TURN_ORIGINS) and ``tokens`` (total_tokens summed).

    ``query`` keeps those whose title or any item's text (input or output) contains it, case-insensitively
    (on SQLite, for ASCII letters only: its LIKE folds no other case). One query for the rows however many
    there are; each conversation appears once (EXISTS, not a join to its items)."""
    conversations = Conversation.objects.filter(owner=user, archived_at__isnull=not archived)
    query = query.strip()[:SEARCH_MAX_CHARS]
    if query:
        in_items = Item.objects.filter(response__conversation=OuterRef("pk"), text__icontains=query)
        conversations = conversations.filter(Q(title__icontains=query) | Exists(in_items))
    return (
        conversations.select_related("api_token").defer("instructions", "tools")  # long, and not listed
        .annotate(turns=_per_conversation(Count("pk"), _user_turns()),
                  tokens=_per_conversation(Sum("total_tokens")))
        .order_by("-updated_at", "-pk")  # pk breaks ties: no row on two pages, or on none
    )


@dataclass(frozen=True)
class ConversationSize:
    """What deleting a conversation takes with it."""

    turns: int
    responses: int
    items: int
    tokens: int


def conversation_size(*, conversation: Conversation) -> ConversationSize:
    totals = conversation.responses.aggregate(
        turns=Count("pk", filter=_user_turns()), responses=Count("pk"),
        tokens=Coalesce(Sum("total_tokens"), 0))
    items = Item.objects.filter(response__conversation=conversation).count()
    return ConversationSize(items=items, **totals)


def conversation_streaming(*, conversation: Conversation) -> bool:
    """Whether a response of the conversation is in flight on a live socket right now.

    In flight: queued or in progress. Live: its upstream socket is open and its holding process still beats
    (any open socket when heartbeats are off), or it has no socket yet and was sent moments ago. A record a
    dead process left in flight is not streaming: the next hub to drive the conversation ends it
    `interrupted` (live/liveness.py), and nothing will write to it meanwhile."""
    window = max(lease(), STREAMING_WINDOW_FLOOR)
    since = timezone.now() - window
    live_socket = Q(connection__isnull=False, connection__closed_at__isnull=True)
    if heartbeats_enabled():
        live_socket &= Q(connection__heartbeat_at__gte=since) | Q(connection__heartbeat_at__isnull=True,
                                                                  connection__opened_at__gte=since)
    no_socket_yet = Q(connection__isnull=True, sent_at__gte=since)
    return conversation.responses.filter(status__in=IN_FLIGHT).filter(live_socket | no_socket_yet).exists()

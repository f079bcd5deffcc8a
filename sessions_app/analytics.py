"""Aggregates for the staff pages (overview, errors, usage) and the dashboard's usage block: reads only.

Every figure is aggregated in the database (GROUP BY over a time window), so a page costs a fixed number
of queries whatever the number of records; the indexes of migration 0009 make the window filters cheap.
Buckets are UTC hours (a day's window) or UTC days (a week's and longer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, CharField, Count, Exists, F, FloatField, Func, OuterRef, Q, Sum
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.utils import timezone

from .models import (
    ClientSocket,
    CompactionEvent,
    Conversation,
    ErrorEvent,
    ModelPrice,
    ResponseRecord,
    UpstreamConnection,
)
from .process import heartbeats_enabled, lease

WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
FAILED = (ResponseRecord.Status.FAILED, ResponseRecord.Status.INTERRUPTED)
QUANTILES = (0.5, 0.95)
MILLION = Decimal(1_000_000)


def window_start(window: str, *, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - WINDOWS.get(window, WINDOWS["day"])


def bucket_of(window: str):
    return "hour" if window == "day" else "day"


SQLITE_BUCKET = {"hour": "%%Y-%%m-%%d %%H:00:00", "day": "%%Y-%%m-%%d 00:00:00"}  # %%: a literal % in SQL


def _trunc(name: str, unit: str):
    """The bucket a time falls in, computed by the database. On SQLite, Django's Trunc calls a Python
    function per row (3 s over 100,000 rows); strftime on the stored UTC text is native and gives the same
    bucket, as text (bucket_floor reads both)."""
    if connection.vendor == "sqlite":
        # The template is %-formatted once more than plain SQL, so its %% doubles again.
        return Func(F(name), template=f"strftime('{SQLITE_BUCKET[unit].replace('%', '%%')}', %(expressions)s)",
                    output_field=CharField())
    return (TruncHour if unit == "hour" else TruncDay)(name, tzinfo=UTC)


def bucket_floor(at: datetime | str, unit: str) -> datetime:
    if isinstance(at, str):
        at = datetime.strptime(at, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if unit == "day" else at


def bucket_range(since: datetime, until: datetime, unit: str) -> list[datetime]:
    """Every bucket of the window, the empty ones included (a chart's x axis)."""
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    at, out = bucket_floor(since, unit), []
    while at <= until:
        out.append(at)
        at += step
    return out


# -- live sockets --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveSockets:
    browser: int
    gateway: int
    upstream: int


def live_sockets() -> LiveSockets:
    """Sockets open now. A process that died stops beating: its rows stop counting after one lease."""
    since = timezone.now() - lease()
    clients = ClientSocket.objects.all()
    upstream = UpstreamConnection.objects.filter(closed_at__isnull=True)
    if heartbeats_enabled():
        clients = clients.filter(heartbeat_at__gte=since)
        upstream = upstream.filter(Q(heartbeat_at__gte=since) | Q(heartbeat_at__isnull=True, opened_at__gte=since))
    faces = dict(clients.values_list("face").annotate(n=Count("pk")).values_list("face", "n"))
    return LiveSockets(browser=faces.get("browser", 0), gateway=faces.get("gateway", 0), upstream=upstream.count())


# -- responses, errors, time to first text -------------------------------------------------------------------

@dataclass(frozen=True)
class HourRow:
    """Responses sent in one bucket. `failed`: ended failed or interrupted; `recovered`: of those, the
    attempts the relay resent (ResponseRecord.supersedes), so the turn went on: a user saw no failure."""

    bucket: datetime
    responses: int
    failed: int
    recovered: int = 0

    @property
    def turns(self) -> int:
        return self.responses - self.recovered

    @property
    def broken(self) -> int:
        """Turns that ended failed or interrupted: failed attempts nobody resent."""
        return max(self.failed - self.recovered, 0)

    @property
    def error_rate(self) -> float:
        """Of the turns, the share that ended broken (a recovered attempt folds into its turn, as on the
        conversation page and the chain tree)."""
        return self.broken / self.turns if self.turns > 0 else 0.0


def responses_over_time(*, since: datetime, unit: str) -> list[HourRow]:
    """Responses sent per bucket, how many ended failed or interrupted, and how many of those the relay
    resent (two queries: the resends are few, so the second joins only their rows)."""
    rows = (ResponseRecord.objects.filter(sent_at__gte=since).annotate(bucket=_trunc("sent_at", unit))
            .values("bucket").annotate(n=Count("pk"), failed=Count("pk", filter=Q(status__in=FAILED))))
    found = {bucket_floor(r["bucket"], unit): r for r in rows}
    resent = (ResponseRecord.objects.filter(supersedes__sent_at__gte=since, supersedes__status__in=FAILED)
              .annotate(bucket=_trunc("supersedes__sent_at", unit)).values("bucket").annotate(n=Count("pk")))
    recovered: dict[datetime, int] = {}
    for r in resent:
        at = bucket_floor(r["bucket"], unit)
        recovered[at] = recovered.get(at, 0) + r["n"]
    return [HourRow(bucket=b, responses=found[b]["n"] if b in found else 0,
                    failed=found[b]["failed"] if b in found else 0, recovered=recovered.get(b, 0))
            for b in bucket_range(since, timezone.now(), unit)]


@dataclass(frozen=True)
class TtftRow:
    bucket: datetime
    p50: float | None
    p95: float | None


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: the continuous percentile (linear interpolation) of a group."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


def _ttft_ms() -> Func:
    """PostgreSQL: milliseconds from sending a request to its first text delta."""
    return Func(F("first_text_at"), F("sent_at"), template="(EXTRACT(EPOCH FROM (%(expressions)s)) * 1000)",
                arg_joiner=" - ", output_field=FloatField())


def ttft_over_time(*, since: datetime, unit: str) -> list[TtftRow]:
    """p50 and p95 of time to first text per bucket, computed in the database.

    PostgreSQL: `percentile_cont` (an ordered-set aggregate) per bucket, one query. SQLite has no
    percentile aggregate, so one query numbers each bucket's values in order (ROW_NUMBER and COUNT over
    the bucket, window functions SQLite has had since 3.25) and returns only the two rows around each
    quantile's rank; Python interpolates between them exactly as percentile_cont does. So both databases
    give the same figures, no values travel but the 2-4 per bucket, and nothing is sampled.
    """
    records = ResponseRecord.objects.filter(sent_at__gte=since, first_text_at__isnull=False)
    if connection.vendor == "postgresql":
        rows = (records.annotate(bucket=_trunc("sent_at", unit)).values("bucket")
                .annotate(p50=PercentileCont(_ttft_ms(), 0.5), p95=PercentileCont(_ttft_ms(), 0.95)))
        found = {bucket_floor(r["bucket"], unit): (r["p50"], r["p95"]) for r in rows}
    else:
        found = _sqlite_percentiles(since=since, unit=unit)
    return [TtftRow(bucket=b, p50=found.get(b, (None, None))[0], p95=found.get(b, (None, None))[1])
            for b in bucket_range(since, timezone.now(), unit)]


def _sqlite_percentiles(*, since: datetime, unit: str) -> dict[datetime, tuple[float | None, float | None]]:
    fmt = SQLITE_BUCKET[unit]
    ranks = " OR ".join(f"rn - 1 IN (CAST({q} * (n - 1) AS INTEGER), CAST({q} * (n - 1) AS INTEGER) + 1)"
                        for q in QUANTILES)
    table = ResponseRecord._meta.db_table
    # Innermost: each row's bucket and TTFT, computed once; then the window functions over those columns.
    sql = (f"SELECT bucket, ttft, rn, n FROM (SELECT bucket, ttft, "
           f"ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY ttft) AS rn, COUNT(*) OVER (PARTITION BY bucket) AS n "
           f"FROM (SELECT strftime('{fmt}', sent_at) AS bucket, "
           f"(julianday(first_text_at) - julianday(sent_at)) * 86400000.0 AS ttft FROM {table} "
           f"WHERE sent_at >= %s AND first_text_at IS NOT NULL)) WHERE {ranks}")
    values: dict[str, dict[int, float]] = {}
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(since)])
        for bucket, ttft, rn, n in cursor.fetchall():
            values.setdefault(bucket, {})[rn - 1] = ttft
            counts[bucket] = n
    out = {}
    for bucket, by_rank in values.items():
        at = datetime.strptime(bucket, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        out[at] = tuple(_interpolate(by_rank, counts[bucket], q) for q in QUANTILES)
    return out


def _interpolate(by_rank: dict[int, float], n: int, q: float) -> float:
    """percentile_cont's definition: the value at rank q*(n-1), interpolated between its neighbours."""
    position = q * (n - 1)
    low = math.floor(position)
    if low + 1 >= n or low + 1 not in by_rank:
        return by_rank[low]
    return by_rank[low] + (by_rank[low + 1] - by_rank[low]) * (position - low)


# -- tokens, cost ---------------------------------------------------------------------------------------------

def cost(*, input_tokens: int, cached_input_tokens: int, output_tokens: int, price: ModelPrice | None
         ) -> Decimal | None:
    """(input - cached) × input price + cached × cached price + output × output price, prices per million.

    Input tokens include the cached ones (the Responses API's `usage`), hence the subtraction. None
    when the model has no price: a page says "no price" rather than a wrong 0."""
    if price is None:
        return None
    cached = min(cached_input_tokens, input_tokens)
    return ((input_tokens - cached) * price.input_per_million + cached * price.cached_input_per_million
            + output_tokens * price.output_per_million) / MILLION


@dataclass
class UsageRow:
    """Tokens of one user, token or model over a window, and their estimated cost."""

    label: str
    responses: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal | None = Decimal(0)  # of the priced models only
    priced: bool = False  # some of it had a price
    unpriced: set[str] = field(default_factory=set)  # models seen without a price

    @property
    def unpriced_models(self) -> list[str]:
        return sorted(self.unpriced)

    def add(self, row: dict, price: ModelPrice | None, model: str) -> None:
        self.responses += row["responses"]
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "total_tokens"):
            setattr(self, name, getattr(self, name) + row[name])
        part = cost(input_tokens=row["input_tokens"], cached_input_tokens=row["cached_input_tokens"],
                    output_tokens=row["output_tokens"], price=price)
        if part is None:
            if row["input_tokens"] or row["output_tokens"]:
                self.unpriced.add(model or "(no model)")
        elif self.cost is not None:
            self.cost += part
            self.priced = True


SUMS = {name: Coalesce(Sum(name), 0) for name in ("input_tokens", "cached_input_tokens", "output_tokens",
                                                  "total_tokens")}
def prices() -> dict[str, ModelPrice]:
    return {p.model: p for p in ModelPrice.objects.all()}


def _conversation_labels(conversation_ids: set, by: str) -> dict:
    """Conversation pk -> its user's name or its API token.

    The big GROUP BY runs on the responses table alone (by conversation and model, no join: on SQLite a
    join per row doubles the time); the conversations it found are looked up here, a chunk at a time."""
    if by == "model":
        return {}
    fields = ("owner__username",) if by == "user" else ("api_token__prefix", "api_token__name")
    ids, out = sorted(conversation_ids), {}
    for at in range(0, len(ids), 500):
        for pk, *values in Conversation.objects.filter(pk__in=ids[at:at + 500]).values_list("pk", *fields):
            if by == "user":
                out[pk] = values[0]
            else:
                prefix, name = values
                out[pk] = f"{name or 'API token'} ({prefix}…)" if prefix else "Browser"
    return out


def usage(*, since: datetime, by: str, owner=None) -> list[UsageRow]:
    """Usage grouped `by` user, token or model, each group's cost summed per model (cost is per model)."""
    records = ResponseRecord.objects.filter(sent_at__gte=since)
    if owner is not None:
        records = records.filter(conversation__owner=owner)
    rows = list(records.values("conversation_id", "model").annotate(responses=Count("pk"), **SUMS).order_by())
    labels = _conversation_labels({row["conversation_id"] for row in rows}, by)
    table, groups = prices(), {}
    for row in rows:
        label = labels.get(row["conversation_id"], "?") if by != "model" else (row["model"] or "(no model)")
        group = groups.setdefault(label, UsageRow(label=label))
        group.add(row, table.get(row["model"]), row["model"])
    return sorted(groups.values(), key=lambda g: (-g.total_tokens, g.label))


def total(rows: Iterable[UsageRow], label: str = "Total") -> UsageRow:
    out = UsageRow(label=label)
    for row in rows:
        out.responses += row.responses
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "total_tokens"):
            setattr(out, name, getattr(out, name) + getattr(row, name))
        out.unpriced |= row.unpriced
        out.priced = out.priced or row.priced
        out.cost = None if out.cost is None or row.cost is None else out.cost + row.cost
    return out


@dataclass(frozen=True)
class TokensByWindow:
    label: str
    day: int
    week: int


def tokens_by_user_and_model(*, now: datetime | None = None) -> tuple[list[TokensByWindow], list[TokensByWindow]]:
    """Total tokens per user and per model over the last day and the last week (one GROUP BY)."""
    now = now or timezone.now()
    records = ResponseRecord.objects.filter(sent_at__gte=window_start("week", now=now))
    rows = list(records.values("conversation_id", "model")
                .annotate(day=Coalesce(Sum("total_tokens", filter=Q(sent_at__gte=window_start("day", now=now))), 0),
                          week=Coalesce(Sum("total_tokens"), 0)).order_by())
    users = _conversation_labels({row["conversation_id"] for row in rows}, "user")
    by_user: dict[str, list[int]] = {}
    by_model: dict[str, list[int]] = {}
    for row in rows:
        for folded, label in ((by_user, users.get(row["conversation_id"], "?")), (by_model, row["model"] or
                                                                                  "(no model)")):
            sums = folded.setdefault(label, [0, 0])
            sums[0] += row["day"]
            sums[1] += row["week"]
    return tuple(sorted((TokensByWindow(label=k, day=d, week=w) for k, (d, w) in folded.items()),
                        key=lambda t: (-t.week, t.label)) for folded in (by_user, by_model))


# -- errors, compactions, socket endings ----------------------------------------------------------------------

def top_error_codes(*, since: datetime, limit: int = 10) -> list[dict]:
    """Codes by how often they happened (a client error row counts `count` occurrences)."""
    return list(ErrorEvent.objects.filter(created_at__gte=since).values("code")
                .annotate(events=Coalesce(Sum("count"), 0), rows=Count("pk")).order_by("-events", "code")[:limit])


def errors_over_time(*, since: datetime, unit: str, codes: list[str]) -> dict[str, list[int]]:
    """Occurrences per bucket of each of `codes` (one query), aligned with bucket_range."""
    buckets = bucket_range(since, timezone.now(), unit)
    index = {b: i for i, b in enumerate(buckets)}
    out = {code: [0] * len(buckets) for code in codes}
    rows = (ErrorEvent.objects.filter(created_at__gte=since, code__in=codes)
            .annotate(bucket=_trunc("created_at", unit)).values("code", "bucket").annotate(n=Sum("count")))
    for row in rows:
        at = index.get(bucket_floor(row["bucket"], unit))
        if at is not None:
            out[row["code"]][at] += row["n"]
    return out


def recent_errors(*, code: str | None = None, limit: int = 50) -> list[ErrorEvent]:
    """The latest errors (of one code), with what the page links to: their conversation and response, and
    `recovered`: the relay resent that response (the turn went on; the error did not end it)."""
    # supersedes__isnull: PostgreSQL hashes the subquery, and only the few resends need reading for it.
    resent = ResponseRecord.objects.filter(supersedes__isnull=False, supersedes=OuterRef("response_id"))
    rows = ErrorEvent.objects.select_related("conversation", "response").annotate(recovered=Exists(resent))
    if code is not None:
        rows = rows.filter(code=code)
    return list(rows.order_by("-created_at", "-pk")[:limit])


def compaction_savings(*, since: datetime) -> dict:
    """How many compactions ran and the tokens they took out of the context (before - after), summed over
    the `measured` ones: those whose size after is known."""
    known = Q(input_tokens_before__isnull=False, size_after__isnull=False)
    return CompactionEvent.objects.filter(created_at__gte=since).with_size_after().aggregate(
        compactions=Count("pk"), measured=Count("pk", filter=known),
        before=Coalesce(Sum("input_tokens_before", filter=known), 0),
        after=Coalesce(Sum("size_after", filter=known), 0),
    )


def socket_endings(*, since: datetime) -> list[tuple[str, str, int]]:
    """(reason, its label, upstream sockets that closed for it) over the window, most frequent first."""
    labels = dict(UpstreamConnection.CloseReason.choices)
    rows = (UpstreamConnection.objects.filter(closed_at__gte=since).values("close_reason")
            .annotate(n=Count("pk")).order_by("-n", "close_reason"))
    return [(r["close_reason"], str(labels.get(r["close_reason"], r["close_reason"] or "unknown")), r["n"])
            for r in rows]

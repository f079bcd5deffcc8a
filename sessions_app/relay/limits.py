"""Per-user limits: concurrent sockets, upstream sockets, responses per hour, tokens per day.

All users share the upstream's key, so one user (or one runaway agent) must
not be able to take all of it. Rules:

* The defaults are the `SWITCHBOARD_LIMIT_*` settings; a `UserLimits` row
  (admin) overrides any of them for one user. 0 means no limit.
* Client sockets are counted in the `ClientSocket` table, which every Daphne
  process sees (live/sockets.py admits them before they are accepted).
* Upstream sockets are counted from the user's open `UpstreamConnection` rows
  (their holders beat them, live/liveness.py) when a new one would open, by the
  guarded INSERT of its row (`upstream_sockets_guard`): never per event. Each row
  names its owner, so the count reads that table alone, through a partial index of
  the rows not closed (models/records.py).
* Responses per hour and tokens per day are checked per `response.create`
  without a query: each process keeps a snapshot of each user's usage from
  the records, taken at a session's first create (sessions that start
  together share one query), refreshed in the background when older than
  `USAGE_REFRESH_SECONDS`, plus what its own sessions started (responses)
  and finished (tokens) since. Several processes may overshoot a limit by
  what they start within one refresh interval.
* Over a limit, a socket gets an `error` event with Switchboard's own code
  (`too_many_sockets`, `too_many_upstream_sockets`, `responses_per_hour_exceeded`,
  `tokens_per_day_exceeded`; status 429, type `rate_limit_error`) whose
  message names the limit; the HTTP API answers 429 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from .. import process
from ..models import ResponseRecord, UpstreamConnection, UserLimits
from ..models.statements import Statement
from ..recording import read_on_db_thread
from .errors import RelayError

__all__ = ["Limits", "LimitExceeded", "Usage", "limits_for", "limits_of", "upstream_sockets_guard",
           "upstream_sockets_refused", "check_rate",
           "check_usage", "Quota", "usage_snapshot"]

logger = logging.getLogger("sessions_app.security")

USAGE_REFRESH_SECONDS = 5.0
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FIELDS = ("max_sockets", "max_upstream_sockets", "responses_per_hour", "tokens_per_day")


@dataclass(frozen=True)
class Limits:
    max_sockets: int
    max_upstream_sockets: int
    responses_per_hour: int
    tokens_per_day: int


def default_limits() -> Limits:
    return Limits(settings.SWITCHBOARD_LIMIT_SOCKETS, settings.SWITCHBOARD_LIMIT_UPSTREAM_SOCKETS,
                  settings.SWITCHBOARD_LIMIT_RESPONSES_PER_HOUR, settings.SWITCHBOARD_LIMIT_TOKENS_PER_DAY)


def limits_for(user_pk: int) -> Limits:
    """The user's limits: the settings, with the user's `UserLimits` overrides."""
    return _with_overrides(UserLimits.objects.filter(user_id=user_pk).values(*FIELDS).first())


def limits_of(user) -> Limits:
    """`limits_for` a user loaded with its `switchboard_limits` (ApiToken.authenticate_token does): no query."""
    try:
        overrides = user.switchboard_limits
    except UserLimits.DoesNotExist:
        return default_limits()
    return _with_overrides({name: getattr(overrides, name) for name in FIELDS})


def _with_overrides(row: dict[str, int | None] | None) -> Limits:
    limits = default_limits()
    if row is None:
        return limits
    return Limits(**{name: row[name] if row[name] is not None else getattr(limits, name) for name in FIELDS})


class LimitExceeded(RelayError):
    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(code, message, status=429, type="rate_limit_error", source="client")
        self.retry_after = retry_after


def _retry(seconds: float | None) -> tuple[int | None, str]:
    if seconds is None:
        return None, ""
    whole = max(1, int(seconds + 0.999))
    if whole < 120:
        after = f"{whole} s"
    elif whole < 7200:
        after = f"{(whole + 59) // 60} min"
    else:
        after = f"{whole // 3600} h {(whole % 3600 + 59) // 60} min"
    return whole, f" Try again in {after}."


# -- upstream sockets -----------------------------------------------------------------------


def upstream_sockets_guard(*, user_pk: int, limit: int) -> Statement:
    """The condition under which a new upstream socket's row may be written: the user holds fewer than
    `limit` (a guarded INSERT, recording's `insert_row`; no query of its own on the way of a first turn).

    Held: rows of the user's conversations not closed whose holder beat them within the lease (or, never
    beaten, opened within it), and, while this process's beats are late (`process.upstream_beats_late`),
    every row of this process (`holder`, written with the row) whatever its beat: then a socket it holds
    open may carry an old beat. While its beats are on time they stamp every socket it holds open, so a
    row of this process with an old beat is one whose end was never written (the recorder lost it: it
    says so), and stops counting like any other. The guard names this process, not a list of its open
    rows: with the list, every count compared each row with each open socket, and every admission bound
    the list (N² for N sockets; bench/README.md, 2026-12-03)."""
    connection = connections[DEFAULT_DB_ALIAS]
    heartbeats = process.heartbeats_enabled()
    sql = _HELD_SQL.get((connection.vendor, heartbeats))
    if sql is None:
        sql = _HELD_SQL[connection.vendor, heartbeats] = _held_sql(connection, heartbeats)
    params: list[Any] = [user_pk]
    if heartbeats:
        cutoff = connection.ops.adapt_datetimefield_value(timezone.now() - process.lease())
        params += [process.PROCESS_ID if process.upstream_beats_late() else None, cutoff, cutoff]
    return f"({sql}) < %s", [*params, limit]


_HELD_SQL: dict[tuple[str, bool], str] = {}


def _held_sql(connection, heartbeats: bool) -> str:
    quote = connection.ops.quote_name
    rows = UpstreamConnection._meta

    def column(name: str) -> str:
        return quote(rows.get_field(name).column)

    # One table, no join: planned in a seventh of the join's time, and no plan of it can compare each open
    # row with each of the user's conversations, or read them all (bench/README.md, 2026-12-03, evening).
    sql = (f"SELECT COUNT(*) FROM {quote(rows.db_table)} u "
           f"WHERE u.{column('owner')} = %s AND u.{column('closed_at')} IS NULL")
    if heartbeats:
        holder, beat, opened = column("holder"), column("heartbeat_at"), column("opened_at")
        sql += f" AND (u.{holder} = %s OR u.{beat} >= %s OR (u.{beat} IS NULL AND u.{opened} >= %s))"
    return sql


def upstream_sockets_refused(*, user_pk: int, limit: int) -> LimitExceeded:
    """What a client is told when the guard refused its upstream socket (sync: counts them for the message)."""
    cutoff = timezone.now() - process.lease()
    open_rows = UpstreamConnection.objects.filter(owner_id=user_pk, closed_at__isnull=True)
    if process.heartbeats_enabled():
        beaten = Q(heartbeat_at__gte=cutoff) | Q(heartbeat_at__isnull=True, opened_at__gte=cutoff)
        if process.upstream_beats_late():
            beaten |= Q(holder=process.PROCESS_ID)
        open_rows = open_rows.filter(beaten)
    held = open_rows.count()
    logger.warning("Upstream socket refused: user %s holds %d (limit %d)", user_pk, held, limit)
    return LimitExceeded("too_many_upstream_sockets",
                         f"Your conversations hold {held} upstream sockets; the limit is {limit} concurrent "
                         "upstream sockets per user. Close a conversation's socket and try again.")


# -- responses per hour, tokens per day -------------------------------------------------------


@dataclass
class Usage:
    """A user's usage as the records had it at `taken`, plus what this process added since."""

    responses: int = 0  # started in the last hour
    tokens: int = 0  # total tokens of responses in the last 24 hours
    oldest_response: float | None = None  # unix time the oldest counted response ages out of the hour
    oldest_tokens: float | None = None
    taken: float = field(default_factory=time.monotonic)
    refreshing: bool = False


def usage_snapshot(*, user_pk: int) -> Usage:
    """The user's usage from the records (sync; two aggregate queries)."""
    now = timezone.now()
    records = ResponseRecord.objects.filter(conversation__owner_id=user_pk)
    hour = records.filter(sent_at__gte=now - HOUR).aggregate(n=Count("pk"), first=Min("sent_at"))
    day = records.filter(sent_at__gte=now - DAY, total_tokens__isnull=False).aggregate(
        n=Sum("total_tokens"), first=Min("sent_at"))
    return Usage(
        responses=hour["n"] or 0, tokens=day["n"] or 0,
        oldest_response=(hour["first"] + HOUR).timestamp() if hour["first"] else None,
        oldest_tokens=(day["first"] + DAY).timestamp() if day["first"] else None,
    )


class _Usages:
    """This process's view of each user's usage, per event loop (a process serves on one; tests run a
    loop each, so nothing leaks between them). Sockets that arrive together share one query."""

    def __init__(self) -> None:
        self.latest: dict[int, Usage] = {}
        self.loading: dict[int, asyncio.Future[Usage]] = {}

    def recent(self, user_pk: int) -> Usage | None:
        """The user's usage if read within `USAGE_REFRESH_SECONDS`, else None."""
        latest = self.latest.get(user_pk)
        if latest is not None and time.monotonic() - latest.taken <= USAGE_REFRESH_SECONDS:
            return latest
        return None

    async def fresh(self, user_pk: int) -> Usage:
        """The user's usage from the records, taken now or by a query already on its way."""
        loading = self.loading.get(user_pk)
        if loading is None:
            loading = self.loading[user_pk] = asyncio.ensure_future(read_on_db_thread(usage_snapshot, user_pk=user_pk))
            loading.add_done_callback(lambda _: self.loading.pop(user_pk, None))
        usage = await asyncio.shield(loading)
        latest = self.latest.get(user_pk)
        if latest is None or latest.taken <= usage.taken:
            self.latest[user_pk] = usage
        return self.latest[user_pk]


_USAGES: process.PerLoop = weakref.WeakKeyDictionary()


def _usages() -> _Usages:
    return process.per_loop(_USAGES, _Usages)


class Quota:
    """One relay session's view of its user's rate limits (no query on the way of a create but its first)."""

    def __init__(self, *, user_pk: int, limits: Limits | None = None) -> None:
        self.user_pk = user_pk
        self.limits = limits
        self._usage: Usage | None = None

    async def check(self, lane: str | None) -> None:
        """Raise LimitExceeded when a new response would exceed the hourly or daily limit."""
        if self.limits is None:  # a browser session's first create
            self.limits = await read_on_db_thread(limits_for, user_pk=self.user_pk)
        limits = self.limits
        if not (limits.responses_per_hour or limits.tokens_per_day):
            return
        usages = _usages()
        if self._usage is None:  # this session's first create: the records as they are now, or as this
            # process read them within the refresh interval, plus what it started since (the bound the
            # refresh already allows; 150 agents reconnecting at once would otherwise read 150 times)
            self._usage = usages.recent(self.user_pk) or await usages.fresh(self.user_pk)
        usage = self._usage = usages.latest.get(self.user_pk, self._usage)
        if time.monotonic() - usage.taken > USAGE_REFRESH_SECONDS and not usage.refreshing:
            usage.refreshing = True
            asyncio.get_running_loop().create_task(self._refresh(usages, usage))
        check_usage(limits, usage, lane)

    def started(self) -> None:
        usage = self._current()
        if usage is not None:
            usage.responses += 1
            usage.oldest_response = usage.oldest_response or time.time() + HOUR.total_seconds()

    def used(self, tokens: int) -> None:
        usage = self._current()
        if usage is not None and tokens:
            usage.tokens += tokens
            usage.oldest_tokens = usage.oldest_tokens or time.time() + DAY.total_seconds()

    def _current(self) -> Usage | None:
        return _usages().latest.get(self.user_pk) if self._usage is not None else None

    async def _refresh(self, usages: _Usages, stale: Usage) -> None:
        try:
            await usages.fresh(self.user_pk)
        except Exception as exc:
            logger.warning("Could not refresh the usage of user %s: %r", self.user_pk, exc)
            stale.refreshing = False


def check_usage(limits: Limits, usage: Usage, lane: str | None = None) -> None:
    """Raise LimitExceeded when one more response would exceed the hourly or daily limit."""
    if limits.responses_per_hour and usage.responses >= limits.responses_per_hour:
        retry, hint = _retry(usage.oldest_response and usage.oldest_response - time.time())
        raise _limited("responses_per_hour_exceeded", f"You reached the limit of {limits.responses_per_hour} "
                       f"responses per hour.{hint}", retry, lane)
    if limits.tokens_per_day and usage.tokens >= limits.tokens_per_day:
        retry, hint = _retry(usage.oldest_tokens and usage.oldest_tokens - time.time())
        raise _limited("tokens_per_day_exceeded", f"You reached the limit of {limits.tokens_per_day} tokens "
                       f"per day (24 hours).{hint}", retry, lane)


def check_rate(*, user_pk: int) -> None:
    """The hourly and daily limits for an HTTP call that costs upstream tokens (sync, from the records)."""
    limits = limits_for(user_pk)
    if limits.responses_per_hour or limits.tokens_per_day:
        check_usage(limits, usage_snapshot(user_pk=user_pk))


def _limited(code: str, message: str, retry_after: int | None, lane: str | None) -> LimitExceeded:
    exc = LimitExceeded(code, message, retry_after=retry_after)
    exc.stream_id = lane
    return exc

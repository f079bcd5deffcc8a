"""Who may do what: personal API tokens, per-user limits, and the client sockets those limits count."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from .rows import Fetch, ModelColumns, read_for, read_one
from .upstream import NewConversationRead, UpstreamProfile

TOKEN_PREFIX = "sb_"
LAST_USED_PRECISION = timedelta(minutes=1)  # ApiToken.last_used_at


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A personal token for programmatic clients: only its hash is kept; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    reads_metrics = models.BooleanField(
        "may read /metrics", default=False,
        help_text="Staff grant this to a monitoring system's token; it also opens the gateway as its user.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, *, user, name: str = "") -> tuple[ApiToken, str]:
        """Create a token; the returned raw value is the only copy there will ever be."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=raw[:10], token_hash=hash_token(raw))
        return token, raw

    @classmethod
    def authenticate(cls, raw: str):
        """The active token's user for a raw token, or None (see `authenticate_token`)."""
        token = cls.authenticate_token(raw)
        return token.user if token is not None else None

    @classmethod
    def authenticate_token(cls, raw: str) -> ApiToken | None:
        """The active token (its user and limits loaded) for a raw token, or None; records the use, to the minute.

        One statement written once per database (`_active_token`): every socket an agent opens reads it.
        The tokens page shows the minute, and a fleet of agents opening sockets with one token
        would otherwise queue a write per socket (on SQLite, one at a time)."""
        if not raw.startswith(TOKEN_PREFIX):
            return None
        token = _usable(_active_token(hash_token(raw)))
        if token is not None and (now := _use_to_record(token)) is not None:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class UserLimits(models.Model):
    """Per-user overrides of the SWITCHBOARD_LIMIT_* settings (limits.py). Empty: the default; 0: no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="switchboard_limits")
    max_sockets = models.PositiveIntegerField(
        "concurrent client sockets", null=True, blank=True, help_text="Browser and gateway sockets open at once.")
    max_upstream_sockets = models.PositiveIntegerField(
        "concurrent upstream sockets", null=True, blank=True, help_text="Upstream sockets held at once.")
    responses_per_hour = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Total tokens in the last 24 hours.")

    class Meta:
        verbose_name = verbose_name_plural = "user limits"

    def __str__(self) -> str:
        return f"Limits of {self.user}"


class ClientSocket(models.Model):
    """A client socket open now, on some process: what the concurrent-socket limit counts.

    The row is made when the socket is admitted and removed when it closes; the process beats its
    rows like its upstream sockets (liveness.py), so the rows of a process that died stop counting.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    face = models.CharField(max_length=10)
    token = models.ForeignKey(ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    holder = models.CharField(max_length=120)
    opened_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "heartbeat_at"]), models.Index(fields=["holder"])]


class _TokenRead:
    """`ApiToken.objects.select_related("user", "user__switchboard_limits").filter(token_hash=…, revoked_at=None)`
    as one statement written once per database (models/rows.py), with the same instances and caches.

    `with_profile` adds, in the same statement, the profile a new conversation of the token's user gets
    (upstream.py's `NewConversationRead`, joined LATERAL on that user): a gateway handshake read from the event
    loop makes one round trip, not two (PostgreSQL only: SQLite reads the two on a thread, one after the other)."""

    def __init__(self, connection, *, with_profile: bool = False) -> None:
        user_model = ApiToken.user.field.related_model
        self.token = ModelColumns(ApiToken, "t", connection)
        self.user = ModelColumns(user_model, "u", connection)
        self.limits = ModelColumns(UserLimits, "l", connection)
        quote = connection.ops.quote_name
        user_pk = f"u.{quote(user_model._meta.pk.column)}"
        self.profile = ModelColumns(UpstreamProfile, "w", connection) if with_profile else None
        profile_columns = profile_join = ""
        if self.profile is not None:
            new_conversation = NewConversationRead(
                connection, staff=f"u.{quote(user_model._meta.get_field('is_staff').column)}", user=user_pk)
            profile_columns = f", {self.profile.sql}"
            profile_join = f" LEFT OUTER JOIN LATERAL ({new_conversation.sql}) w ON TRUE"
        self.sql = (
            f"SELECT {self.token.sql}, {self.user.sql}, {self.limits.sql}{profile_columns}"
            f" FROM {quote(ApiToken._meta.db_table)} t"
            f" INNER JOIN {quote(user_model._meta.db_table)} u"
            f" ON {user_pk} = t.{quote(ApiToken.user.field.column)}"
            f" LEFT OUTER JOIN {quote(UserLimits._meta.db_table)} l"
            f" ON l.{quote(UserLimits.user.field.column)} = {user_pk}{profile_join}"
            f" WHERE t.{quote('token_hash')} = %s AND t.{quote('revoked_at')} IS NULL"
        )
        pk = quote(ApiToken._meta.pk.column)
        self.record_use = (f"UPDATE {quote(ApiToken._meta.db_table)} SET {quote('last_used_at')} = %s"
                           f" WHERE {pk} = %s RETURNING {pk}")

    def token_of(self, row) -> ApiToken:
        token = self.token.instance(row)
        user = self.user.instance(row, self.token.width)
        ApiToken.user.field.set_cached_value(token, user)  # what select_related leaves: no query to read them
        UserLimits.user.field.remote_field.set_cached_value(user, self.limits.instance(
            row, self.token.width + self.user.width))
        return token

    def profile_of(self, row) -> UpstreamProfile | None:
        return self.profile.instance(row, self.token.width + self.user.width + self.limits.width)


def _handshake_read(connection) -> _TokenRead:
    return _TokenRead(connection, with_profile=True)


async def read_handshake(raw: str, fetch: Fetch, *, with_profile: bool) -> tuple[ApiToken | None, UpstreamProfile | None]:
    """`ApiToken.authenticate_token` and, `with_profile`, `profile_for_new_conversation` of the token's user, as one
    statement awaited through `fetch` (rows.py: from the event loop on PostgreSQL): the same rules, the same use
    recorded to the minute. (None, None) for a token refused; the caller counts and logs it (token_guard.py).
    `with_profile` needs PostgreSQL (a LATERAL join), whose handshake is the one read from the loop."""
    if not raw.startswith(TOKEN_PREFIX):
        return None, None
    read = read_for(ApiToken, _handshake_read if with_profile else _TokenRead)
    row = await fetch(read.sql, [hash_token(raw)])
    token = _usable(read.token_of(row) if row is not None else None)
    if token is None:
        return None, None
    if (now := _use_to_record(token)) is not None:
        await fetch(read.record_use, [now, token.pk])
    return token, read.profile_of(row) if with_profile else None


def _usable(token: ApiToken | None) -> ApiToken | None:
    """The token if its user may still sign in (an unrevoked token of an inactive user is refused)."""
    return token if token is not None and token.user.is_active else None


def _use_to_record(token: ApiToken) -> datetime | None:
    """Now, if the token's last use is unknown or a minute old or more (else None: nothing to write)."""
    now = timezone.now()
    return now if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION else None


def _active_token(token_hash: str) -> ApiToken | None:
    """The unrevoked token with this hash, its user and the user's limits (None when it has none) loaded."""
    read, row = read_one(ApiToken, _TokenRead, [token_hash])
    return read.token_of(row) if row is not None else None

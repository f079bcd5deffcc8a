"""What Switchboard keeps: upstreams, conversations, and every response of them.

A conversation's whole continuation chain can be rebuilt from these rows
alone: each ResponseRecord keeps the ``previous_response_id`` it was sent
with, a ``parent`` link to the record it continues, and its input and output
Items in order. Writes go through ``services.py``; reads shared by several
pages through ``selectors.py``.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from .crypto import decrypt_secret, encrypt_secret

#: Where a key goes and how it is presented: changing any of these clears a stored key (UpstreamProfile.save).
KEY_BOUND_FIELDS = ("websocket_url", "auth_style", "extra_headers")


class UpstreamProfileQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """`update()` bypasses `save()`: touching a key-bound field clears the key unless the same call sets it."""
        if any(name in kwargs for name in KEY_BOUND_FIELDS) and "api_key_encrypted" not in kwargs:
            kwargs.update(api_key_encrypted="", api_key_last4="")
        return super().update(**kwargs)

    update.alters_data = True


class UpstreamProfile(models.Model):
    """Where a conversation's upstream socket goes, and how it authenticates.

    A stored key belongs to the URL, auth style and extra headers it was entered for: all users share
    it, so pointing the profile somewhere else must not send it there. `save()` clears the key when any
    of KEY_BOUND_FIELDS changed since the row was loaded, unless `set_api_key` was called in between;
    `key_cleared_on_save` and `key_cleared_fields` then tell the caller (the admin tells the staff member).
    """

    class AuthStyle(models.TextChoices):
        BEARER = "bearer", "Authorization: Bearer header"
        AZURE_API_KEY = "azure_api_key", "Azure api-key header"
        NONE = "none", "No authentication"

    name = models.CharField(max_length=100, unique=True)
    websocket_url = models.CharField(
        "WebSocket URL", max_length=500, help_text="e.g. wss://api.openai.com/v1/responses (a query string is kept)"
    )
    auth_style = models.CharField(max_length=20, choices=AuthStyle.choices, default=AuthStyle.BEARER)
    api_key_encrypted = models.TextField(blank=True, editable=False, help_text="Fernet token; never shown.")
    api_key_last4 = models.CharField("API key (last 4)", max_length=4, blank=True, editable=False)
    default_model = models.CharField(max_length=100, default="gpt-5.5")
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Models clients may ask for; empty means any model."
    )
    extra_headers = models.JSONField(default=dict, blank=True, help_text="Extra handshake headers, as a JSON object.")
    enabled = models.BooleanField(default=True)
    available_to_all = models.BooleanField(default=True, help_text="If off, only the users listed may use it.")
    allowed_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="upstream_profiles")
    is_default = models.BooleanField(default=False, help_text="Used for new conversations that name no profile.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UpstreamProfileQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_endpoint: dict[str, object] | None = None  # None: not saved yet, nothing to compare
        self._api_key_set = False
        self.key_cleared_on_save = False
        self.key_cleared_fields: list[str] = []  # which KEY_BOUND_FIELDS changed, when the last save cleared it

    @classmethod
    def from_db(cls, db, field_names, values):
        profile = super().from_db(db, field_names, values)
        profile._remember_endpoint()
        return profile

    def __str__(self) -> str:
        return self.name

    def set_api_key(self, plaintext: str) -> None:
        self.api_key_encrypted = encrypt_secret(plaintext)
        self.api_key_last4 = plaintext[-4:] if plaintext else ""
        self._api_key_set = True

    def endpoint_changed(self, fields: Iterable[str] = KEY_BOUND_FIELDS) -> list[str]:
        """The key-bound fields (of `fields`) that differ from what was loaded or last saved."""
        if self._loaded_endpoint is None:
            return []
        return [name for name in fields if name in self._loaded_endpoint
                and getattr(self, name) != self._loaded_endpoint[name]]

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        changed = self.endpoint_changed(KEY_BOUND_FIELDS if update_fields is None else
                                        [f for f in KEY_BOUND_FIELDS if f in update_fields])
        self.key_cleared_on_save, self.key_cleared_fields = False, []
        if changed and not self._api_key_set and self.api_key_encrypted:
            self.api_key_encrypted, self.api_key_last4 = "", ""
            self.key_cleared_on_save, self.key_cleared_fields = True, changed
        if changed and update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "api_key_encrypted", "api_key_last4"}
        super().save(*args, **kwargs)
        self._remember_endpoint(kwargs.get("update_fields"))

    def refresh_from_db(self, *args, **kwargs) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._remember_endpoint()

    def _remember_endpoint(self, saved: Iterable[str] | None = None) -> None:
        """What the row now holds (`saved`: only these fields were written)."""
        # Deferred fields are not compared (reading them would query); a copy, since JSON values are mutable.
        names = set(KEY_BOUND_FIELDS if saved is None else saved)
        snapshot = {} if saved is None or self._loaded_endpoint is None else self._loaded_endpoint
        snapshot.update({name: copy.deepcopy(self.__dict__[name]) for name in KEY_BOUND_FIELDS
                         if name in names and name in self.__dict__})
        self._loaded_endpoint = snapshot
        if saved is None or "api_key_encrypted" in names:
            self._api_key_set = False

    def get_api_key(self) -> str:
        """The decrypted key: only the upstream client may call this."""
        return decrypt_secret(self.api_key_encrypted)

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def usable_by(self, user) -> bool:
        if not self.enabled:
            return False
        return self.available_to_all or user.is_staff or self.allowed_users.filter(pk=user.pk).exists()

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


class Conversation(models.Model):
    """One continuation chain (forks included), owned by one user."""

    class Status(models.TextChoices):
        IDLE = "idle", "Idle"
        STREAMING = "streaming", "Streaming"
        FAILED = "failed", "Failed"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    upstream_profile = models.ForeignKey(
        UpstreamProfile, on_delete=models.PROTECT, related_name="conversations", null=True, blank=True
    )
    model = models.CharField(max_length=100, blank=True)
    store = models.BooleanField(default=False, help_text="Sent as `store` on each response.create.")
    instructions = models.TextField(blank=True)
    tools = models.JSONField(default=list, blank=True)
    recovery_enabled = models.BooleanField(
        default=True, help_text="Rebuild the context from records when the upstream lost it."
    )
    created_via = models.CharField(
        max_length=10, choices=[("browser", "Browser"), ("gateway", "Gateway (API token)")], default="browser"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IDLE)
    latest_response_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {str(self.id)[:8]}"


class UpstreamConnection(models.Model):
    """One upstream socket, from open to close."""

    class CloseReason(models.TextChoices):
        OPEN = "", "Still open"
        CLIENT_LEFT = "client_left", "Client left"
        IDLE = "idle", "Idle timeout"
        CONNECTION_LIMIT = "connection_limit", "Connection limit (60 min)"
        UPSTREAM_ERROR = "upstream_error", "Upstream error / dropped"
        HANDSHAKE_FAILED = "handshake_failed", "Handshake rejected"
        SERVER_SHUTDOWN = "server_shutdown", "Server shutdown"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="connections")
    upstream_profile = models.ForeignKey(UpstreamProfile, on_delete=models.SET_NULL, null=True, blank=True)
    url = models.CharField("URL", max_length=500)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_code = models.IntegerField(null=True, blank=True)
    close_text = models.CharField("close reason text", max_length=200, blank=True)
    close_reason = models.CharField(
        "why it closed", max_length=20, choices=CloseReason.choices, default=CloseReason.OPEN, blank=True
    )
    responses_carried = models.PositiveIntegerField(default=0)
    # Liveness lease (liveness.py): the process holding the socket beats while it is open, so another
    # process can tell that the holder died and end its in-flight responses `interrupted`.
    holder = models.CharField(max_length=120, blank=True, help_text="host:pid:boot of the holding process")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["conversation", "opened_at"])]

    def __str__(self) -> str:
        return f"Upstream socket #{self.pk} ({self.get_close_reason_display()})"


class ResponseRecord(models.Model):
    """One upstream response (`resp_…`) and how it sits in its conversation's chain."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        INCOMPLETE = "incomplete", "Incomplete"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted (socket died)"

    class Origin(models.TextChoices):
        USER = "user", "User message"
        TOOL_OUTPUT = "tool_output", "Tool output"
        FORK = "fork", "Fork"
        RECOVERY_REPLAY = "recovery_replay", "Recovery replay"
        STEER = "steer", "Steered successor"
        WARMUP = "warmup", "Warm-up (generate: false)"

    # Unique through a *partial* index (Meta.constraints), deliberately: PostgreSQL treats columns of a
    # full unique index as keys, so naming a response (the recorder's UPDATE) would lock its row against
    # the next turn's INSERT, whose foreign key to its parent must share that row until the batch commits.
    response_id = models.CharField(
        "response id", max_length=100, null=True, blank=True, db_index=True,
        help_text="resp_… (empty until created)",
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="responses")
    stream_id = models.CharField("lane (stream_id)", max_length=256, blank=True)
    previous_response_id = models.CharField("previous_response_id as sent", max_length=100, blank=True)
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children",
        help_text="The record this one continues; empty for a chain root.",
    )
    connection = models.ForeignKey(
        UpstreamConnection, on_delete=models.SET_NULL, null=True, blank=True, related_name="responses"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.IN_PROGRESS)
    model = models.CharField(max_length=100, blank=True)
    request_payload = models.JSONField("request as sent", default=dict, blank=True)
    response_payload = models.JSONField("final response object", null=True, blank=True)
    origin = models.CharField("created by", max_length=16, choices=Origin.choices, default=Origin.USER)
    produced_compaction = models.BooleanField("compacted", default=False)
    incomplete_reason = models.CharField(max_length=50, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    first_event_at = models.DateTimeField(null=True, blank=True)
    first_text_at = models.DateTimeField("first text delta at", null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    events_received = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sent_at", "pk"]
        indexes = [
            models.Index(fields=["conversation", "sent_at"]),
            models.Index(fields=["status"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["response_id"], condition=models.Q(response_id__isnull=False),
                                    name="response_id_unique"),
        ]

    def __str__(self) -> str:
        return self.response_id or f"(pending #{self.pk})"

    @property
    def time_to_first_text_ms(self) -> float | None:
        if self.first_text_at and self.sent_at:
            return (self.first_text_at - self.sent_at).total_seconds() * 1000
        return None


class Item(models.Model):
    """One input or output item of a response, kept whole (raw JSON) and searchable (text)."""

    class Direction(models.TextChoices):
        INPUT = "input", "Input"
        OUTPUT = "output", "Output"

    class ItemType(models.TextChoices):
        MESSAGE = "message", "Message"
        FUNCTION_CALL = "function_call", "Function call"
        FUNCTION_CALL_OUTPUT = "function_call_output", "Function call output"
        REASONING = "reasoning", "Reasoning"
        COMPACTION = "compaction", "Compaction"
        OTHER = "other", "Other"

    response = models.ForeignKey(ResponseRecord, on_delete=models.CASCADE, related_name="items")
    direction = models.CharField(max_length=6, choices=Direction.choices)
    position = models.PositiveIntegerField()
    item_type = models.CharField(max_length=24, choices=ItemType.choices)
    role = models.CharField(max_length=20, blank=True)
    call_id = models.CharField(max_length=100, blank=True)
    text = models.TextField(blank=True)
    raw = models.JSONField("raw item")

    class Meta:
        ordering = ["response_id", "direction", "position"]
        constraints = [
            models.UniqueConstraint(fields=["response", "direction", "position"], name="item_unique_position"),
        ]
        indexes = [models.Index(fields=["call_id"])]

    def __str__(self) -> str:
        return f"{self.direction} {self.item_type} #{self.position}"


class ErrorEvent(models.Model):
    """An error seen anywhere on a conversation: from the upstream, the relay itself, or a client."""

    class Source(models.TextChoices):
        UPSTREAM = "upstream", "Upstream"
        RELAY = "relay", "Relay"
        CLIENT = "client", "Client"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="errors", null=True)
    response = models.ForeignKey(ResponseRecord, on_delete=models.SET_NULL, null=True, blank=True)
    connection = models.ForeignKey(UpstreamConnection, on_delete=models.SET_NULL, null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    status = models.IntegerField("HTTP-like status", null=True, blank=True)
    error_type = models.CharField(max_length=100, blank=True)
    code = models.CharField(max_length=100, blank=True)
    message = models.TextField(blank=True)
    param = models.CharField(max_length=200, blank=True)
    stream_id = models.CharField(max_length=256, blank=True)
    raw = models.JSONField("raw event", default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Client mistakes are aggregated per socket: one row per socket and code keeps the first example,
    # and `count` / `last_seen_at` say how often it happened, so a flood writes a bounded number of rows.
    count = models.PositiveIntegerField(default=1, help_text="How many times this error happened on its socket.")
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["code", "-created_at"]),
            models.Index(fields=["conversation", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.code or self.error_type}"


class CompactionEvent(models.Model):
    """A context compaction: server-side (`context_management`) or a standalone compact call."""

    class Kind(models.TextChoices):
        SERVER_SIDE = "server_side", "Server-side (context_management)"
        STANDALONE = "standalone", "Standalone /responses/compact"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="compactions")
    response = models.ForeignKey(ResponseRecord, on_delete=models.SET_NULL, null=True, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    input_tokens_before = models.PositiveIntegerField(null=True, blank=True)
    tokens_after = models.PositiveIntegerField(null=True, blank=True)
    items_replaced = models.PositiveIntegerField(default=0)
    compacted_output = models.JSONField(
        "compacted window", default=list, blank=True, help_text="Items a new chain can start from."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["conversation", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} compaction"


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
        """The active token's user for a raw token, or None; records the use, to the minute.

        The tokens page shows the minute, and a fleet of agents opening sockets with one token
        would otherwise queue a write per socket (on SQLite, one at a time)."""
        if not raw.startswith(TOKEN_PREFIX):
            return None
        token = cls.objects.select_related("user").filter(token_hash=hash_token(raw), revoked_at=None).first()
        if token is None or not token.user.is_active:
            return None
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user

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

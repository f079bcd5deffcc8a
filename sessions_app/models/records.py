"""What happened: conversations, their upstream sockets, responses, items, errors and compactions.

A conversation's whole continuation chain can be rebuilt from these rows
alone: each ResponseRecord keeps the ``previous_response_id`` it was sent
with, a ``parent`` link to the record it continues, and its input and output
Items in order.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from .upstream import UpstreamProfile


class Conversation(models.Model):
    """One continuation chain (forks included), owned by one user."""

    class Status(models.TextChoices):
        IDLE = "idle", "Idle"
        STREAMING = "streaming", "Streaming"
        FAILED = "failed", "Failed"
        CLOSED = "closed", "Closed"

    class ReasoningEffort(models.TextChoices):
        """`reasoning.effort` values the SDK accepts (openai.types.shared.ReasoningEffort)."""

        NONE = "none", "None"
        MINIMAL = "minimal", "Minimal"
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        XHIGH = "xhigh", "Extra high"
        MAX = "max", "Max"

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
    reasoning_effort = models.CharField(
        max_length=10, choices=ReasoningEffort.choices, blank=True,
        help_text="Sent as `reasoning.effort` (models that reason); empty: the model's default.",
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sent as `max_output_tokens`; empty: no limit."
    )
    compact_threshold = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="When set, each response.create carries context_management with this compact_threshold.",
    )
    created_via = models.CharField(
        max_length=10, choices=[("browser", "Browser"), ("gateway", "Gateway (API token)")], default="browser"
    )
    api_token = models.ForeignKey(
        "sessions_app.ApiToken", on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations",
        help_text="The API token whose gateway socket made this conversation.",
    )
    archived_at = models.DateTimeField(null=True, blank=True, help_text="Archived conversations leave the list.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IDLE)
    latest_response_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"]),
                   models.Index(fields=["owner", "archived_at", "-updated_at"], name="conversation_owner_archived")]

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
        STOPPED = "stopped", "Stopped by the user"
        RECORDING_FAILED = "recording_failed", "Request not recorded"
        RESENT = "resent", "Closed to resend a request"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="connections")
    # The conversation's owner, copied when the row is written (conversations never change hands): the
    # upstream-socket guard counts a user's open rows from this table alone (relay/limits.py). No
    # constraint of its own: the conversation's enforces it, and a second foreign-key check would lock
    # the user's row once more on every first turn. Deleting a user deletes the rows with its conversations.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False,
                              db_index=False, related_name="+", editable=False)
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
        # closed_at: the overview counts the sockets that ended in a window, by reason (0009).
        # connection_owner_open: the guard's count reads only the user's rows not closed (0011).
        indexes = [models.Index(fields=["conversation", "opened_at"]),
                   models.Index(fields=["closed_at", "close_reason"], name="connection_closed_reason"),
                   models.Index(fields=["owner"], condition=models.Q(closed_at__isnull=True),
                                name="connection_owner_open")]

    def __str__(self) -> str:
        return f"Upstream socket #{self.pk} ({self.get_close_reason_display()})"

    def save(self, *args, **kwargs) -> None:
        if self.owner_id is None and self.conversation_id is not None:  # the ORM's way (admin, tests)
            self.owner_id = self.conversation.owner_id
        super().save(*args, **kwargs)


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
    supersedes = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="superseded_by",
        help_text="The failed attempt this request resent (recovery): one turn, not a fork.",
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
    accepted_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the relay accepted the request: the time the conversation page shows, live and after a "
                  "reload. sent_at is when it left upstream (later when the upstream socket had to open first).",
    )
    first_event_at = models.DateTimeField(null=True, blank=True)
    first_text_at = models.DateTimeField("first text delta at", null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    events_received = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sent_at", "pk"]
        indexes = [
            models.Index(fields=["conversation", "sent_at"]),
            models.Index(fields=["status"]),
            # The staff pages aggregate every response of a time window (0009).
            models.Index(fields=["sent_at"], name="response_sent_at"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["response_id"], condition=models.Q(response_id__isnull=False),
                                    name="response_id_unique"),
        ]

    def __str__(self) -> str:
        """Its response id; a request the upstream never named is pending while in flight, else an attempt that
        was never created (refused, or cut before response.created)."""
        if self.response_id:
            return self.response_id
        if self.status in (self.Status.QUEUED, self.Status.IN_PROGRESS):
            return f"(pending #{self.pk})"
        return f"attempt #{self.pk} (never created)"

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
            models.Index(fields=["created_at"], name="error_created_at"),  # staff pages' windows (0009)
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.code or self.error_type}"


class CompactionQuerySet(models.QuerySet):
    def with_size_after(self) -> CompactionQuerySet:
        """Each compaction's `size_after`: the context's tokens once compacted. A standalone compaction records
        it (`tokens_after`, the compact call's output). A server-side one learns it only from the turn that
        continues its response: that turn's input tokens (the compacted window and the turn's own input), read
        here from the records rather than written on the relay's per-turn path."""
        next_input = (ResponseRecord.objects.filter(parent_id=models.OuterRef("response_id"), input_tokens__isnull=False)
                      .order_by("sent_at", "pk").values("input_tokens")[:1])
        return self.annotate(size_after=models.Case(
            models.When(kind=CompactionEvent.Kind.SERVER_SIDE,
                        then=Coalesce(models.F("tokens_after"), models.Subquery(next_input))),
            default=models.F("tokens_after")))


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

    objects = CompactionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["conversation", "-created_at"]),
                   models.Index(fields=["created_at"], name="compaction_created_at")]  # staff pages (0009)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} compaction"

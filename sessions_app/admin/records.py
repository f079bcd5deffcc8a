"""The records of what happened: responses, items, errors, compactions, upstream and client sockets.

Each list starts with what a person scans for (when, status, tokens, time to first text, duration) and ends
with the long ids, cut short with a copy button, so the columns that matter fit at 1280 px.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ..models import ClientSocket, CompactionEvent, ErrorEvent, Item, ResponseRecord, UpstreamConnection
from ..selectors import usage_by_day
from . import display
from .base import RecordAdmin


def _link(name: str, pk, text) -> str:
    return format_html('<a href="{}">{}</a>', reverse(f"admin:sessions_app_{name}_change", args=[pk]), text)


def function_name(item: Item) -> str:
    raw = item.raw if isinstance(item.raw, dict) else {}
    return str(raw.get("name") or "")


@admin.register(UpstreamConnection)
class UpstreamConnectionAdmin(RecordAdmin):
    list_display = ["opened", "closed_why", "close_code", "lasted", "responses_carried", "close_text_short",
                    "conversation", "url_short", "pk"]
    list_display_links = ["opened"]
    list_filter = ["close_reason", "opened_at"]
    search_fields = ["conversation__id", "conversation__title", "url", "close_text"]
    raw_id_fields = ["conversation"]
    list_select_related = ["conversation"]
    readonly_fields = ["lasted"]

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "lasted"]
        at = fields.index("closed_at_when") + 1 if "closed_at_when" in fields else len(fields)
        return [*fields[:at], "lasted", *fields[at:]]

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, obj: UpstreamConnection) -> str:
        return display.when(obj.opened_at)

    @admin.display(description="closed because", ordering="close_reason")
    def closed_why(self, obj: UpstreamConnection) -> str:
        return display.badge(obj.close_reason or "open", obj.get_close_reason_display())

    @admin.display(description="lasted")
    def lasted(self, obj: UpstreamConnection) -> str:
        return display.duration(obj.opened_at, obj.closed_at)

    @admin.display(description="close text")
    def close_text_short(self, obj: UpstreamConnection) -> str:
        return display.short_text(obj.close_text, 60)

    @admin.display(description="URL", ordering="url")
    def url_short(self, obj: UpstreamConnection) -> str:
        return display.short_id(obj.url)


class ItemInline(admin.TabularInline):
    model = Item
    fields = ["direction", "position", "item_type", "role", "call_id", "text"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ResponseRecord)
class ResponseRecordAdmin(RecordAdmin):
    list_display = ["sent", "status_badge", "tokens", "ttft_ms", "took", "origin_label", "flags", "model",
                    "conversation", "response_short", "lane"]
    list_display_links = ["sent"]
    list_filter = ["status", "origin", "produced_compaction", "model", "sent_at"]
    search_fields = ["response_id", "previous_response_id", "conversation__id", "conversation__title"]
    raw_id_fields = ["conversation", "parent", "connection"]
    readonly_fields = ["client_previous_response_id", "ttft_ms", "took"]
    list_select_related = ["conversation"]
    date_hierarchy = "sent_at"
    inlines = [ItemInline]

    def get_fields(self, request, obj=None):
        """What the client asked for right under what was sent."""
        placed = {"client_previous_response_id", "ttft_ms", "took"}  # readonly_fields come last: put them here once
        fields = [f for f in super().get_fields(request, obj) if f not in placed]
        at = fields.index("previous_response_id") + 1 if "previous_response_id" in fields else len(fields)
        fields = [*fields[:at], "client_previous_response_id", *fields[at:]]
        at = fields.index("completed_at_when") + 1 if "completed_at_when" in fields else len(fields)
        return [*fields[:at], "ttft_ms", "took", *fields[at:]]

    @admin.display(description="previous_response_id the client sent")
    def client_previous_response_id(self, obj: ResponseRecord) -> str:
        """A recovery replay went upstream as a new chain (previous_response_id as sent is empty, the request
        as sent carries the context); the client had asked to continue its parent."""
        if obj.origin == ResponseRecord.Origin.RECOVERY_REPLAY and obj.parent_id is not None:
            return obj.parent.response_id or "—"
        return obj.previous_response_id or "—"

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj: ResponseRecord) -> str:
        return display.when(obj.sent_at)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ResponseRecord) -> str:
        return display.badge(obj.status, obj.get_status_display())

    @admin.display(description="tokens", ordering="total_tokens")
    def tokens(self, obj: ResponseRecord) -> str:
        if obj.total_tokens is None:
            return display.EMPTY
        return format_html('<span title="{} in ({} cached) / {} out ({} reasoning)">{}</span>',
                           obj.input_tokens, obj.cached_input_tokens or 0, obj.output_tokens,
                           obj.reasoning_tokens or 0, display.number(obj.total_tokens))

    @admin.display(description="TTFT")
    def ttft_ms(self, obj: ResponseRecord) -> str:
        return display.milliseconds(obj.time_to_first_text_ms)

    @admin.display(description="took")
    def took(self, obj: ResponseRecord) -> str:
        return display.duration(obj.sent_at, obj.completed_at)

    @admin.display(description="origin", ordering="origin")
    def origin_label(self, obj: ResponseRecord) -> str:
        return obj.get_origin_display()

    def get_queryset(self, request):
        """Each record knows whether a later one resent it: a failed attempt the relay recovered reads
        "recovered", not as a turn that broke (an EXISTS per row of the page only)."""
        resent_by = ResponseRecord.objects.filter(supersedes__isnull=False, supersedes=OuterRef("pk"))  # few rows to hash
        return super().get_queryset(request).annotate(recovered=Exists(resent_by))

    @admin.display(description="", empty_value="")
    def flags(self, obj: ResponseRecord) -> str:
        return format_html("{}{}{}", display.flag(obj.produced_compaction, "compacted"),
                           display.flag(obj.supersedes_id is not None, "resent"),
                           display.flag(getattr(obj, "recovered", False), "recovered"))

    @admin.display(description="response id", ordering="response_id")
    def response_short(self, obj: ResponseRecord) -> str:
        return display.short_id(obj.response_id)

    @admin.display(description="lane", ordering="stream_id")
    def lane(self, obj: ResponseRecord) -> str:
        return display.short_id(obj.stream_id)

    def get_urls(self):
        usage = path("usage/", self.admin_site.admin_view(self.usage_view), name="sessions_app_responserecord_usage")
        return [usage, *super().get_urls()]

    def usage_view(self, request):
        """Tokens per day and model: what the conversations cost."""
        days = request.GET.get("days", "30")
        days = min(max(int(days), 1), 366) if days.isdigit() else 30
        rows = usage_by_day(days=days)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Usage, last {days} days",
            "opts": self.model._meta,
            "rows": rows,
            "days": days,
            "totals": {
                field: sum(getattr(r, field) for r in rows)
                for field in ("responses", "input_tokens", "cached_input_tokens", "output_tokens", "total_tokens")
            },
        }
        return TemplateResponse(request, "admin/sessions_app/usage.html", context)


@admin.register(Item)
class ItemAdmin(RecordAdmin):
    list_display = ["__str__", "item_type", "function", "text_short", "role", "direction", "response_link",
                    "call_short"]
    list_filter = ["direction", "item_type", "role"]
    search_fields = ["text", "call_id", "response__response_id"]
    raw_id_fields = ["response"]
    list_select_related = ["response"]

    @admin.display(description="function")
    def function(self, obj: Item) -> str:
        return function_name(obj)

    @admin.display(description="text")
    def text_short(self, obj: Item) -> str:
        return format_html('<span title="{}">{}</span>', display.short_text(obj.text, 600),
                           display.short_text(obj.text, 90))

    @admin.display(description="response", ordering="response__response_id")
    def response_link(self, obj: Item) -> str:
        return _link("responserecord", obj.response_id, display.short_id(obj.response.response_id or "(pending)"))

    @admin.display(description="call id", ordering="call_id")
    def call_short(self, obj: Item) -> str:
        return display.short_id(obj.call_id)


@admin.register(ErrorEvent)
class ErrorEventAdmin(RecordAdmin):
    list_display = ["created", "code_badge", "message_short", "times", "status", "source", "conversation",
                    "response_short"]
    list_display_links = ["created"]
    list_filter = ["source", "code", "error_type", "status", "created_at"]
    search_fields = ["code", "message", "conversation__id", "response__response_id"]
    raw_id_fields = ["conversation", "response", "connection"]
    list_select_related = ["conversation", "response"]
    date_hierarchy = "created_at"

    @admin.display(description="when", ordering="created_at")
    def created(self, obj: ErrorEvent) -> str:
        return display.when(obj.created_at)

    def get_queryset(self, request):
        """`recovered`: the relay resent the response this error failed, so the turn went on."""
        resent = ResponseRecord.objects.filter(supersedes__isnull=False, supersedes=OuterRef("response_id"))
        return super().get_queryset(request).annotate(recovered=Exists(resent))

    @admin.display(description="code", ordering="code")
    def code_badge(self, obj: ErrorEvent) -> str:
        return format_html("{}{}", display.badge("failed", obj.code or obj.error_type or "error"),
                           display.flag(getattr(obj, "recovered", False), "recovered"))

    @admin.display(description="message")
    def message_short(self, obj: ErrorEvent) -> str:
        return format_html('<span class="sb-message" title="{}">{}</span>', display.short_text(obj.message, 1000),
                           display.short_text(obj.message, 140))

    @admin.display(description="times", ordering="count")
    def times(self, obj: ErrorEvent) -> str:
        if obj.count <= 1:
            return "1"
        return format_html('<span title="last at {}">{}×</span>', obj.last_seen_at or "", obj.count)

    @admin.display(description="response", ordering="response__response_id")
    def response_short(self, obj: ErrorEvent) -> str:
        return display.short_id(obj.response.response_id if obj.response else "")


@admin.register(CompactionEvent)
class CompactionEventAdmin(RecordAdmin):
    list_display = ["created", "kind_short", "before", "after", "saved", "items_replaced", "conversation",
                    "response_short"]
    list_display_links = ["created"]
    list_filter = ["kind", "created_at"]
    search_fields = ["conversation__id", "conversation__title", "response__response_id"]
    raw_id_fields = ["conversation", "response"]
    list_select_related = ["conversation", "response"]

    def get_queryset(self, request):
        return super().get_queryset(request).with_size_after()

    @admin.display(description="when", ordering="created_at")
    def created(self, obj: CompactionEvent) -> str:
        return display.when(obj.created_at)

    @admin.display(description="kind", ordering="kind")
    def kind_short(self, obj: CompactionEvent) -> str:
        return format_html('<span title="{}">{}</span>', obj.get_kind_display(), obj.kind.replace("_", "-"))

    @admin.display(description="tokens before", ordering="input_tokens_before")
    def before(self, obj: CompactionEvent) -> str:
        return display.number(obj.input_tokens_before)

    @admin.display(description="after", ordering="size_after")
    def after(self, obj: CompactionEvent) -> str:
        """Server-side: the next turn's input tokens (CompactionQuerySet.with_size_after); — until there is one."""
        return display.number(obj.size_after)

    @admin.display(description="saved")
    def saved(self, obj: CompactionEvent) -> str:
        if not obj.input_tokens_before or obj.size_after is None:
            return display.EMPTY
        return f"{100 * (obj.input_tokens_before - obj.size_after) / obj.input_tokens_before:.0f} %"

    @admin.display(description="response", ordering="response__response_id")
    def response_short(self, obj: CompactionEvent) -> str:
        return display.short_id(obj.response.response_id if obj.response else "")


@admin.register(ClientSocket)
class ClientSocketAdmin(RecordAdmin):
    """Client sockets open now (what the concurrent-socket limit counts); the row goes when the socket closes."""

    list_display = ["opened", "user", "face", "beat", "token", "holder"]
    list_display_links = ["opened"]
    list_filter = ["face", "opened_at"]
    search_fields = ["user__username", "holder"]
    list_select_related = ["user", "token"]

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, obj: ClientSocket) -> str:
        return display.when(obj.opened_at)

    @admin.display(description="last heartbeat", ordering="heartbeat_at")
    def beat(self, obj: ClientSocket) -> str:
        return display.when(obj.heartbeat_at)

"""Staff views of everything Switchboard keeps. API keys are write-only here: only their last 4 characters show."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .crypto import mask_secret
from .models import (
    KEY_BOUND_FIELDS,
    ApiToken,
    CompactionEvent,
    Conversation,
    ErrorEvent,
    Item,
    ResponseRecord,
    UpstreamConnection,
    UpstreamProfile,
    UserLimits,
)
from .selectors import conversation_chain, usage_by_day

admin.site.site_header = "Switchboard administration"
admin.site.site_title = "Switchboard admin"


class RecordAdmin(admin.ModelAdmin):
    """Records are what happened: staff read them, nobody edits them by hand (they go with their conversation)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


KEY_CLEARED_NOTE = "Changing this removes the stored API key, unless you enter the key again below."


class UpstreamProfileForm(forms.ModelForm):
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the stored key, except when you change the WebSocket URL, "
                  "auth style or extra headers: the stored key is then removed (it was given for the old "
                  "destination), so enter it again here to keep using one.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = UpstreamProfile
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in KEY_BOUND_FIELDS:
            if name in self.fields:
                field = self.fields[name]
                field.help_text = f"{field.help_text} {KEY_CLEARED_NOTE}".strip()

    def save(self, commit: bool = True) -> UpstreamProfile:
        profile = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            profile.set_api_key("")
        elif self.cleaned_data.get("api_key"):
            profile.set_api_key(self.cleaned_data["api_key"])
        if commit:
            profile.save()
            self.save_m2m()
        return profile


@admin.register(UpstreamProfile)
class UpstreamProfileAdmin(admin.ModelAdmin):
    """Profiles hold the key every user's traffic goes out with: only superusers write them, staff read.

    Every write is in the admin log (LogEntry) with the fields changed, and says when the key was removed
    because its URL, auth style or extra headers changed (UpstreamProfile.save clears it).
    """

    form = UpstreamProfileForm
    list_display = ["name", "websocket_url", "auth_style", "key_display", "default_model", "enabled", "is_default"]
    list_filter = ["enabled", "auth_style", "is_default", "available_to_all"]
    search_fields = ["name", "websocket_url"]
    readonly_fields = ["key_display", "created_at", "updated_at"]
    filter_horizontal = ["allowed_users"]

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    @admin.display(description="API key")
    def key_display(self, obj: UpstreamProfile) -> str:
        return mask_secret(obj.api_key_last4)

    def save_model(self, request, obj: UpstreamProfile, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.key_cleared_on_save:
            self.message_user(request, key_cleared_message(obj, form), messages.WARNING)

    def construct_change_message(self, request, form, formsets, add: bool = False):
        """Django's message (the fields changed) plus, when it happened, that the key was removed."""
        message = super().construct_change_message(request, form, formsets, add)
        if form.instance.key_cleared_on_save:
            cleared = f"API key (removed: {', '.join(_labels(form, form.instance.key_cleared_fields))} changed)"
            for part in message:
                if "changed" in part and "name" not in part:
                    part["changed"]["fields"].append(cleared)
                    break
            else:
                message.append({"changed": {"fields": [cleared]}})
        return message


def _labels(form, names) -> list[str]:
    return [str(form.fields[name].label) if name in form.fields else name for name in names]


def key_cleared_message(profile: UpstreamProfile, form) -> str:
    changed = " and ".join(_labels(form, profile.key_cleared_fields)) or "the destination"
    return (f"The stored API key of “{profile}” was removed because its {changed} changed: a key goes only to the "
            f"destination it was entered for. Enter the key again if this profile needs one.")


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    """Per-user overrides: empty means the SWITCHBOARD_LIMIT_* default, 0 means no limit."""

    list_display = ["user", "max_sockets", "max_upstream_sockets", "responses_per_hour", "tokens_per_day"]
    search_fields = ["user__username"]
    raw_id_fields = ["user"]


class UserLimitsInline(admin.StackedInline):
    model = UserLimits
    can_delete = True
    max_num = 1
    extra = 0
    verbose_name_plural = "Switchboard limits (empty: the default, 0: no limit)"


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class SwitchboardUserAdmin(UserAdmin):
    """Django's user admin, with the user's Switchboard limits on the change page."""

    def get_inlines(self, request, obj=None):
        return [*super().get_inlines(request, obj), UserLimitsInline] if obj is not None else []


class ResponseInline(admin.TabularInline):
    model = ResponseRecord
    fk_name = "conversation"
    fields = ["response_id", "stream_id", "parent", "status", "origin", "total_tokens", "sent_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "__str__", "owner", "model", "status", "store", "created_via", "response_count", "chain_link", "updated_at",
    ]
    list_filter = ["status", "store", "created_via", "upstream_profile", "created_at"]
    search_fields = ["id", "title", "owner__username", "latest_response_id"]
    # What happened, not settings: the relay sets status, the creating socket sets created_via and
    # api_token, and a conversation never changes owner (its records and ids are the owner's).
    readonly_fields = ["id", "created_at", "updated_at", "latest_response_id", "status", "created_via", "api_token"]
    raw_id_fields = ["owner"]
    date_hierarchy = "created_at"
    inlines = [ResponseInline]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "owner"] if obj is not None else fields

    @admin.display(description="responses")
    def response_count(self, obj: Conversation) -> int:
        return obj.responses.count()

    @admin.display(description="chain")
    def chain_link(self, obj: Conversation) -> str:
        return format_html('<a href="{}">tree</a>', reverse("admin:sessions_app_conversation_chain", args=[obj.pk]))

    def get_urls(self):
        chain = path(
            "<uuid:pk>/chain/", self.admin_site.admin_view(self.chain_view), name="sessions_app_conversation_chain"
        )
        return [chain, *super().get_urls()]

    def chain_view(self, request, pk):
        """The continuation chain drawn as a tree: forks indent, replays and errors stand out."""
        conversation = get_object_or_404(Conversation.objects.select_related("owner"), pk=pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Chain of {conversation}",
            "opts": self.model._meta,
            "conversation": conversation,
            "rows": conversation_chain(conversation=conversation),
            "errors": conversation.errors.order_by("-created_at")[:50],
            "compactions": conversation.compactions.order_by("-created_at")[:50],
        }
        return TemplateResponse(request, "admin/sessions_app/conversation_chain.html", context)


@admin.register(UpstreamConnection)
class UpstreamConnectionAdmin(RecordAdmin):
    list_display = ["pk", "conversation", "url", "opened_at", "closed_at", "close_reason", "close_code", "responses_carried"]
    list_filter = ["close_reason", "opened_at"]
    search_fields = ["conversation__id", "conversation__title", "url"]
    raw_id_fields = ["conversation"]


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
    list_display = [
        "__str__", "conversation", "stream_id", "status", "origin", "produced_compaction", "model",
        "total_tokens", "ttft_ms", "sent_at",
    ]
    list_filter = ["status", "origin", "produced_compaction", "model", "sent_at"]
    search_fields = ["response_id", "previous_response_id", "conversation__id", "conversation__title"]
    raw_id_fields = ["conversation", "parent", "connection"]
    readonly_fields = ["client_previous_response_id"]
    date_hierarchy = "sent_at"
    inlines = [ItemInline]

    def get_fields(self, request, obj=None):
        """What the client asked for right under what was sent."""
        fields = [f for f in super().get_fields(request, obj) if f != "client_previous_response_id"]
        at = fields.index("previous_response_id") + 1 if "previous_response_id" in fields else len(fields)
        return [*fields[:at], "client_previous_response_id", *fields[at:]]

    @admin.display(description="previous_response_id the client sent")
    def client_previous_response_id(self, obj: ResponseRecord) -> str:
        """A recovery replay went upstream as a new chain (previous_response_id as sent is empty, the request
        as sent carries the context); the client had asked to continue its parent."""
        if obj.origin == ResponseRecord.Origin.RECOVERY_REPLAY and obj.parent_id is not None:
            return obj.parent.response_id or "—"
        return obj.previous_response_id or "—"

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

    @admin.display(description="first text (ms)")
    def ttft_ms(self, obj: ResponseRecord) -> str:
        value = obj.time_to_first_text_ms
        return "—" if value is None else f"{value:.0f}"


@admin.register(Item)
class ItemAdmin(RecordAdmin):
    list_display = ["__str__", "response", "direction", "item_type", "role", "call_id", "short_text"]
    list_filter = ["direction", "item_type", "role"]
    search_fields = ["text", "call_id", "response__response_id"]
    raw_id_fields = ["response"]

    @admin.display(description="text")
    def short_text(self, obj: Item) -> str:
        return obj.text[:80]


@admin.register(ErrorEvent)
class ErrorEventAdmin(RecordAdmin):
    list_display = ["created_at", "source", "code", "count", "last_seen_at", "error_type", "status", "conversation",
                    "response", "short_message"]
    list_filter = ["source", "code", "error_type", "status", "created_at"]
    search_fields = ["code", "message", "conversation__id", "response__response_id"]
    raw_id_fields = ["conversation", "response", "connection"]
    date_hierarchy = "created_at"

    @admin.display(description="message")
    def short_message(self, obj: ErrorEvent) -> str:
        return obj.message[:100]


@admin.register(CompactionEvent)
class CompactionEventAdmin(RecordAdmin):
    list_display = ["created_at", "conversation", "kind", "response", "input_tokens_before", "tokens_after", "items_replaced"]
    list_filter = ["kind", "created_at"]
    search_fields = ["conversation__id", "conversation__title", "response__response_id"]
    raw_id_fields = ["conversation", "response"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    raw_id_fields = ["user"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are issued by their owner (Tokens page) or `manage.py create_api_token`

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request, queryset) -> None:
        for token in queryset.filter(revoked_at=None):
            token.revoke()
